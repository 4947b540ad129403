"""Expectations on a task's answer: what ``expect:`` in a task file may say, and the checks.

An :class:`Expect` holds any of six checks; a task passes when its run completed and every
check given passes (:func:`check` returns one :class:`ExpectResult` per check, in the order
below, each with a sentence saying what was found):

* ``equals``: the answer, stripped of surrounding whitespace, is exactly this text;
* ``contains``: the answer contains this text (a list: every one of them);
* ``regex``: Python ``re.search`` finds this pattern in the answer;
* ``json_schema``: the answer is JSON (the whole answer, or its first fenced code block) that
  validates against this JSON Schema;
* ``boxed``: the last ``\\boxed{...}`` of the answer (braces balanced) equals this, compared
  as math: whitespace, ``$``, ``\\left``/``\\right``, ``\\dfrac``/``\\tfrac`` and thousands
  separators do not matter, and numbers compare by value (``5.0`` = ``5``);
* ``tool_called``: each named tool ran at least once with a result, not an error.

``ignore_case: true`` makes ``equals``, ``contains``, ``regex`` and ``boxed`` ignore case.
Patterns and schemas are checked when the file is loaded, so a bad one is bad input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, JsonValue, field_validator, model_validator

from agent.events import ToolCallRecord

ExpectKind = Literal["equals", "contains", "regex", "json_schema", "boxed", "tool_called"]

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n(.*?)```", re.DOTALL)


class Expect(BaseModel):
    """The ``expect:`` block of a task (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    equals: str | None = None
    contains: str | list[str] | None = None
    regex: str | None = None
    json_schema: dict[str, JsonValue] | None = None
    boxed: str | None = None
    tool_called: str | list[str] | None = None
    ignore_case: bool = False

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"the regex {value!r} does not compile: {exc}") from None
        return value

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, JsonValue] | None) -> dict[str, JsonValue] | None:
        if value is not None:
            validator = jsonschema.validators.validator_for(value)
            try:
                validator.check_schema(value)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        return value

    @field_validator("contains", "tool_called")
    @classmethod
    def _not_empty(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is not None and len(value) == 0:
            raise ValueError("give at least one value, or remove the key")
        return value

    @model_validator(mode="after")
    def _some_check(self) -> Expect:
        if not self.kinds():
            raise ValueError(
                "expect: has no check; give one of equals, contains, regex, json_schema, "
                "boxed, tool_called (or remove expect:)"
            )
        return self

    def kinds(self) -> list[ExpectKind]:
        """The checks this block asks for, in a fixed order."""
        kinds: tuple[ExpectKind, ...] = (
            "equals",
            "contains",
            "regex",
            "json_schema",
            "boxed",
            "tool_called",
        )
        return [k for k in kinds if getattr(self, k) is not None]


@dataclass(frozen=True, slots=True)
class ExpectResult:
    """The outcome of one check."""

    kind: ExpectKind
    ok: bool
    expected: Any
    detail: str
    """What was found, in a sentence (also when it passed)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(expect: Expect, answer: str, tool_calls: Sequence[ToolCallRecord]) -> list[ExpectResult]:
    """Run every check of ``expect`` on ``answer`` and the calls made."""
    fold = str.casefold if expect.ignore_case else _same
    results: list[ExpectResult] = []
    for kind in expect.kinds():
        expected = getattr(expect, kind)
        if kind == "equals":
            ok = fold(answer.strip()) == fold(expected.strip())
            detail = "the answer is exactly that" if ok else f"the answer is {_excerpt(answer)}"
        elif kind == "contains":
            wanted = [expected] if isinstance(expected, str) else expected
            missing = [w for w in wanted if fold(w) not in fold(answer)]
            ok = not missing
            detail = "found" if ok else f"not in the answer: {', '.join(map(repr, missing))}"
        elif kind == "regex":
            flags = re.IGNORECASE if expect.ignore_case else 0
            match = re.search(expected, answer, flags)
            ok = match is not None
            detail = f"matched {_excerpt(match.group(0))}" if match else "no match in the answer"
        elif kind == "json_schema":
            ok, detail = _check_json(expected, answer)
        elif kind == "boxed":
            found = extract_boxed(answer)
            ok = found is not None and math_equal(found, expected, ignore_case=expect.ignore_case)
            detail = "no \\boxed{...} in the answer" if found is None else f"boxed {found!r}"
        else:
            ok, detail = _check_tools(
                [expected] if isinstance(expected, str) else expected, tool_calls
            )
        results.append(ExpectResult(kind, ok, expected, detail))
    return results


def _same(text: str) -> str:
    return text


def _excerpt(text: str, limit: int = 120) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "…")


def parse_json_answer(answer: str) -> Any:
    """The JSON value of ``answer``: the whole text, else its first fenced code block.

    Raises:
        ValueError: neither is JSON.
    """
    try:
        return json.loads(answer.strip())
    except ValueError:
        pass
    fence = _FENCE.search(answer)
    if fence is not None:
        try:
            return json.loads(fence.group(1).strip())
        except ValueError as exc:
            raise ValueError(f"the code block of the answer is not JSON: {exc}") from None
    raise ValueError("the answer is not JSON and has no ``` code block of JSON")


def _check_json(schema: dict[str, Any], answer: str) -> tuple[bool, str]:
    try:
        value = parse_json_answer(answer)
    except ValueError as exc:
        return False, str(exc)
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return True, "the JSON matches the schema"
    where = "/".join(str(p) for p in error.absolute_path) or "the top level"
    return False, f"at {where}: {error.message}"


def _check_tools(names: Sequence[str], calls: Sequence[ToolCallRecord]) -> tuple[bool, str]:
    ran = {c.name for c in calls if c.error is None and c.output is not None}
    missing = [n for n in names if n not in ran]
    if not missing:
        return True, "called: " + ", ".join(names)
    tried = sorted({c.name for c in calls if c.name in missing})
    detail = "never ran successfully: " + ", ".join(missing)
    if tried:
        detail += f" (called, but with errors: {', '.join(tried)})"
    return False, detail


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` in ``text`` (nested braces kept), or ``None``."""
    start = text.rfind("\\boxed")
    while start != -1:
        i = start + len("\\boxed")
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j].strip()
        start = text.rfind("\\boxed", 0, start)
    return None


_MATH_NOISE = re.compile(r"\\left|\\right|\\[,;!: ]|\s+|\$")
_TEXT_WRAPPER = re.compile(r"^\\(?:text|mathrm|textbf|mathbf)\{(.*)\}$")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?:\D|$))")


def normalize_math(text: str) -> str:
    """A canonical spelling of a short math answer (see the module docstring)."""
    text = _MATH_NOISE.sub("", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = _THOUSANDS.sub("", text)
    wrapped = _TEXT_WRAPPER.match(text)
    if wrapped:
        text = wrapped.group(1)
    return text.rstrip(".")


def math_equal(found: str, expected: str, *, ignore_case: bool = False) -> bool:
    """Whether two boxed answers are the same (see :func:`normalize_math`)."""
    a, b = normalize_math(found), normalize_math(expected)
    if ignore_case:
        a, b = a.casefold(), b.casefold()
    if a == b:
        return True
    try:
        return Decimal(a) == Decimal(b)
    except InvalidOperation:
        return False


__all__ = [
    "Expect",
    "ExpectKind",
    "ExpectResult",
    "check",
    "extract_boxed",
    "math_equal",
    "normalize_math",
    "parse_json_answer",
]
