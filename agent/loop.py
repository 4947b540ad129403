"""The agent loop: generate, parse, run tools, feed observations back, until done.

One run is a generator of events (:func:`run_loop`). The context is an append-only list of
segments (see :mod:`models.base`); the loop never re-renders what the model already read, so
a backend with a KV cache evaluates only what is new.

Stopping rule (the design's): inside the thinking, with the "interleaved" placement,
generation stops at the first ``</tool_call>``; the call runs and its result is inserted right
there (``\\n<tool_response>\\n…\\n</tool_response>\\n``), and the model continues the same
thought. After ``</think>`` (and for every call with the "template" placement), the model may
emit several calls; generation stops at the end of its turn, they all run, concurrently, and
the results go back as one user turn of ``<tool_response>`` blocks, as the chat template does.

Every way a run can end yields one :class:`agent.events.Finished` with its reason; model
mistakes (malformed calls, unknown tools, bad arguments) are observations, not endings.

One step may be several generations (:mod:`agent.step`): the thinking budget closes the
thinking and lets the model answer, a thinking that repeats itself is restarted with a higher
presence penalty, and a full window is compacted (the reasoning of finished steps dropped)
before it ends the run with ``context_overflow``.

Following one run
-----------------
The control flow of a run is in five files of ``agent/``, then the backend; in order:

1. ``agent/agent.py``: :meth:`agent.Agent.stream` builds a :class:`~agent.state.RunState`
   (backend, tools, executor, limits, approval policy; data only, in ``agent/state.py``) and
   iterates :func:`run_loop`, writing each event to the transcript as it passes it on; at
   the end it adds ``state.new_messages`` to the conversation.
2. ``agent/loop.py`` (this module): :func:`run_loop` renders the prompt (:func:`_open`),
   takes steps until one ends the run, and finishes (:func:`_finish`). Each step
   (:func:`_take_step`) checks the limits (:func:`_limit_reached`), generates
   (:func:`_generate`), and acts on what the model did: a call made inside the thinking runs
   and its result goes right after it (:func:`_continue_thought`: the same turn goes on); a
   step stopped early ends the run (:func:`_stopped`); a turn without calls is the answer
   (:func:`_answered`); the calls of a finished turn run and their results go back as a new
   turn (:func:`_tool_turn`). Each step returns an :data:`Outcome`: :class:`Next` (the run
   goes on) or an :class:`~agent.state.Ending` (what its ``Finished`` event says).
3. ``agent/step.py``: :func:`~agent.step.generate_step` runs the generations of one step
   (thinking budget, repetition, compaction), reads them with the streaming parser
   (:mod:`agent.parser`) and returns a :class:`~agent.step.StepResult`.
4. ``agent/calls.py``: :func:`~agent.calls.run_calls` judges the calls of a step (parse
   errors, repeats, the per-step cap, the approval of :mod:`agent.approval`) and has the
   executor run the approved ones.
5. ``agent/executor.py``: :class:`~agent.executor.ToolExecutor` validates the calls
   (``prepare``) and runs them concurrently (``run``), with their timeouts.

The backend (:class:`models.Backend`, its contract in :mod:`models.base`) is where ``step.py``
goes: ``models/llama/backend.py`` in process, ``models/openai/`` over HTTP,
``models/scripted.py`` in the tests; ``generate`` continues the context and streams text.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from agent.call_formats import unrun_feedback
from agent.calls import record_tool_turn, run_calls
from agent.compaction import Compactor
from agent.events import Error, Event, Finished, Text, Thinking, UsageEvent
from agent.parser import AnswerText, CallError, ParsedCall, ThinkingText
from agent.state import (
    DEFAULT_MAX_STEPS,
    Ending,
    Limits,
    RunState,
    build_messages,
    inert,
    render_prompt,
)
from agent.step import StepResult, generate_step
from agent.thinking_budget import ThinkingBudget
from models import BackendError, ContextOverflowError, Segment, Usage
from models.qwq import chat_template
from models.qwq.observations import inline_result_segments, tool_results_segments
from models.qwq.tags import CALL_CLOSE, CALL_OPEN

__all__ = [
    "DEFAULT_MAX_STEPS",
    "Ending",
    "Limits",
    "Next",
    "Outcome",
    "RunState",
    "build_messages",
    "inert",
    "render_prompt",
    "run_loop",
]


class Next(Enum):
    """Where the run goes after a step that did not end it."""

    SAME_TURN = "same_turn"
    """A call made inside the thinking ran and its result follows it: the model continues
    the same thought."""
    NEW_TURN = "new_turn"
    """The calls of the model's turn ran and their results went back as a user turn: the
    model starts a new turn (inside the thinking when the model opens one)."""


Outcome = Next | Ending
"""What a step of the run (or the opening of its prompt) leads to."""


@dataclass
class _Run:
    """What the loop keeps between the steps of one run."""

    deadline: float | None
    """``time.monotonic()`` past which the run times out (``None``: no timeout)."""
    context: list[Segment] = field(default_factory=list)
    """What the model has read (the prompt, its text, the observations), append-only but
    for compaction."""
    compactor: Compactor = field(init=False)
    steps: int = 0
    turn: list[str] = field(default_factory=list)
    """The raw text of the assistant turn so far (recorded in the conversation when it ends)."""
    ids: Iterator[int] = field(default_factory=lambda: iter(range(1, 1_000_000)))
    """The numbers of the run's call ids."""
    repeats: Counter[str] = field(default_factory=Counter)
    """How often each (tool, arguments) was called."""
    told: set[str] = field(default_factory=set)
    """Answers already fed back as near-miss calls."""

    def __post_init__(self) -> None:
        self.compactor = Compactor(self.context)


