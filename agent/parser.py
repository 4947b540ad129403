"""A streaming parser for what QwQ writes: thinking, answer, and ``<tool_call>`` blocks.

Feed it text chunks of any size (one character at a time included); it returns events as
soon as they are certain. Text that might be the start of a tag is held back until the next
chunk decides, so the events for a text never depend on how it was chunked (a property the
tests check with hypothesis). Nothing half-parsed is ever reported as a call: a call is
reported only when its block is complete and its JSON is a well-formed
``{"name": str, "arguments": object}``; anything else is a :class:`CallError` that the loop
feeds back to the model. The rules, with their reasons, are in ``docs/tool-call-format.md``:

* A call opens only where ``<tool_call>`` is followed (after whitespace) by ``{``; otherwise
  the tag is text, so prose that mentions it does not swallow the answer.
* Inside a call the JSON value is read first, then the close tag: a ``</tool_call>`` inside a
  JSON string (code that prints it) is part of the string. If the string never ends and the
  model goes on to write ``<tool_response>`` or ends its output, the call is cut at the first
  such ``</tool_call>`` after all (an error, never a run).
* A block never closed is still a call when the output ends (or the model writes
  ``<tool_response>``) right after one complete valid call object.
* ``<tool_response>`` written by the model (outside a call) is reported as
  :class:`InventedResponse` at the offset where it starts; its text up to
  ``</tool_response>`` is dropped, never shown. The loop stops generating there.
* The first ``</think>`` ends the thinking; a later ``</think>`` and a stray ``</tool_call>``
  after it are not shown in the answer (inside the thinking they stay text).
* ``calls_in_thinking=False`` (the "template" placement): a call block inside the thinking
  is parsed but reported as a :class:`CallError` of kind ``"placement"`` (it never runs and is
  never silently taken for thinking).

Contract: ``feed(chunk)`` and ``finish()`` never raise on any text; the ``ThinkingText`` and
``AnswerText`` pieces are the model's text outside call blocks and invented responses, minus
the format tags above.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from agent.call_json import MAX_JSON_DEPTH, parse_call_json
from agent.events import CallPlacement
from models.qwq.tags import (
    CALL_CLOSE,
    CALL_OPEN,
    RESPONSE_CLOSE,
    RESPONSE_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
)

__all__ = [
    "CALL_FORMAT_HINT",
    "MAX_CALL_CHARS",
    "MAX_JSON_DEPTH",
    "AnswerText",
    "CallError",
    "InventedResponse",
    "ParseEvent",
    "ParsedCall",
    "StreamParser",
    "ThinkingEnded",
    "ThinkingText",
    "parse_call_json",
]


MAX_CALL_CHARS = 65_536
"""A call block longer than this is refused without parsing."""

CALL_FORMAT_HINT = (
    'Write each call as <tool_call>\n{"name": "<tool name>", "arguments": {<arguments>}}\n'
    "</tool_call> with valid JSON, one call per block."
)

CallErrorKind = Literal["malformed", "placement", "near_miss", "invented_response"]


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
class InventedResponse:
    """The model wrote ``<tool_response>`` itself: only the runtime may. Generation should
    stop; the text from ``at`` on is invented and must not enter the context."""

    at: int
    """Offset, in all text fed so far, where the ``<tool_response>`` tag starts."""


@dataclass(frozen=True, slots=True)
class ParsedCall:
    name: str
    arguments: dict[str, Any]
    placement: CallPlacement
    raw: str
    end: int
    """Offset, in all text fed so far, just past this call's ``</tool_call>`` (or its JSON,
    for a block the output left unclosed)."""


@dataclass(frozen=True, slots=True)
class CallError:
    """Something the model should be told instead of a call being run."""

    message: str
    """The whole sentence for the model (for ``"malformed"``, what is wrong with the block)."""
    placement: CallPlacement
    raw: str
    closed: bool
    """Whether ``</tool_call>`` was written (``False``: the output ended inside the block)."""
    end: int
    """Offset, in all text fed so far, just past the block (its ``</tool_call>`` if closed)."""
    kind: CallErrorKind = "malformed"
    """``"malformed"``: the block is not a valid call; ``"placement"``: a valid call in the
    thinking where calls go after ``</think>``; ``"near_miss"``: an answer written as a call
    in another format (set by the loop); ``"invented_response"``: a ``<tool_response>`` the
    model wrote with no call before it (set by the loop)."""


ParseEvent = ThinkingText | AnswerText | ThinkingEnded | InventedResponse | ParsedCall | CallError

_State = Literal["thinking", "answer", "call_open", "call", "response"]

_TAGS: dict[str, tuple[str, ...]] = {
    "thinking": (THINK_CLOSE, THINK_OPEN, CALL_OPEN, RESPONSE_OPEN),
    "answer": (CALL_OPEN, THINK_OPEN, CALL_CLOSE, THINK_CLOSE, RESPONSE_OPEN),
    "response": (RESPONSE_CLOSE,),
}
_TAG_RE = {state: re.compile("|".join(map(re.escape, tags))) for state, tags in _TAGS.items()}
_LONGEST = {state: max(map(len, tags)) for state, tags in _TAGS.items()}
# Inside a call: outside its JSON strings only a quote or the close tag matter; inside a
# string, the end of the string (or an escape), and the two tags that decide whether a
# string that never ends had swallowed the real close tag.
_CALL_OUT = re.compile(r'"|' + re.escape(CALL_CLOSE) + "|" + re.escape(RESPONSE_OPEN))
_CALL_IN = re.compile(r'["\\]|' + re.escape(CALL_CLOSE) + "|" + re.escape(RESPONSE_OPEN))
_CALL_TAGS = (CALL_CLOSE, RESPONSE_OPEN)


@lru_cache(maxsize=1)
def _placement_message() -> str:
    import prompts

    return prompts.render("call_in_thinking")


class StreamParser:
    """Incremental parser of one model turn. See the module docstring for the contract."""

    def __init__(self, *, in_thinking: bool = True, calls_in_thinking: bool = True) -> None:
        self._state: _State = "thinking" if in_thinking else "answer"
        self._calls_in_thinking = calls_in_thinking
        self._buf = ""
        self._buf_start = 0  # offset of self._buf[0] in all text fed so far
        self._outer: Literal["thinking", "answer"] = self._state  # state a call/response returns to
        self._call = ""  # the block's text after <tool_call>, read so far
        self._call_start = 0  # offset of self._call[0]
        self._scan = 0  # how far self._call has been scanned
        self._in_string = False
        self._swallowed: int | None = None  # index in self._call of a </tool_call> in a string
        self._blank = True  # nothing but whitespace shown in this state yet (for <think>)

    @property
    def in_thinking(self) -> bool:
        """Whether the text being read is thinking (a call open inside thinking counts)."""
        return (
            self._outer if self._state in ("call_open", "call", "response") else self._state
        ) == "thinking"

    @property
    def in_call(self) -> bool:
        return self._state in ("call_open", "call")

    def feed(self, chunk: str) -> list[ParseEvent]:
        """Parse ``chunk``; return the events it completed, in order."""
        self._buf += chunk
        out: list[ParseEvent] = []
        while self._buf and self._step(out):
            pass
        return out

    def finish(self) -> list[ParseEvent]:
        """End of the model's output: flush held text; an open call is judged as it stands."""
        out: list[ParseEvent] = []
        if self._state == "call" and self._swallowed is not None and self._in_string:
            # The string never ended: the </tool_call> it swallowed was the real close.
            self._close_at(self._swallowed, out)
            while self._buf and self._step(out):
                pass
            return out + self.finish()
        if self._state in ("call_open", "call"):
            raw = (self._call if self._state == "call" else "") + self._buf
            end = self._buf_start + len(self._buf)
            self._buf, self._buf_start, self._call = "", end, ""
            out.append(self._judge(raw, closed=False, end=end))
            self._state = self._outer
        elif self._state == "response":
            self._buf_start += len(self._buf)
            self._buf = ""
        elif self._buf:
            self._emit_text(self._buf, out)
            self._buf_start += len(self._buf)
            self._buf = ""
        return out

    # -- internals -------------------------------------------------------------------------

    def _step(self, out: list[ParseEvent]) -> bool:
        """Consume as much of the buffer as is certain; return False when waiting for more."""
        state = self._state
        if state == "call":
            return self._step_call(out)
        if state == "call_open":
            return self._step_call_open(out)
        buf = self._buf
        lt = buf.find("<")
        if lt == -1:  # the common case: no tag can start here
            if state != "response":
                self._emit_text(buf, out)
            self._buf_start += len(buf)
            self._buf = ""
            return False
        match = _TAG_RE[state].search(buf, lt)
        if match is None:
            keep = _partial_tag_suffix(buf, _TAGS[state], _LONGEST[state])
            ready = buf[: len(buf) - keep]
            if ready:
                if state != "response":
                    self._emit_text(ready, out)
                self._buf = buf[len(ready) :]
                self._buf_start += len(ready)
            return False
        at, tag = match.start(), match.group()
        if at and state != "response":
            self._emit_text(buf[:at], out)
        self._buf = buf[match.end() :]
        self._buf_start += match.end()
        self._on_tag(tag, self._buf_start - len(tag), out)
        return True

    def _emit_text(self, text: str, out: list[ParseEvent]) -> None:
        if self._blank and not text.isspace():
            self._blank = False
        out.append(ThinkingText(text) if self._state == "thinking" else AnswerText(text))

    def _on_tag(self, tag: str, at: int, out: list[ParseEvent]) -> None:
        state = self._state
        if state == "response":  # </tool_response>: the invented block is over
            self._state = self._outer
            return
        assert state in ("thinking", "answer")
        if tag == CALL_OPEN:
            self._outer, self._state = state, "call_open"
            return
        if tag == RESPONSE_OPEN:
            self._outer, self._state = state, "response"
            out.append(InventedResponse(at))
            return
        blank = self._blank
        if tag == THINK_CLOSE and state == "thinking":
            self._state, self._blank = "answer", True
            out.append(ThinkingEnded())
        elif tag in (THINK_CLOSE, CALL_CLOSE):
            pass  # in the answer: a stray tag, not shown (the first </think> ended the thinking)
        elif tag == THINK_OPEN and state == "answer" and blank:
            self._state, self._blank = "thinking", True
        elif tag == THINK_OPEN and state == "thinking" and blank:
            pass  # a redundant <think> right after the prompt opened one
        else:
            self._emit_text(tag, out)

    def _step_call_open(self, out: list[ParseEvent]) -> bool:
        """After ``<tool_call>``: a call only if ``{`` comes first (after whitespace)."""
        body = self._buf.lstrip()
        if not body:
            return False
        if body[0] == "{":
            self._state, self._call, self._call_start = "call", "", self._buf_start
            self._scan, self._in_string, self._swallowed = 0, False, None
        else:
            self._state = self._outer
            self._emit_text(CALL_OPEN, out)
        return True

    def _step_call(self, out: list[ParseEvent]) -> bool:
        """Scan the call's JSON for its strings, then find the close tag outside them."""
        new = self._buf
        call = self._call = self._call + new
        self._buf_start += len(new)
        self._buf = ""
        pos = self._scan
        if pos == len(call) - len(new) and not any(c in new for c in '"\\<'):
            self._scan = len(call)  # nothing that matters to the scan arrived
            return False
        while True:
            match = (_CALL_IN if self._in_string else _CALL_OUT).search(call, pos)
            if match is None:
                keep = _partial_tag_suffix(call[pos:], _CALL_TAGS, len(RESPONSE_OPEN))
                self._scan = len(call) - keep
                return False
            token, at = match.group(), match.start()
            if token == '"':
                self._in_string = not self._in_string
                pos = match.end()
            elif token == "\\":
                if at + 1 >= len(call):
                    self._scan = at  # the escaped character has not arrived yet
                    return False
                pos = at + 2
            elif token == CALL_CLOSE and self._in_string:
                if self._swallowed is None:
                    self._swallowed = at
                pos = match.end()
            elif token == CALL_CLOSE:
                self._close_at(at, out)
                return True
            elif self._in_string and self._swallowed is None:
                pos = match.end()  # <tool_response> inside a string is just text
            else:  # <tool_response>: the model is inventing the result of this call
                if self._in_string:
                    assert self._swallowed is not None
                    self._close_at(self._swallowed, out)
                    return True
                rest = call[at:]
                end = self._call_start + at
                out.append(self._judge(call[:at], closed=False, end=end))
                self._state, self._buf, self._buf_start = self._outer, rest, end
                self._call = ""
                return True

    def _close_at(self, at: int, out: list[ParseEvent]) -> None:
        """Close the call at its ``</tool_call>`` starting at ``self._call[at]``; what follows
        the tag goes back to the buffer."""
        call = self._call
        end = self._call_start + at + len(CALL_CLOSE)
        out.append(self._judge(call[:at], closed=True, end=end))
        rest = call[at + len(CALL_CLOSE) :]
        self._state, self._buf, self._buf_start = self._outer, rest, end
        self._call = ""

    def _judge(self, raw: str, *, closed: bool, end: int) -> ParsedCall | CallError:
        placement: CallPlacement = self._outer
        if len(raw) > MAX_CALL_CHARS:
            return CallError(
                f"the call is {len(raw)} characters long, over the limit of "
                f"{MAX_CALL_CHARS}; it was not run. " + CALL_FORMAT_HINT,
                placement,
                raw[:MAX_CALL_CHARS],
                closed=closed,
                end=end,
            )
        try:
            name, arguments = parse_call_json(raw)
        except ValueError as exc:
            if not closed:
                message = (
                    "the output ended inside a <tool_call> block before </tool_call>; "
                    "the call was not run. " + CALL_FORMAT_HINT
                )
            else:
                message = f"{exc}. {CALL_FORMAT_HINT}"
            return CallError(message, placement, raw, closed=closed, end=end)
        if placement == "thinking" and not self._calls_in_thinking:
            return CallError(
                _placement_message(), placement, raw.strip(), closed, end, kind="placement"
            )
        return ParsedCall(name, arguments, placement, raw.strip(), end=end)


def _partial_tag_suffix(text: str, tags: tuple[str, ...], longest: int) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of one of ``tags``."""
    lt = text.rfind("<", max(0, len(text) - longest + 1))
    while lt != -1:
        tail = text[lt:]
        if any(tag.startswith(tail) for tag in tags):
            return len(tail)
        lt = text.find("<", lt + 1)
    return 0
