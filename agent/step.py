"""One step of a run: the generations that continue the context until the model stops.

A step usually is one generation. It becomes several, each continuing exactly where the
previous one stopped (the backend evaluates only what is new), when the runtime steps in:

* **thinking budget** (:mod:`agent.thinking_budget`): a generation that starts inside the
  thinking is capped at the thinking tokens left. When the cap stops it inside the thinking,
  the runtime closes the thinking (a call still open is dropped), emits
  :class:`~agent.events.ThinkingClosed` and lets the model answer; when the thinking ended
  before the cap, generation simply goes on. A chat-only server cannot take inserted text
  inside its turn: the cap stops it and the run ends with ``max_tokens``, saying why.
* **repetition** (:mod:`agent.repetition`): when the thinking repeats itself, generation is
  restarted from the same position with a higher presence penalty for the rest of the step;
  if it repeats again, the step ends with ``"repetition"``. (A chat-only server cannot be
  restarted inside its turn: the first repetition is reported and generation goes on; the
  second ends the step.)
* **compaction** (:mod:`agent.compaction`): when the context does not fit, or fills up while
  the model writes, the reasoning of finished steps is dropped, the compacted context is
  evaluated once (a zero-token generation), :class:`~agent.events.Compacted` is emitted, and
  generation goes on. Only when nothing is left to drop does the window end the run.

What the step adds to the context is in :attr:`Step.segments` (the model's text and any text
the runtime inserted, in order); the loop appends them once the step is over.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from agent.compaction import Compactor
from agent.events import Compacted, Event, Repetition, Text, Thinking, ThinkingClosed
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
from agent.thinking_budget import closing_text
from models import ContextOverflowError, GenerateOptions, Sampling, Segment, StopReason
from models.qwq.tags import CALL_OPEN

if TYPE_CHECKING:
    from agent.loop import RunState

REPETITION_PRESENCE_PENALTY = 1.5
"""The presence penalty a repeating thinking gets for the rest of its step (QwQ's model card
allows 0 to 2)."""


@dataclass
class Step:
    """What one step produced. Offsets (``invented_at``) are in :attr:`text`."""

    parser: StreamParser
    """The parser of the text being generated (a new one after the budget closed the
    thinking: it starts in the answer)."""
    text: str = ""
    """Everything the step adds to the context, in order: what the model wrote and what the
    runtime inserted."""
    segments: list[Segment] = field(default_factory=list)
    thoughts: list[bool] = field(default_factory=list)
    """For each segment: a model segment that began inside the thinking (compactable)."""
    base: int = 0
    """Where the text :attr:`parser` reads begins, in :attr:`text`."""
    reason: StopReason | str = "end_of_turn"
    items: list[ParsedCall | CallError] = field(default_factory=list)
    thinking_call: ParsedCall | CallError | None = None
    answer: list[str] = field(default_factory=list)
    thought_ended: bool = False
    invented_at: int | None = None
    """Where the model began a ``<tool_response>`` of its own; generation stopped there."""
    repeat: Repeat | None = None
    """The repetition that ended the step (``reason == "repetition"``)."""

    def add(self, segment: Segment, *, thought: bool) -> None:
        """Append ``segment`` to what the step adds to the context."""
        self.segments.append(segment)
        self.thoughts.append(thought)
        self.text += segment.text

    def truncate(self, at: int) -> None:
        """Keep only the first ``at`` characters of :attr:`text` (and of the segments)."""
        total = len(self.text)
        while self.segments and total - len(self.segments[-1].text) >= at:
            total -= len(self.segments.pop().text)
            self.thoughts.pop()
        if self.segments and total > at:
            last = self.segments[-1]
            self.segments[-1] = Segment(last.text[: len(last.text) - (total - at)], last.role)
        self.text = self.text[:at]


@dataclass
class _Generation:
    reason: StopReason | str = "end_of_turn"
    text: str = ""
    thinking_chars: int | None = None
    """Characters of ``text`` before the thinking ended (``None``: it did not end)."""
    repeat: Repeat | None = None


def generate_step(
    state: RunState,
    context: list[Segment],
    compactor: Compactor,
    step: Step,
    *,
    grammar_allowed: bool,
    deadline: float | None,
) -> Generator[Event, None, None]:
    """Run the generations of one step into ``step``, yielding their events.

    Raises:
        ContextOverflowError: the context does not fit even once compacted.
        BackendError: the backend failed.
    """
    backend = state.backend
    sampling = state.sampling
    detector = RepetitionDetector()
    penalised = False
    first = grammar_allowed
    while True:
        if (
            step.parser.in_thinking
            and state.budget.spent
            and not (yield from _close_thinking(state, step))
        ):
            return
        options, capped = _options(
            state, sampling, grammar=first, deadline=deadline, thinking=step.parser.in_thinking
        )
        in_thinking = step.parser.in_thinking
        before = backend.usage.completion_tokens
        restartable = backend.info.continues_in_turn
        try:  # a server says the context does not fit once asked (the first next())
            gen = backend.generate([*context, *step.segments], options)
            out = yield from _stream(
                state, gen, step, detector, deadline, stop_on_repeat=penalised or restartable
            )
        except ContextOverflowError as exc:
            if not (yield from _compact(state, context, compactor, step, exc.needed, deadline)):
                raise
            continue
        first = False
        if in_thinking:
            generated = backend.usage.completion_tokens - before
            thinking = len(out.text) if out.thinking_chars is None else out.thinking_chars
            state.budget.account(generated, out.text, thinking)
        if out.text:
            step.add(Segment(out.text, "model"), thought=in_thinking)
        if out.repeat is not None:
            repeat = out.repeat
            if penalised or not restartable:
                step.reason, step.repeat = "repetition", repeat
                yield _repetition_event(repeat, "stopped", sampling)
                return
            sampling = _penalised(sampling)
            penalised = True
            detector.reset()
            yield _repetition_event(repeat, "presence_penalty", sampling)
            continue
        if step.thinking_call is not None or step.invented_at is not None:
            step.reason = out.reason
            return
        if out.reason == "length" and capped and not restartable:
            # A chat-only server's turn cannot be continued (its stream closes the thinking
            # itself when it stops): the step ends here.
            step.reason = "length" if "".join(step.answer).strip() else "thinking_budget"
            return
        if out.reason == "length" and capped:
            if step.parser.in_thinking and not (yield from _close_thinking(state, step)):
                return
            continue  # the thinking ended before the cap: the answer goes on
        if out.reason == "context_full":
            full = backend.usage.context_tokens
            if (yield from _compact(state, context, compactor, step, full, deadline)):
                continue
        step.reason = out.reason
        return


def _options(
    state: RunState, sampling: Sampling, *, grammar: bool, deadline: float | None, thinking: bool
) -> tuple[GenerateOptions, bool]:
    """The options of the next generation, and whether the thinking budget caps it."""
    limits = state.limits
    remaining = None
    if limits.max_tokens is not None:
        used = state.backend.usage.completion_tokens - state.usage_start.completion_tokens
        remaining = max(0, limits.max_tokens - used)
    constraint = None
    info = state.backend.info
    if grammar and state.tool_choice == "required" and info.supports_grammar and state.registry:
        from models.qwq.grammar import tool_call_grammar

        constraint = tool_call_grammar(state.registry.specs(), allow_thinking=info.opens_thinking)
    capped = False
    if thinking and constraint is None:  # a grammar's state could not survive a restart
        remaining, capped = state.budget.cap(remaining)
    cancel = state.cancel

    def interrupt() -> bool:  # so that a long prompt evaluation honours cancel and timeout
        return cancel.is_set() or (deadline is not None and time.monotonic() >= deadline)

    options = GenerateOptions(
        sampling=sampling, max_tokens=remaining, grammar=constraint, interrupt=interrupt
    )
    return options, capped


def _stream(
    state: RunState,
    gen: Generator[str, None, StopReason],
    step: Step,
    detector: RepetitionDetector,
    deadline: float | None,
    *,
    stop_on_repeat: bool,
) -> Generator[Event, None, _Generation]:
    """Stream one generation into ``step``; return what it produced (its text cut where a
    call made inside the thinking or an invented response ends it)."""
    out = _Generation()
    parser = step.parser
    start = len(step.text)  # where this generation's text begins in step.text
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
                            yield _repetition_event(found, "presence_penalty", state.sampling)
                elif isinstance(item, AnswerText):
                    step.answer.append(item.text)
                    yield Text(item.text)
                elif isinstance(item, ThinkingEnded):
                    step.thought_ended = True
                    if out.thinking_chars is None:
                        out.thinking_chars = n_fed
                elif isinstance(item, InventedResponse):
                    step.invented_at = step.base + item.at  # its text is dropped
                    if parser.in_thinking and state.placement == "interleaved":
                        step.thinking_call = _no_call_made(step.base + item.at)
                    break
                elif item.placement == "thinking" and state.placement == "interleaved":
                    step.thinking_call = replace(item, end=step.base + item.end)
                    break
                else:
                    step.items.append(item)
            if step.thinking_call is not None or step.invented_at is not None:
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
    if step.thinking_call is not None:
        text = text[: step.thinking_call.end - start]
    elif step.invented_at is not None:
        text = text[: step.invented_at - start]
    out.text = text
    if out.thinking_chars is not None:
        out.thinking_chars = min(out.thinking_chars, len(text))
    return out


def _close_thinking(state: RunState, step: Step) -> Generator[Event, None, bool]:
    """Close the thinking at the end of ``step`` (the budget is spent); ``False`` when the
    backend cannot take inserted text (a chat-only server): the step then ends."""
    if not state.backend.info.continues_in_turn:
        step.reason = "thinking_budget"
        return False
    parser = step.parser
    if parser.in_call:  # a call still being written: dropped, it will not run
        cut = step.text.rfind(CALL_OPEN, step.base)
        if cut >= 0:
            step.truncate(cut)
    else:
        for item in parser.finish():
            if isinstance(item, ThinkingText):
                yield Thinking(item.text)
    text = closing_text()
    step.add(Segment(text, "template"), thought=False)
    step.parser = StreamParser(
        in_thinking=False, calls_in_thinking=state.placement == "interleaved"
    )
    step.base = len(step.text)
    step.thought_ended = True
    yield ThinkingClosed("budget", state.budget.used, text)
    return True


def _compact(
    state: RunState,
    context: list[Segment],
    compactor: Compactor,
    step: Step,
    needed: int,
    deadline: float | None,
) -> Generator[Event, None, bool]:
    """Compact ``context`` (``needed`` tokens did not fit) and evaluate it once; ``False``
    when there was nothing to drop.

    Raises:
        ContextOverflowError: the compacted context does not fit either.
    """
    done = compactor.compact()
    if done is None:
        return False
    backend = state.backend
    before = backend.usage.copy()
    options, _ = _options(state, state.sampling, grammar=False, deadline=deadline, thinking=False)
    gen = backend.generate([*context, *step.segments], replace(options, max_tokens=0))
    try:
        for _ in gen:  # a zero-token generation: the prefill only
            pass
    finally:
        gen.close()
    after = backend.usage
    evaluated = (after.prompt_tokens_evaluated + after.prompt_tokens_cached) > (
        before.prompt_tokens_evaluated + before.prompt_tokens_cached
    )
    if evaluated:
        tokens_after = after.context_tokens
    else:  # a server evaluates nothing until the next request: estimate from characters
        extra = len(step.text)
        tokens_after = round(needed * (done.chars_after + extra) / (done.chars_before + extra))
    yield Compacted(needed, tokens_after, done.segments, estimated=not evaluated)
    return True


def _penalised(sampling: Sampling) -> Sampling:
    return replace(
        sampling, presence_penalty=max(sampling.presence_penalty, REPETITION_PRESENCE_PENALTY)
    )


def _repetition_event(repeat: Repeat, action: str, sampling: Sampling) -> Repetition:
    return Repetition(
        period=repeat.period,
        repeats=round(repeat.repeats, 1),
        action="stopped" if action == "stopped" else "presence_penalty",
        presence_penalty=sampling.presence_penalty,
        unit=repeat.unit[:200],
    )


def _no_call_made(at: int) -> CallError:
    """The result of a ``<tool_response>`` the model opened with no call before it."""
    import prompts

    return CallError(
        prompts.render("invented_response"), "thinking", "", True, at, kind="invented_response"
    )
