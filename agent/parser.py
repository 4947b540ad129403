"""A streaming parser for what QwQ writes: thinking, answer, and ``<tool_call>`` blocks.

Feed it text chunks of any size (one character at a time included); it returns events as
soon as they are certain. Text that might be the start of a tag is held back until the next
chunk decides, so the events for a text never depend on how it was chunked (a property the
tests check with hypothesis). Nothing half-parsed is ever reported as a call: a call is
reported only when its ``</tool_call>`` arrived and its JSON is a well-formed
``{"name": str, "arguments": object}``; anything else is a :class:`CallError` that the loop
feeds back to the model.

Contract:

* ``feed(chunk)`` and ``finish()`` never raise on any text.
* The concatenation of ``ThinkingText`` pieces and ``AnswerText`` pieces is exactly the model's
  text outside call blocks (minus the ``</think>`` tag and a redundant leading ``<think>``).
* Bare JSON without the tags is text, not a call.
* ``calls_in_thinking=False`` (the "template" placement) treats ``<tool_call>`` inside the
  thinking as thinking text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from agent.events import CallPlacement

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"

MAX_CALL_CHARS = 65_536
"""A call block longer than this is refused without parsing."""
MAX_JSON_DEPTH = 32
"""Arguments nested deeper than this are refused without parsing."""

CALL_FORMAT_HINT = (
    'Write each call as <tool_call>\n{"name": "<tool name>", "arguments": {<arguments>}}\n'
    "</tool_call> with valid JSON, one call per block."
)


@dataclass(frozen=True, slots=True)
class ThinkingText:
    text: str


@dataclass(frozen=True, slots=True)
class AnswerText:
    text: str


@dataclass(frozen=True, slots=True)
class ThinkingEnded:
    """``</think>`` was read: what follows is the answer."""


@dataclass(frozen=True, slots=True)
class ParsedCall:
    name: str
    arguments: dict[str, Any]
    placement: CallPlacement
    raw: str
    end: int
    """Offset, in all text fed so far, just past this call's ``</tool_call>``."""


@dataclass(frozen=True, slots=True)
class CallError:
    """A ``<tool_call>`` block that is not a valid call."""

    message: str
    placement: CallPlacement
    raw: str
    closed: bool
    """Whether ``</tool_call>`` was written (``False``: the output ended inside the block)."""
    end: int
    """Offset, in all text fed so far, just past the block (its ``</tool_call>`` if closed)."""


ParseEvent = ThinkingText | AnswerText | ThinkingEnded | ParsedCall | CallError

_State = Literal["thinking", "answer", "call"]


