"""Schema problems of a task file, all at once, and the valid rest of the file.

:func:`schema_problems` turns pydantic's errors into located lines (``FILE:LINE:COL: what is
wrong``, with "did you mean" for unknown keys and what YAML read for a mistyped value).
:func:`salvage` keeps what is valid: the file-level settings and each task, minus the keys
that are wrong, so that planning (models, tools, files, prompts) can check the rest in the
same pass instead of one round of errors after another. What it drops is only ever used to
report problems; a file with any problem never runs.
"""

from __future__ import annotations

import datetime
import difflib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from agent.tasks.safe_yaml import DocPath, SourceMap, YamlLoadError, dotted

if TYPE_CHECKING:
    from pathlib import Path

M = TypeVar("M", bound=BaseModel)


AllowedKeys = Callable[[DocPath], Sequence[str]]
"""The keys allowed in the mapping at a path of the file, sorted (for "did you mean")."""


def schema_problems(
    file: Path,
    exc: ValidationError,
    data: Any,
    source: SourceMap,
    allowed_keys: AllowedKeys,
    prefix: DocPath = (),
) -> list[YamlLoadError]:
    """One located problem per place ``exc`` complains about (``data`` is what was validated,
    found at ``prefix`` in the file), in file order; an unknown key is told the keys
    ``allowed_keys`` gives for its mapping."""
    problems: dict[DocPath, YamlLoadError] = {}
    for error in exc.errors():
        path = (*prefix, *_data_path(error["loc"], data, missing=error["type"] == "missing"))
        if path in problems:  # the other branches of a union: one message is enough
            continue
        location = source.locate(path, key=error["type"] == "extra_forbidden")
        message = _message(error, path, source, allowed_keys)
        problems[path] = YamlLoadError(file, f"{dotted(path)}: {message}", location)
    return sorted(problems.values(), key=in_file_order)


def in_file_order(problem: YamlLoadError) -> tuple[int, int]:
    """Problems without a place first, then by line and column."""
    where = problem.location
    return (where.line, where.column) if where is not None else (0, 0)


def salvage(model: type[M], data: dict[str, Any], keep: Callable[[str], bool]) -> M | None:
    """``model`` validated from ``data`` without the keys that break it (those ``keep`` accepts
    are never dropped); ``None`` when that is not enough (a required key is wrong, or a
    check across keys fails)."""
    current = dict(data)
    for _ in range(3):
        try:
            return model.model_validate(current)
        except ValidationError as exc:
            wrong = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            wrong &= set(current)
            if not wrong or any(keep(k) for k in wrong):
                return None
            current = {k: v for k, v in current.items() if k not in wrong}
    return None


def _data_path(loc: tuple[int | str, ...], data: Any, *, missing: bool = False) -> DocPath:
    """The part of pydantic's ``loc`` that points into ``data`` (union tags dropped); for a
    missing key, the path of the key that should be there."""
    path: list[str | int] = []
    node = data
    for part in loc:
        inside = isinstance(node, dict) and part in node
        if inside or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            node = node[part]
        else:
            if missing and isinstance(node, dict):
                path.append(part)
            break
        path.append(part)
    return tuple(path)


_EXPECTED = {
    "string_type": "text",
    "list_type": "a list",
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "literal_error": "one of the listed words",
    "string_pattern_mismatch": "text",
}


def _message(
    error: ErrorDetails, path: DocPath, source: SourceMap, allowed_keys: AllowedKeys
) -> str:
    kind, value = error["type"], error.get("input")
    name = path[-1] if path else ""
    if kind == "missing":
        return f"the key {name!r} is required"
    if kind == "extra_forbidden":
        return _unknown_key(path, allowed_keys(path[:-1]))
    message = str(error["msg"]).removeprefix("Value error, ")
    written, read_as = source.plain.get(path), _read_as(value)
    if kind == "invalid-json-value" and written is not None and read_as:
        return f'YAML read {written} as {read_as}, which is not JSON; put it in quotes: "{written}"'
    if kind in _EXPECTED and written is not None and read_as:
        text = f"expected {_EXPECTED[kind]}, but YAML read {written} as {read_as}"
        if kind in ("string_type", "string_pattern_mismatch", "literal_error"):
            text += f'; put it in quotes: "{written}"'
        return text + (f" ({message})" if kind == "literal_error" else "")
    if kind == "string_pattern_mismatch":
        return "an id is 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
    return f"{message} (got {value!r})" if kind in _EXPECTED else message


def _unknown_key(path: DocPath, allowed: Sequence[str]) -> str:
    text = f"unknown key {path[-1]!r}"
    close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
    if close:
        text += f"; did you mean {close[0]!r}?"
    return text + f" (allowed here: {', '.join(allowed)})"


def _read_as(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()} (YAML 1.1 reads yes/no/on/off/y/n as booleans)"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, datetime.date):
        return f"the date {value.isoformat()}"
    if value is None:
        return "null (nothing)"
    return ""