def run_loop(state: RunState, history: Sequence[dict[str, Any]], prompt: str) -> Iterator[Event]:
    """Run one task; yield its events; always end with exactly one ``Finished``.

    The prompt is rendered, then steps are taken, each continuing where the previous one left
    the model (:class:`Next`), until one returns an :class:`Ending`; that becomes the
    ``Finished`` event. What the run adds to the conversation is in ``state.new_messages``,
    its usage in ``state.usage``.
    """
    run = _begin(state, history, prompt)
    outcome = yield from _open(state, run, history, prompt)
    while isinstance(outcome, Next):
        outcome = yield from _take_step(state, run, outcome)
    yield from _finish(state, run, outcome)


def _begin(state: RunState, history: Sequence[dict[str, Any]], prompt: str) -> _Run:
    """Start the run's clock, usage and thinking budget, and record the prompt."""
    limits = state.limits
    state.started = time.monotonic()
    state.usage_start = state.backend.usage.copy()
    state.budget = ThinkingBudget(limits.thinking_budget)
    state.flow.note_history(history, state.registry)
    state.new_messages.append({"role": "user", "content": prompt})
    return _Run(None if limits.timeout is None else state.started + limits.timeout)


def _open(
    state: RunState, run: _Run, history: Sequence[dict[str, Any]], prompt: str
) -> Generator[Event, None, Outcome]:
    """Render the prompt into the context: :attr:`Next.NEW_TURN` (the model's first turn),
    or an ``"error"`` :class:`Ending` after a fatal ``Error`` event when the template fails."""
    try:
        text = render_prompt(state, build_messages(state, history, prompt))
    except chat_template.TemplateError as exc:
        yield Error(f"the prompt could not be rendered: {exc}", "template", fatal=True)
        return Ending("error", detail=str(exc))
    run.context.append(Segment(text, "template"))
    return Next.NEW_TURN


def _take_step(state: RunState, run: _Run, turn: Next) -> Generator[Event, None, Outcome]:
    """One step: check the limits, generate, and act on what the model did.

    Returns :attr:`Next.SAME_TURN` after a call made inside the thinking ran,
    :attr:`Next.NEW_TURN` after the calls of a finished turn ran, or the :class:`Ending`: a
    limit, a failure, a repeated call, an answer.
    """
    if (ending := _limit_reached(state, run)) is not None:
        return ending
    step = yield from _generate(state, run, new_turn=turn is Next.NEW_TURN)
    if isinstance(step, Ending):
        return step
    if step.thinking_call is not None:
        return (yield from _continue_thought(state, run, step.thinking_call))
    if (ending := _stopped(state, step)) is not None:
        return ending
    items, answer = yield from _turn_calls(state, run, step)
    if not items:
        return _answered(state, run, step, answer)
    return (yield from _tool_turn(state, run, items))


