"""The JSON inside one ``<tool_call>`` block: strict first, then a narrow JSON5-style retry.

What a call block must hold is ``{"name": "...", "arguments": {...}}``. Inside an explicit
``<tool_call>`` the model clearly meant a call, so the reading is lenient in the ways models
really slip (see ``docs/tool-call-format.md``):

* ``"parameters"`` is accepted as another spelling of ``"arguments"`` (not both at once);
* when strict JSON fails, the text is retried once with single-quoted strings turned into
  double-quoted ones and trailing commas removed (the two JSON5 habits models have); nothing
  else of JSON5 is accepted (no comments, unquoted keys, ``NaN``). When the retry fails too,
  the error told to the model is the retry's (the mistake that is left once the forgiven ones
  are set aside), and says so; text without either habit gets the strict parser's error.

Outside a call block nothing is lenient: bare JSON is never run (see :mod:`agent.call_formats`).
Everything a strict parse refuses stays refused after the retry: duplicate keys, ``NaN`` and
``Infinity``, lone surrogates, nesting deeper than :data:`MAX_JSON_DEPTH`, and arguments that
are a string or an array where an object is required.
"""

from __future__ import annotations

import json
from typing import Any

MAX_JSON_DEPTH = 32
"""Arguments nested deeper than this are refused without parsing."""


def parse_call_json(raw: str) -> tuple[str, dict[str, Any]]:
    """Parse the JSON of one call block into ``(name, arguments)``.

    Accepted: ``{"name": "...", "arguments": {...}}``; ``arguments`` may be spelled
    ``parameters``, omitted (no arguments) or given once JSON-encoded as a string of an object
    (the OpenAI habit). Single quotes and trailing commas are forgiven (module docstring).

    Raises:
        ValueError: with a sentence that says what is wrong, for the model.
    """
    text = raw.strip()
    if not text:
        raise ValueError("the <tool_call> block is empty")
    try:
        value = loads(text)
    except ValueError as exc:
        relaxed = relax_json(text)
        if relaxed is None:
            raise ValueError(f"the tool call is not valid JSON: {exc}") from None
        try:
            value = loads(relaxed)
        except ValueError as again:
            raise ValueError(
                f"the tool call is not valid JSON: {again}, once its single quotes were read "
                "as double quotes and trailing commas dropped"
            ) from None
    return call_fields(value)


def call_fields(value: Any) -> tuple[str, dict[str, Any]]:
    """``(name, arguments)`` of a parsed call object.

    Raises:
        ValueError: the object is not of the call's shape; the sentence says how.
    """
    if not isinstance(value, dict):
        raise ValueError(f"the tool call must be a JSON object, got {type(value).__name__}")
    extra = sorted(set(value) - {"name", "arguments", "parameters"})
    if extra:
        raise ValueError(f"the tool call has unexpected keys {extra}; only name and arguments")
    if "arguments" in value and "parameters" in value:
        raise ValueError(
            'the tool call has both "arguments" and "parameters"; give the arguments once, '
            'as "arguments"'
        )
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError('the tool call needs a "name" that is a non-empty string')
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = loads(arguments)
        except ValueError as exc:
            raise ValueError(f'"arguments" is a string that is not a JSON object: {exc}') from None
        if not isinstance(arguments, dict):
            raise ValueError('"arguments" must be a JSON object (it looks double-encoded)')
    if not isinstance(arguments, dict):
        raise ValueError(f'"arguments" must be a JSON object, got {type(arguments).__name__}')
    return name, arguments


def loads(text: str) -> Any:
    """Strict JSON: no duplicate keys, no ``NaN``/``Infinity``, no lone surrogates, bounded
    nesting.

    Raises:
        ValueError: a sentence naming the problem (and its line and column for syntax).
    """
    if json_depth(text) > MAX_JSON_DEPTH:
        raise ValueError(f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
    _check_strings(value)
    return value


def relax_json(text: str) -> str | None:
    """``text`` with single-quoted strings double-quoted and trailing commas removed, or
    ``None`` when it has neither (so there is nothing to retry).

    Only characters outside double-quoted strings are touched; inside a single-quoted string
    ``\\'`` becomes ``'`` and ``"`` becomes ``\\"``; other escapes are kept as written.
    """
    out: list[str] = []
    changed = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            end = _string_end(text, i, '"')
            out.append(text[i:end])
            i = end
        elif ch == "'":
            end = _string_end(text, i, "'")
            body = (
                text[i + 1 : end - 1] if end - 1 > i and text[end - 1] == "'" else text[i + 1 : end]
            )
            out.append('"' + _requote(body) + '"')
            changed = True
            i = end
        elif ch == ",":
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            if j < n and text[j] in "}]":
                changed = True  # a trailing comma: drop it, keep the whitespace
            else:
                out.append(ch)
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out) if changed else None


def _string_end(text: str, start: int, quote: str) -> int:
    """Index just past the string that opens at ``start`` (or ``len(text)`` if unclosed)."""
    i, n = start + 1, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
        elif ch == quote:
            return i + 1
        else:
            i += 1
    return n


def _requote(body: str) -> str:
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch == "\\" and i + 1 < n:
            nxt = body[i + 1]
            out.append("'" if nxt == "'" else ch + nxt)
            i += 2
        elif ch == '"':
            out.append('\\"')
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def json_depth(text: str) -> int:
    """Maximum bracket nesting of JSON text, ignoring brackets inside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _check_strings(value: Any) -> None:
    """Refuse lone surrogates anywhere (keys included): they are not text."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a string contains a lone surrogate (invalid Unicode)") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_strings(k)
            _check_strings(v)
    elif isinstance(value, list):
        for v in value:
            _check_strings(v)