class StreamParser:
    """Incremental parser of one model turn. See the module docstring for the contract."""

    def __init__(self, *, in_thinking: bool = True, calls_in_thinking: bool = True) -> None:
        self._state: _State = "thinking" if in_thinking else "answer"
        self._calls_in_thinking = calls_in_thinking
        self._buf = ""
        self._buf_start = 0  # offset of self._buf[0] in all text fed so far
        self._call_body: list[str] = []
        self._call_size = 0
        self._call_from: CallPlacement = "thinking"
        self._emitted_in_state = ""  # only tracked while it is blank (for a leading <think>)

    @property
    def in_thinking(self) -> bool:
        """Whether the text being read is thinking (a call open inside thinking counts)."""
        if self._state == "call":
            return self._call_from == "thinking"
        return self._state == "thinking"

    @property
    def in_call(self) -> bool:
        return self._state == "call"

    def feed(self, chunk: str) -> list[ParseEvent]:
        """Parse ``chunk``; return the events it completed, in order."""
        self._buf += chunk
        out: list[ParseEvent] = []
        while self._buf:
            if not self._step(out):
                break
        return out

    def finish(self) -> list[ParseEvent]:
        """End of the model's output: flush held text; an open call becomes a :class:`CallError`."""
        out: list[ParseEvent] = []
        if self._state == "call":
            raw = "".join(self._call_body) + self._buf
            out.append(
                CallError(
                    "the output ended inside a <tool_call> block before </tool_call>; "
                    "the call was not run. " + CALL_FORMAT_HINT,
                    self._call_from,
                    raw,
                    closed=False,
                    end=self._buf_start + len(self._buf),
                )
            )
            self._state = self._call_from
            self._buf_start += len(self._buf)
            self._buf = ""
        elif self._buf:
            self._emit_text(self._buf, out)
            self._buf_start += len(self._buf)
            self._buf = ""
        return out

    # -- internals -------------------------------------------------------------------------

    def _tags(self) -> tuple[str, ...]:
        if self._state == "call":
            return (CALL_CLOSE,)
        if self._state == "thinking":
            tags = (THINK_CLOSE, THINK_OPEN)
            return (*tags, CALL_OPEN) if self._calls_in_thinking else tags
        return (CALL_OPEN, THINK_OPEN)

    def _step(self, out: list[ParseEvent]) -> bool:
        """Consume as much of the buffer as is certain; return False when waiting for more."""
        tags = self._tags()
        best_at, best_tag = -1, ""
        for tag in tags:
            at = self._buf.find(tag)
            if at != -1 and (best_at == -1 or at < best_at):
                best_at, best_tag = at, tag
        if best_at == -1:
            keep = _partial_tag_suffix(self._buf, tags)
            ready = self._buf[: len(self._buf) - keep]
            if ready:
                self._consume_plain(ready, out)
                self._buf = self._buf[len(ready) :]
                self._buf_start += len(ready)
            return False
        before, self._buf = self._buf[:best_at], self._buf[best_at + len(best_tag) :]
        self._buf_start += best_at + len(best_tag)
        if before:
            self._consume_plain(before, out)
        self._on_tag(best_tag, out)
        return True

    def _consume_plain(self, text: str, out: list[ParseEvent]) -> None:
        if self._state == "call":
            self._call_size += len(text)
            if self._call_size <= MAX_CALL_CHARS:
                self._call_body.append(text)
        else:
            self._emit_text(text, out)

    def _emit_text(self, text: str, out: list[ParseEvent]) -> None:
        if not self._emitted_in_state.strip():
            self._emitted_in_state += text[:64]
        out.append(ThinkingText(text) if self._state == "thinking" else AnswerText(text))

    def _on_tag(self, tag: str, out: list[ParseEvent]) -> None:
        state = self._state
        if tag == CALL_CLOSE:
            out.append(self._close_call())
            return
        if tag == CALL_OPEN:
            self._call_from = "thinking" if state == "thinking" else "answer"
            self._state, self._call_body, self._call_size = "call", [], 0
            return
        blank = not self._emitted_in_state.strip()
        if tag == THINK_CLOSE:  # only looked for while thinking
            self._state, self._emitted_in_state = "answer", ""
            out.append(ThinkingEnded())
        elif tag == THINK_OPEN and state == "answer" and blank:
            self._state, self._emitted_in_state = "thinking", ""
        elif tag == THINK_OPEN and state == "thinking" and blank:
            pass  # a redundant <think> right after the prompt opened one
        else:
            self._emit_text(tag, out)

    def _close_call(self) -> ParseEvent:
        placement = self._call_from
        self._state = placement
        raw = "".join(self._call_body)
        if self._call_size > MAX_CALL_CHARS:
            return CallError(
                f"the call is {self._call_size} characters long, over the limit of "
                f"{MAX_CALL_CHARS}; it was not run. " + CALL_FORMAT_HINT,
                placement,
                raw,
                closed=True,
                end=self._buf_start,
            )
        try:
            name, arguments = parse_call_json(raw)
        except ValueError as exc:
            return CallError(
                f"{exc}. {CALL_FORMAT_HINT}", placement, raw, closed=True, end=self._buf_start
            )
        return ParsedCall(name, arguments, placement, raw.strip(), end=self._buf_start)


def _partial_tag_suffix(text: str, tags: tuple[str, ...]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of one of ``tags``."""
    longest = 0
    for tag in tags:
        for n in range(min(len(tag) - 1, len(text)), longest, -1):
            if text.endswith(tag[:n]):
                longest = n
                break
    return longest


def _json_depth(text: str) -> int:
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


def _loads(text: str) -> Any:
    if _json_depth(text) > MAX_JSON_DEPTH:
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


def parse_call_json(raw: str) -> tuple[str, dict[str, Any]]:
    """Parse the JSON of one call block into ``(name, arguments)``.

    Accepted: ``{"name": "...", "arguments": {...}}``; ``arguments`` may be omitted (no
    arguments) or given once JSON-encoded as a string of an object (the OpenAI habit).

    Raises:
        ValueError: with a sentence that says what is wrong, for the model.
    """
    text = raw.strip()
    if not text:
        raise ValueError("the <tool_call> block is empty")
    try:
        value = _loads(text)
    except ValueError as exc:
        raise ValueError(f"the tool call is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"the tool call must be a JSON object, got {type(value).__name__}")
    extra = sorted(set(value) - {"name", "arguments"})
    if extra:
        raise ValueError(f"the tool call has unexpected keys {extra}; only name and arguments")
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError('the tool call needs a "name" that is a non-empty string')
    arguments = value.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = _loads(arguments)
        except ValueError as exc:
            raise ValueError(f'"arguments" is a string that is not a JSON object: {exc}') from None
        if not isinstance(arguments, dict):
            raise ValueError('"arguments" must be a JSON object (it looks double-encoded)')
    if not isinstance(arguments, dict):
        raise ValueError(f'"arguments" must be a JSON object, got {type(arguments).__name__}')
    return name, arguments