def _limit_reached(state: RunState, run: _Run) -> Ending | None:
    """The :class:`Ending` of a run that must not take another step (cancelled, out of time,
    steps or tokens); ``None`` when it may."""
    limits = state.limits
    if state.cancel.is_set():
        return Ending("cancelled", detail="the run was cancelled")
    if run.deadline is not None and time.monotonic() >= run.deadline:
        return Ending("timeout", detail=f"the run took longer than its {limits.timeout} s limit")
    if run.steps >= limits.max_steps:
        return Ending(
            "max_steps",
            detail=f"the model used all {limits.max_steps} steps without finishing its answer; "
            "raise max_steps or simplify the task",
        )
    if limits.max_tokens is not None and state.usage.completion_tokens >= limits.max_tokens:
        return Ending(
            "max_tokens", detail=f"the run used its budget of {limits.max_tokens} generated tokens"
        )
    return None


def _generate(
    state: RunState, run: _Run, *, new_turn: bool
) -> Generator[Event, None, StepResult | Ending]:
    """Generate one step (:func:`agent.step.generate_step`), add what it wrote to the context
    and the turn, and yield the run's usage after it.

    Returns the step, or (after a fatal ``Error`` event) the :class:`Ending` of a backend that
    failed or a context that does not fit even compacted.
    """
    run.steps += 1
    try:
        step = yield from generate_step(
            state,
            run.context,
            run.compactor,
            in_thinking=state.backend.info.opens_thinking if new_turn else True,
            grammar_allowed=run.steps == 1,
            deadline=run.deadline,
        )
    except ContextOverflowError as exc:
        yield Error(str(exc), "context_overflow", fatal=True)
        return Ending("context_overflow", detail=str(exc))
    except BackendError as exc:
        yield Error(str(exc), "backend", fatal=True)
        return Ending("error", detail=str(exc))
    for segment, thought in zip(step.segments, step.thoughts, strict=True):
        if thought:
            run.compactor.note(len(run.context))
        run.context.append(segment)
    if step.text:
        run.turn.append(step.text)
    state.usage = _run_usage(state)
    yield UsageEvent(state.usage.copy(), run.steps)
    return step


def _continue_thought(
    state: RunState, run: _Run, call: ParsedCall | CallError
) -> Generator[Event, None, Outcome]:
    """Run the call made inside the thinking and put its result right after it:
    :attr:`Next.SAME_TURN`, or the :class:`Ending` of a call repeated too often."""
    results = yield from run_calls(state, [call], run.ids, run.repeats, run.deadline)
    if isinstance(results, Ending):
        return results
    observation = inline_result_segments(results[0], inert=inert(state))
    run.context.extend(observation)
    run.turn.append("".join(s.text for s in observation))
    return Next.SAME_TURN


def _stopped(state: RunState, step: StepResult) -> Ending | None:
    """The :class:`Ending` of a step that stopped before the model ended its turn
    (cancelled, timed out, out of tokens or window, repeating itself); ``None`` otherwise."""
    limits = state.limits
    answer = step.answer.strip()
    if step.reason == "cancelled":
        return Ending("cancelled", answer, "the run was cancelled")
    if step.reason == "timeout":
        return Ending("timeout", answer, f"the run took longer than its {limits.timeout} s limit")
    if step.reason == "length":
        where = " (in the middle of a tool call, which was not run)" if _open_call(step) else ""
        detail = f"the run used its budget of {limits.max_tokens} generated tokens{where}"
        return Ending("max_tokens", answer, detail)
    if step.reason == "context_full":
        detail = (
            "the context window is full even with the reasoning of finished steps dropped; "
            "start a new session or raise --ctx"
        )
        return Ending("context_overflow", answer, detail)
    if step.reason == "repetition":
        repeat = step.repeat
        what = (
            f" (a span of {repeat.period} characters, {repeat.repeats:.0f} times)" if repeat else ""
        )
        detail = (
            f"the model's thinking kept repeating itself{what} after the presence penalty was "
            "raised; try again (another seed), or simplify the task"
        )
        return Ending("repetition", answer, detail)
    if step.reason == "thinking_budget":
        detail = (
            f"the thinking used its budget of {limits.thinking_budget} tokens, and this "
            "backend cannot close the thinking inside its turn (a chat-only server); "
            "use the completions API mode to have the model answer"
        )
        return Ending("max_tokens", answer, detail)
    return None


