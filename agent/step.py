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

:func:`generate_step` returns what the step produced as a :class:`StepResult` (the value of
``yield from``): what it adds to the context (:attr:`StepResult.segments`, the model's text and
any text the runtime inserted, in order), why it stopped, and the calls and answer it found.
The loop appends the segments once the step is over and acts on the rest (:mod:`agent.loop`).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace

import prompts
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
from agent.state import RunState
from agent.thinking_budget import closing_text
from models import ContextOverflowError, GenerateOptions, Sampling, Segment, StopReason
from models.qwq.grammar import tool_call_grammar
from models.qwq.tags import CALL_OPEN

REPETITION_PRESENCE_PENALTY = 1.5
"""The presence penalty a repeating thinking gets for the rest of its step (QwQ's model card
allows 0 to 2)."""


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one step produced. Offsets (``invented_at``, a call's ``end``) are in :attr:`text`."""

    parser: StreamParser
    """The parser of the step's last text (a new one, in the answer, after the budget closed
    the thinking); it may hold text back until ``finish()``."""
    reason: StopReason | str
    """The backend's :data:`models.StopReason` (an interrupted one is ``"cancelled"`` or
    ``"timeout"``), ``"repetition"``, or ``"thinking_budget"`` (a backend that cannot close
    the thinking inside its turn used the budget up)."""
    text: str
    """What the step adds to the context: the model's text and the runtime's, in order."""
    segments: tuple[Segment, ...]
    """:attr:`text` as segments."""
    thoughts: tuple[bool, ...]
    """For each segment: a model segment that began inside the thinking (compactable)."""
    items: tuple[ParsedCall | CallError, ...]
    """The calls (and call errors) the parser reported, except :attr:`thinking_call`."""
    thinking_call: ParsedCall | CallError | None
    """A call made inside the thinking ("interleaved"): generation stopped right after it."""
    answer: str
    """The answer text reported so far (not stripped)."""
    invented_at: int | None
    """Where the model began a ``<tool_response>`` of its own; generation stopped there."""
    repeat: Repeat | None
    """The repetition that ended the step (``reason == "repetition"``)."""


@dataclass
class _Draft:
    """The step being generated (private to this module; the loop gets a :class:`StepResult`)."""

    parser: StreamParser
    text: str = ""
    segments: list[Segment] = field(default_factory=list)
    thoughts: list[bool] = field(default_factory=list)
    base: int = 0
    """Where the text :attr:`parser` reads begins, in :attr:`text`."""
    items: list[ParsedCall | CallError] = field(default_factory=list)
    answer: list[str] = field(default_factory=list)
    thinking_call: ParsedCall | CallError | None = None
    invented_at: int | None = None

    def add(self, segment: Segment, *, thought: bool) -> None:
        """Append ``segment`` to what the step adds to the context."""
        self.segments.append(segment)
        self.thoughts.append(thought)
        self.text += segment.text

    def absorb(self, out: _Generation, *, thought: bool) -> None:
        """Take in one generation: its text (a model segment) and what the parser found in it."""
        if out.text:
            self.add(Segment(out.text, "model"), thought=thought)
        self.answer.extend(out.answer)
        self.items.extend(out.items)
        self.thinking_call = out.thinking_call
        self.invented_at = out.invented_at

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

    def result(self, reason: StopReason | str, repeat: Repeat | None = None) -> StepResult:
        """The finished step, stopped for ``reason``."""
        return StepResult(
            parser=self.parser,
            reason=reason,
            text=self.text,
            segments=tuple(self.segments),
            thoughts=tuple(self.thoughts),
            items=tuple(self.items),
            thinking_call=self.thinking_call,
            answer="".join(self.answer),
            invented_at=self.invented_at,
            repeat=repeat,
        )


@dataclass
class _Generation:
    """What one generation produced (:func:`_stream`); offsets are in the step's text."""

    reason: StopReason | str = "end_of_turn"
    text: str = ""
    thinking_chars: int | None = None
    """Characters of ``text`` before the thinking ended (``None``: it did not end)."""
    repeat: Repeat | None = None
    answer: list[str] = field(default_factory=list)
    items: list[ParsedCall | CallError] = field(default_factory=list)
    thinking_call: ParsedCall | CallError | None = None
    invented_at: int | None = None


def generate_step(
    state: RunState,
    context: list[Segment],
    compactor: Compactor,
    *,
    in_thinking: bool,
    grammar_allowed: bool,
    deadline: float | None,
) -> Generator[Event, None, StepResult]:
    """Run the generations of one step after ``context``, yielding their events; return what
    the step produced. ``context`` itself changes only when it is compacted.

    Args:
        state: the run.
        context: what the model has read so far (the loop's list).
        compactor: compacts ``context`` when the window is full.
        in_thinking: the step begins inside the thinking.
        grammar_allowed: the step may be constrained by the tool-call grammar
            (``tool_choice="required"``; the first step of a run only).
        deadline: ``time.monotonic()`` past which the run times out (``None``: never).

    Raises:
        ContextOverflowError: the context does not fit even once compacted.
        BackendError: the backend failed.
    """
    backend = state.backend
    sampling = state.sampling
    restartable = backend.info.continues_in_turn
    draft = _Draft(
        StreamParser(in_thinking=in_thinking, calls_in_thinking=state.placement == "interleaved")
    )
    detector = RepetitionDetector()
    penalised = False
    first = grammar_allowed
    while True:
        if draft.parser.in_thinking and state.budget.spent:
            if not restartable:  # a chat-only server cannot take the closing text
                return draft.result("thinking_budget")
            yield from _close_thinking(state, draft)
        thinking = draft.parser.in_thinking
        options, capped = _options(
            state, sampling, grammar=first, deadline=deadline, thinking=thinking
        )
        before = backend.usage.completion_tokens
        try:  # a server says the context does not fit once asked (the first next())
            gen = backend.generate([*context, *draft.segments], options)
            out = yield from _stream(
                state,
                gen,
                draft.parser,
                base=draft.base,
                start=len(draft.text),
                detector=detector,
                deadline=deadline,
                stop_on_repeat=penalised or restartable,
            )
        except ContextOverflowError as exc:
            if not (yield from _compact(state, compactor, draft.segments, exc.needed, deadline)):
                raise
            continue
        first = False
        if thinking:
            generated = backend.usage.completion_tokens - before
            chars = len(out.text) if out.thinking_chars is None else out.thinking_chars
            state.budget.account(generated, out.text, chars)
        draft.absorb(out, thought=thinking)
        if out.repeat is not None:
            if penalised or not restartable:
                yield _repetition_event(out.repeat, "stopped", sampling)
                return draft.result("repetition", out.repeat)
            sampling = _penalised(sampling)
            penalised = True
            detector.reset()
            yield _repetition_event(out.repeat, "presence_penalty", sampling)
            continue
        if draft.thinking_call is not None or draft.invented_at is not None:
            return draft.result(out.reason)
        if out.reason == "length" and capped and not restartable:
            # A chat-only server's turn cannot be continued (its stream closes the thinking
            # itself when it stops): the step ends here.
            answered = "".join(draft.answer).strip()
            return draft.result("length" if answered else "thinking_budget")
        if out.reason == "length" and capped:
            if draft.parser.in_thinking:
                yield from _close_thinking(state, draft)
            continue  # the thinking closed, or it ended before the cap: the answer goes on
        if out.reason == "context_full":
            full = backend.usage.context_tokens
            if (yield from _compact(state, compactor, draft.segments, full, deadline)):
                continue
        return draft.result(out.reason)


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
    parser: StreamParser,
    *,
    base: int,
    start: int,
    detector: RepetitionDetector,
    deadline: float | None,
    stop_on_repeat: bool,
) -> Generator[Event, None, _Generation]:
    """Stream one generation through ``parser``, yielding its events; return what it produced
    (its text cut where a call made inside the thinking or an invented response ends it).

    ``base`` is where the text ``parser`` reads begins in the step's text, ``start`` where this
    generation's text begins (the offsets of what it returns are in the step's text). A
    backend that refuses the context raises before its first chunk.
    """
    out = _Generation()
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


