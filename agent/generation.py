"""One generation of a step, read through the streaming parser as it streams.

:func:`stream_generation` is the part of a step (:mod:`agent.step`) that reads one
``backend.generate`` stream: it feeds each chunk to the :class:`~agent.parser.StreamParser`,
yields the events of what the parser reports (:class:`~agent.events.Thinking`,
:class:`~agent.events.Text`), feeds the thinking to the repetition detector, and stops the
stream (closing the generator, so the backend's context ends exactly at the last chunk
read) at the first of:

* a call made inside the thinking with the ``"interleaved"`` placement (its result goes right
  after it), or a ``<tool_response>`` the model opened itself (its text is dropped);
* a repetition of the thinking, when the step can act on it (``stop_on_repeat``, or a second
  one after a first was reported on a backend that cannot restart inside its turn);
* the run being cancelled, or its deadline passing.

It returns a :class:`Generation`: why it stopped, its text cut at that point, and what the
parser found in it. What to do next (close the thinking, restart with a penalty, compact)
is the step's decision, not this module's.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field, replace

import prompts
from agent.events import Event, Repetition, Text, Thinking
from agent.parser import (
    AnswerText,
    CallError,
    InventedResponse,
    ParsedCall,
    StreamParser,
    ThinkingEnded,
    ThinkingText,
)
from agent.repetition import Repeat, RepetitionDetector
from agent.state import RunState
from models import Sampling, StopReason

__all__ = ["Generation", "repetition_event", "stream_generation"]


@dataclass
class Generation:
    """What one generation produced (:func:`stream_generation`); offsets are in the step's text."""

    reason: StopReason | str = "end_of_turn"
    text: str = ""
    thinking_chars: int | None = None
    """Characters of ``text`` before the thinking ended (``None``: it did not end)."""
    repeat: Repeat | None = None
    answer: list[str] = field(default_factory=list)
    items: list[ParsedCall | CallError] = field(default_factory=list)
    thinking_call: ParsedCall | CallError | None = None
    invented_at: int | None = None


def stream_generation(
    state: RunState,
    gen: Generator[str, None, StopReason],
    parser: StreamParser,
    *,
    base: int,
    start: int,
    detector: RepetitionDetector,
    deadline: float | None,
    stop_on_repeat: bool,
) -> Generator[Event, None, Generation]:
    """Stream one generation through ``parser``, yielding its events; return what it produced
    (its text cut where a call made inside the thinking or an invented response ends it).

    ``base`` is where the text ``parser`` reads begins in the step's text, ``start`` where this
    generation's text begins (the offsets of what it returns are in the step's text). A
    backend that refuses the context raises before its first chunk.
    """
    out = Generation()
    fed: list[str] = []
    n_fed = 0
    reported = False  # a repetition reported without stopping (a chat-only backend)
    try:
        while True:
            try:
                chunk = next(gen)
            except StopIteration as stop:
                out.reason = stop.value
                if out.reason == "interrupted":
                    out.reason = "cancelled" if state.cancel.is_set() else "timeout"
                break
            fed.append(chunk)
            n_fed += len(chunk)
            for item in parser.feed(chunk):
                if isinstance(item, ThinkingText):
                    yield Thinking(item.text)
                    if out.repeat is None and (found := detector.feed(item.text)) is not None:
                        if stop_on_repeat or reported:
                            out.repeat = found
                        else:  # cannot restart: say so, go on, and stop if it goes on
                            reported = True
                            detector.reset()
                            yield repetition_event(found, "presence_penalty", state.sampling)
                elif isinstance(item, AnswerText):
                    out.answer.append(item.text)
                    yield Text(item.text)
                elif isinstance(item, ThinkingEnded):
                    if out.thinking_chars is None:
                        out.thinking_chars = n_fed
                elif isinstance(item, InventedResponse):
                    out.invented_at = base + item.at  # its text is dropped
                    if parser.in_thinking and state.placement == "interleaved":
                        out.thinking_call = _no_call_made(base + item.at)
                    break
                elif item.placement == "thinking" and state.placement == "interleaved":
                    out.thinking_call = replace(item, end=base + item.end)
                    break
                else:
                    out.items.append(item)
            if out.thinking_call is not None or out.invented_at is not None:
                break
            if out.repeat is not None:
                out.reason = "repetition"
                break
            if state.cancel.is_set():
                out.reason = "cancelled"
                break
            if deadline is not None and time.monotonic() >= deadline:
                out.reason = "timeout"
                break
    finally:
        gen.close()
    text = "".join(fed)
    if out.thinking_call is not None:
        text = text[: out.thinking_call.end - start]
    elif out.invented_at is not None:
        text = text[: out.invented_at - start]
    out.text = text
    if out.thinking_chars is not None:
        out.thinking_chars = min(out.thinking_chars, len(text))
    return out


def repetition_event(repeat: Repeat, action: str, sampling: Sampling) -> Repetition:
    """The event that reports ``repeat``: generation ``"stopped"``, or went on with the
    ``"presence_penalty"`` of ``sampling``."""
    return Repetition(
        period=repeat.period,
        repeats=round(repeat.repeats, 1),
        action="stopped" if action == "stopped" else "presence_penalty",
        presence_penalty=sampling.presence_penalty,
        unit=repeat.unit[:200],
    )


def _no_call_made(at: int) -> CallError:
    """The result of a ``<tool_response>`` the model opened with no call before it."""
    return CallError(
        prompts.render("invented_response"), "thinking", "", True, at, kind="invented_response"
    )