def _open_call(step: StepResult) -> bool:
    """Whether the step's text ends inside a ``<tool_call>`` block."""
    return step.text.rfind(CALL_OPEN) > step.text.rfind(CALL_CLOSE)


def _turn_calls(
    state: RunState, run: _Run, step: StepResult
) -> Generator[Event, None, tuple[list[ParsedCall | CallError], str]]:
    """The model ended its turn: the calls to run, and its answer (stripped).

    The parser gives up what it held back (its text is yielded); when the turn made no call,
    an answer that looks like a call that did not run is fed back as one
    (:func:`agent.call_formats.unrun_feedback`, once per answer).
    """
    items = list(step.items)
    answer = [step.answer]
    for item in step.parser.finish() if step.invented_at is None else ():
        if isinstance(item, AnswerText):
            answer.append(item.text)
            yield Text(item.text)
        elif isinstance(item, ThinkingText):
            yield Thinking(item.text)
        elif isinstance(item, ParsedCall | CallError):
            items.append(item)
    text = "".join(answer).strip()
    if not items:
        feedback = unrun_feedback(
            text,
            state.registry.names(),
            invented_response=step.invented_at is not None,
            already_told=run.told,
            end=len(step.text),
        )
        if feedback is not None:
            items.append(feedback)
    return items, text


def _answered(state: RunState, run: _Run, step: StepResult, answer: str) -> Ending:
    """The model ended its turn with no call: the turn is recorded and the run is
    ``"completed"`` (the detail says why when the answer is empty)."""
    detail = ""
    if not answer and step.parser.in_thinking and state.backend.info.opens_thinking:
        detail = "the model ended its turn without closing its thinking (no </think>), so it gave no separate answer"
    elif not answer:
        detail = "the model gave an empty answer"
    state.new_messages.append({"role": "assistant", "content": "".join(run.turn)})
    run.turn.clear()
    return Ending("completed", answer, detail)


def _tool_turn(
    state: RunState, run: _Run, items: Sequence[ParsedCall | CallError]
) -> Generator[Event, None, Outcome]:
    """Run the calls of the turn the model ended, record the turn and their results in the
    conversation, and send the results back as one user turn: :attr:`Next.NEW_TURN`, or the
    :class:`Ending` of a call repeated too often (the turn is recorded without results)."""
    outputs = yield from run_calls(state, items, run.ids, run.repeats, run.deadline)
    ran = [] if isinstance(outputs, Ending) else outputs
    record_tool_turn(state, "".join(run.turn), items, ran)
    run.turn.clear()
    if isinstance(outputs, Ending):
        return outputs
    run.context.extend(
        tool_results_segments(
            outputs, opens_thinking=state.backend.info.opens_thinking, inert=inert(state)
        )
    )
    return Next.NEW_TURN


def _finish(state: RunState, run: _Run, ending: Ending) -> Iterator[Event]:
    """Record the turn left unrecorded (if any) and yield the run's one ``Finished`` event."""
    if run.turn:
        state.new_messages.append({"role": "assistant", "content": "".join(run.turn)})
    yield Finished(
        ending.reason,
        ending.answer,
        detail=ending.detail,
        duration=time.monotonic() - state.started,
    )


def _run_usage(state: RunState) -> Usage:
    """The run's usage so far: the backend's counters since the run began, and the tools' time."""
    usage = state.backend.usage.since(state.usage_start)
    usage.tool_seconds = state.usage.tool_seconds
    return usage