def _close_thinking(state: RunState, draft: _Draft) -> Generator[Event, None, None]:
    """Close the thinking at the end of ``draft`` (the budget is spent): a call still being
    written is dropped, the closing text is added, and a new parser reads the answer.

    Only for a backend that continues inside its turn (``info.continues_in_turn``)."""
    parser = draft.parser
    if parser.in_call:  # a call still being written: dropped, it will not run
        cut = draft.text.rfind(CALL_OPEN, draft.base)
        if cut >= 0:
            draft.truncate(cut)
    else:
        for item in parser.finish():
            if isinstance(item, ThinkingText):
                yield Thinking(item.text)
    text = closing_text()
    draft.add(Segment(text, "template"), thought=False)
    draft.parser = StreamParser(
        in_thinking=False, calls_in_thinking=state.placement == "interleaved"
    )
    draft.base = len(draft.text)
    yield ThinkingClosed("budget", state.budget.used, text)


def _compact(
    state: RunState,
    compactor: Compactor,
    pending: Sequence[Segment],
    needed: int,
    deadline: float | None,
) -> Generator[Event, None, bool]:
    """Compact the context (``needed`` tokens did not fit) and evaluate it, followed by
    ``pending`` (the step so far), once; ``False`` when there was nothing to drop.

    Raises:
        ContextOverflowError: the compacted context does not fit either.
    """
    done = compactor.compact()
    if done is None:
        return False
    backend = state.backend
    before = backend.usage.copy()
    options, _ = _options(state, state.sampling, grammar=False, deadline=deadline, thinking=False)
    gen = backend.generate([*compactor.context, *pending], replace(options, max_tokens=0))
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
        extra = sum(len(s.text) for s in pending)
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
    return CallError(
        prompts.render("invented_response"), "thinking", "", True, at, kind="invented_response"
    )
