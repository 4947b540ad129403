"""The chat mode of :mod:`models.openai.backend`: ChatML context to OpenAI messages, and back.

The loop hands every backend the same thing: segments of ChatML text rendered with the QwQ
template (``<|im_start|>role\\n…<|im_end|>``, tools declared in the system turn, tool results
as a user turn of ``<tool_response>`` blocks). A server that offers only
``/v1/chat/completions`` wants OpenAI messages instead, so :func:`chatml_to_chat` reads them
back out of the text:

* the system turn's ``# Tools`` section (exactly what the template writes) becomes ``tools``;
* an assistant turn keeps its answer (the thinking up to ``</think>`` is dropped, as the QwQ
  template does for earlier turns) and its ``<tool_call>`` blocks become ``tool_calls`` with
  ids ``call_1``, ``call_2``…;
* a user turn made only of ``<tool_response>`` blocks, one per call of the assistant turn
  before it, becomes ``tool`` messages answering those ids;
* the last turn must be the empty generation prompt (``<|im_start|>assistant\\n``, with or
  without ``<think>\\n``): continuing inside a turn (the "interleaved" placement) is not
  something the chat API can express, and raises :class:`ChatFormatError`.

:class:`ChatStreamAssembler` turns the streamed deltas back into the text the loop's parser
reads: ``reasoning_content`` (or vLLM's ``reasoning``) as thinking, then ``</think>``, then
the content, then each ``tool_calls`` entry the server parsed, written as
``<tool_call>\\n{"name": …, "arguments": …}\\n</tool_call>``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from models.qwq.chat_template import TOOLS_SYSTEM_FOOTER, TOOLS_SYSTEM_PREAMBLE
from models.qwq.tags import (
    CALL_CLOSE,
    CALL_OPEN,
    RESPONSE_CLOSE,
    RESPONSE_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
)

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
_CALL = re.compile(rf"\n?{CALL_OPEN}\n?(.*?)\n?{CALL_CLOSE}", re.DOTALL)
_RESPONSE = re.compile(rf"\s*{RESPONSE_OPEN}\n(.*?)\n{RESPONSE_CLOSE}", re.DOTALL)


class ChatFormatError(ValueError):
    """The context cannot be expressed as chat messages (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What a chat completion request carries, read out of the context text."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]


def chatml_to_chat(text: str) -> ChatRequest:
    """Read the OpenAI messages and tools out of a ChatML context.

    Raises:
        ChatFormatError: the text is not ChatML, or does not end with an empty generation
            prompt of the assistant.
    """
    head, *blocks = text.split(IM_START)
    if head.strip():
        raise ChatFormatError(
            f"the context does not start with a ChatML turn ({head[:60]!r}); chat mode needs a "
            "ChatML chat template (the built-in QwQ template is one)"
        )
    if not blocks:
        raise ChatFormatError("the context holds no ChatML turn")
    turns: list[tuple[str, str, bool]] = []
    for block in blocks:
        role, newline, body = block.partition("\n")
        if not newline or not role.isidentifier():
            raise ChatFormatError(f"a ChatML turn has no role line: {block[:60]!r}")
        closed = IM_END in body
        if closed:
            body, _, rest = body.partition(IM_END)
            if rest.strip():
                raise ChatFormatError(f"text after the end of a {role} turn: {rest[:60]!r}")
        turns.append((role, body, closed))
    role, body, closed = turns.pop()
    if role != "assistant" or closed or body.strip() not in ("", THINK_OPEN):
        raise ChatFormatError(
            "chat mode can only ask for a new assistant turn, but the context continues inside "
            "one (tool calls made while thinking, the 'interleaved' placement); use "
            "--placement template with chat mode, or the completions mode"
        )
    messages: list[dict[str, Any]] = []
    tools: list[dict[str, Any]] = []
    calls_seen = 0
    for index, (role, body, _closed) in enumerate(turns):
        if role == "system" and index == 0:
            content, tools = _split_tools(body)
            if content or not tools:
                messages.append({"role": "system", "content": content})
        elif role == "assistant":
            message, calls_seen = _assistant(body, calls_seen)
            messages.append(message)
        elif role == "user" and messages and messages[-1].get("tool_calls"):
            messages.extend(_tool_results(body, messages[-1]["tool_calls"]))
        else:
            messages.append({"role": role, "content": body})
    return ChatRequest(messages, tools)


def _split_tools(system: str) -> tuple[str, list[dict[str, Any]]]:
    """The system text without its ``# Tools`` section, and the tools declared there."""
    start = system.find(TOOLS_SYSTEM_PREAMBLE)
    if start < 0 or not system.endswith(TOOLS_SYSTEM_FOOTER):
        return system, []
    lines = system[start + len(TOOLS_SYSTEM_PREAMBLE) : -len(TOOLS_SYSTEM_FOOTER)]
    tools: list[dict[str, Any]] = []
    for line in lines.split("\n"):
        if not line.strip():
            continue
        try:
            tools.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ChatFormatError(f"a declared tool is not JSON: {line[:80]!r}") from exc
    return system[:start], tools


def _assistant(body: str, calls_seen: int) -> tuple[dict[str, Any], int]:
    """An assistant message: the answer without thinking, its calls as ``tool_calls``."""
    answer = body.rsplit(THINK_CLOSE, 1)[-1] if THINK_CLOSE in body else body
    if answer.startswith(THINK_OPEN):  # an unclosed thinking: nothing was answered
        answer = ""
    calls: list[dict[str, Any]] = []
    kept: list[str] = []
    position = 0
    for match in _CALL.finditer(answer):
        try:
            parsed = json.loads(match.group(1))
        except json.JSONDecodeError:
            continue  # a malformed call stays in the text, as the model wrote it
        if not (isinstance(parsed, dict) and isinstance(parsed.get("name"), str)):
            continue
        calls_seen += 1
        arguments = parsed.get("arguments", {})
        calls.append(
            {
                "id": f"call_{calls_seen}",
                "type": "function",
                "function": {
                    "name": parsed["name"],
                    "arguments": json.dumps(arguments, ensure_ascii=False),
                },
            }
        )
        kept.append(answer[position : match.start()])
        position = match.end()
    kept.append(answer[position:])
    message: dict[str, Any] = {"role": "assistant", "content": "".join(kept).strip("\n")}
    if calls:
        message["tool_calls"] = calls
    return message, calls_seen


def _tool_results(body: str, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``tool`` messages for a user turn of ``<tool_response>`` blocks answering ``calls``;
    the turn as a plain user message when it is not exactly one response per call."""
    outputs: list[str] = []
    position = 0
    for match in _RESPONSE.finditer(body):
        if match.start() != position:
            break
        outputs.append(match.group(1))
        position = match.end()
    if position != len(body.rstrip()) or len(outputs) != len(calls):
        return [{"role": "user", "content": body}]
    return [
        {"role": "tool", "tool_call_id": call["id"], "content": output}
        for call, output in zip(calls, outputs, strict=True)
    ]


@dataclass
class _PendingCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ChatStreamAssembler:
    """Chat deltas in, the loop's text out (see the module docstring).

    Args:
        opens_thinking: whether the loop's parser starts inside the thinking (then reasoning
            is written bare and closed with ``</think>``; otherwise it is wrapped in
            ``<think>`` … ``</think>``).
    """

    def __init__(self, *, opens_thinking: bool) -> None:
        self.opens_thinking = opens_thinking
        self._reasoning_seen = False
        self._thinking_open = False
        self._content_tail = ""
        self._think_closed = False
        self._calls: dict[int, _PendingCall] = {}
        self.produced = False
        """Whether any text came out yet (a retry is only safe before that)."""

    def delta(self, delta: dict[str, Any]) -> list[str]:
        """The text pieces for one ``choices[0].delta`` object."""
        out: list[str] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            if not self._reasoning_seen and not self.opens_thinking:
                out.append(THINK_OPEN + "\n")
            self._reasoning_seen = self._thinking_open = True
            out.append(reasoning)
        content = delta.get("content")
        if isinstance(content, str) and content:
            out.extend(self._close_thinking())
            out.append(content)
            self._watch(content)
        for entry in delta.get("tool_calls") or ():
            if isinstance(entry, dict):
                self._add_call(entry)
        self.produced = self.produced or any(out)
        return [piece for piece in out if piece]

    def finish(self) -> list[str]:
        """The text left at the end of the stream: a pending ``</think>``, the parsed calls."""
        out: list[str] = []
        if self._calls:
            out.extend(self._close_thinking(force=self.opens_thinking))
            for _, call in sorted(self._calls.items()):
                out.append(_render_call(call))
            self._calls.clear()
        elif self._thinking_open:
            out.extend(self._close_thinking())
        self.produced = self.produced or any(out)
        return out

    def _close_thinking(self, *, force: bool = False) -> list[str]:
        if self._think_closed or not (self._thinking_open or force):
            return []
        self._think_closed = True
        self._thinking_open = False
        return ["\n" + THINK_CLOSE + "\n\n"]

    def _watch(self, content: str) -> None:
        """Notice a ``</think>`` the model wrote in its content (a server without a
        reasoning parser), even split across deltas."""
        window = self._content_tail + content
        if THINK_CLOSE in window:
            self._think_closed = True
        self._content_tail = window[-(len(THINK_CLOSE) - 1) :]

    def _add_call(self, entry: dict[str, Any]) -> None:
        index = entry.get("index", len(self._calls))
        call = self._calls.setdefault(index if isinstance(index, int) else 0, _PendingCall())
        if isinstance(entry.get("id"), str):
            call.id = entry["id"]
        function = entry.get("function")
        if isinstance(function, dict):
            if isinstance(function.get("name"), str):
                call.name += function["name"]
            if isinstance(function.get("arguments"), str):
                call.arguments.append(function["arguments"])
            elif isinstance(function.get("arguments"), dict):  # some servers send objects
                call.arguments.append(json.dumps(function["arguments"], ensure_ascii=False))


def _render_call(call: _PendingCall) -> str:
    """A server-parsed call in the text form the loop's parser reads. Arguments that are not
    JSON are written as they came, so the parser reports them to the model."""
    raw = "".join(call.arguments).strip() or "{}"
    try:
        arguments = json.dumps(json.loads(raw), ensure_ascii=False)
    except json.JSONDecodeError:
        arguments = raw
    name = json.dumps(call.name, ensure_ascii=False)
    return f'{CALL_OPEN}\n{{"name": {name}, "arguments": {arguments}}}\n{CALL_CLOSE}'
