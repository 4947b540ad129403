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
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import prompts
from agent.approval import ApprovalCallback, ApprovalPolicy, DataFlow, ask_callback
from agent.call_formats import unrun_feedback
from agent.compaction import Compactor
from agent.events import (
    Approval,
    Error,
    Event,
    Finished,
    FinishReason,
    Text,
    Thinking,
    ToolCall,
    ToolCallEvent,
    ToolResult,
    UsageEvent,
)
from agent.executor import PreparedCall, ToolExecutor
from agent.parser import AnswerText, CallError, ParsedCall, StreamParser, ThinkingText
from agent.step import Step, generate_step
from agent.thinking_budget import ThinkingBudget
from models import (
    Backend,
    BackendError,
    ContextOverflowError,
    Neutraliser,
    Sampling,
    Segment,
    Usage,
    neutraliser,
)
from models.qwq import chat_template
from models.qwq.observations import Feedback, inline_result_segments, tool_results_segments
from models.qwq.tags import CALL_CLOSE, CALL_OPEN
from tools import ToolRegistry

_CALL_BLOCK = re.compile(rf"{CALL_OPEN}.*?(?:{CALL_CLOSE}|$)", re.DOTALL)


DEFAULT_MAX_STEPS = 20
"""Model generations per run unless told otherwise (the one place this default is set)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The numbers that bound one run; breaking one ends the run with its reason."""

    max_steps: int = DEFAULT_MAX_STEPS
    max_tokens: int | None = None
    timeout: float | None = None
    max_repeated_calls: int = 3
    max_calls_per_step: int = 16
    """Calls run from one generation; the rest get an error observation (one step cannot
    start thousands of tools or sandboxes)."""
    thinking_budget: int | None = None
    """Thinking tokens per run; then the runtime closes the thinking and the model answers
    (:mod:`agent.thinking_budget`). ``None``: no budget."""

    def __post_init__(self) -> None:
        """Raises ``ValueError`` for a limit that could never be met (zero, negative)."""
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps!r}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1 (or None), got {self.max_tokens!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout must be more than 0 seconds (or None), got {self.timeout!r}")
        if self.max_calls_per_step < 1:
            raise ValueError(
                f"max_calls_per_step must be at least 1, got {self.max_calls_per_step!r}"
            )
        if self.max_repeated_calls < 1:
            raise ValueError(
                f"max_repeated_calls must be at least 1, got {self.max_repeated_calls!r}"
            )
        if self.thinking_budget is not None and self.thinking_budget < 0:
            raise ValueError(
                f"thinking_budget must be 0 or more tokens (or None), got {self.thinking_budget!r}"
            )


@dataclass
class RunState:
    """Everything one run needs, and what it leaves behind (``usage``, ``new_messages``)."""

    backend: Backend
    registry: ToolRegistry
    executor: ToolExecutor
    policy: ApprovalPolicy
    approval_callback: ApprovalCallback | None
    placement: str
    limits: Limits
    sampling: Sampling
    tool_choice: str
    system: str | None
    workspace: Path | None
    cancel: threading.Event
    usage: Usage = field(default_factory=Usage)
    new_messages: list[dict[str, Any]] = field(default_factory=list)
    started: float = 0.0
    """``time.monotonic()`` when the run began."""
    flow: DataFlow = field(default_factory=DataFlow)
    """The private reads so far, for the exfiltration gate (:mod:`agent.approval`)."""
    budget: ThinkingBudget = field(default_factory=lambda: ThinkingBudget(None))
    """The run's thinking tokens against ``limits.thinking_budget`` (set by :func:`run_loop`)."""
    usage_start: Usage = field(default_factory=Usage)
    """The backend's counters when the run began (the run's usage is the difference)."""


def build_messages(
    state: RunState, history: Sequence[dict[str, Any]], prompt: str
) -> list[dict[str, Any]]:
    """The OpenAI-style messages of a new run: system, the conversation so far, the prompt."""
    system = state.system
    if system is None:
        system = prompts.render(
            "system",
            tools=len(state.registry) > 0,
            placement=state.placement,
            required=state.tool_choice == "required",
            workspace=any(n in state.registry for n in ("read_file", "write_file", "list_dir")),
        )
    # Control tokens in the conversation are made inert where it is rendered (render_prompt).
    return [{"role": "system", "content": system}, *history, {"role": "user", "content": prompt}]


def inert(state: RunState) -> Neutraliser:
    """What makes untrusted text inert for this run's model (its own control tokens too)."""
    return neutraliser(state.backend.info.control_tokens)


def render_prompt(state: RunState, messages: list[dict[str, Any]]) -> str:
    """The prompt text through the model's own chat template (QwQ's when it has none), every
    untrusted string in it made inert (:func:`models.qwq.chat_template.render_safe`)."""
    info = state.backend.info
    return chat_template.render_safe(
        info.chat_template or chat_template.qwq_template(),
        messages,
        state.registry.specs() or None,
        inert=inert(state),
        declare_in_system=not info.template_supports_tools,
    )


def run_loop(state: RunState, history: Sequence[dict[str, Any]], prompt: str) -> Iterator[Event]:
    """Run one task; yield its events; always end with exactly one ``Finished``."""
    backend, limits = state.backend, state.limits
    started = state.started = time.monotonic()
    deadline = started + limits.timeout if limits.timeout is not None else None
    usage_start = state.usage_start = backend.usage.copy()
    state.budget = ThinkingBudget(limits.thinking_budget)
    state.flow.note_history(history, state.registry)
    state.new_messages.append({"role": "user", "content": prompt})
    try:
        context = [
            Segment(render_prompt(state, build_messages(state, history, prompt)), "template")
        ]
        compactor = Compactor(context)
    except chat_template.TemplateError as exc:
        yield Error(f"the prompt could not be rendered: {exc}", "template", fatal=True)
        yield Finished("error", "", detail=str(exc), duration=time.monotonic() - started)
        return

    ids = iter(range(1, 1_000_000))
    repeats: Counter[str] = Counter()
    told: set[str] = set()  # answers already fed back as near-miss calls
    turn_raw: list[str] = []
    new_turn = True
    steps = 0
    while True:
        reason, detail = _limit_reached(state, steps, deadline)
        if reason is not None:
            yield from _finish(state, turn_raw, reason, "", detail)
            return
        steps += 1
        in_thinking = backend.info.opens_thinking if new_turn else True
        parser = StreamParser(
            in_thinking=in_thinking, calls_in_thinking=state.placement == "interleaved"
        )
        step = Step(parser)
        try:
            yield from generate_step(
                state, context, compactor, step, grammar_allowed=steps == 1, deadline=deadline
            )
        except ContextOverflowError as exc:
            yield Error(str(exc), "context_overflow", fatal=True)
            yield from _finish(state, turn_raw, "context_overflow", "", str(exc))
            return
        except BackendError as exc:
            yield Error(str(exc), "backend", fatal=True)
            yield from _finish(state, turn_raw, "error", "", str(exc))
            return
        parser = step.parser  # a new one when the budget closed the thinking
        for segment, thought in zip(step.segments, step.thoughts, strict=True):
            if thought:
                compactor.note(len(context))
            context.append(segment)
        if step.text:
            turn_raw.append(step.text)
        state.usage = _run_usage(state, usage_start)
        yield UsageEvent(state.usage.copy(), steps)

        if step.thinking_call is not None:  # interleaved: result goes right here
            results, stop = yield from _run_calls(
                state, [step.thinking_call], ids, repeats, deadline
            )
            if stop is not None:
                yield from _finish(state, turn_raw, *stop)
                return
            observation = inline_result_segments(results[0], inert=inert(state))
            context.extend(observation)
            turn_raw.append("".join(s.text for s in observation))
            new_turn = False
            continue

        if step.reason in (
            "cancelled",
            "timeout",
            "length",
            "context_full",
            "repetition",
            "thinking_budget",
        ):
            ending: dict[str, tuple[FinishReason, str]] = {
                "cancelled": ("cancelled", "the run was cancelled"),
                "timeout": ("timeout", f"the run took longer than its {limits.timeout} s limit"),
                "length": ("max_tokens", _budget_detail(state, step)),
                "context_full": (
                    "context_overflow",
                    "the context window is full even with the reasoning of finished steps "
                    "dropped; start a new session or raise --ctx",
                ),
                "repetition": ("repetition", _repetition_detail(step)),
                "thinking_budget": (
                    "max_tokens",
                    f"the thinking used its budget of {limits.thinking_budget} tokens, and this "
                    "backend cannot close the thinking inside its turn (a chat-only server); "
                    "use the completions API mode to have the model answer",
                ),
            }
            why, text = ending[str(step.reason)]
            yield from _finish(state, turn_raw, why, "".join(step.answer).strip(), text)
            return

        for item in parser.finish() if step.invented_at is None else ():
            if isinstance(item, AnswerText):
                step.answer.append(item.text)
                yield Text(item.text)
            elif isinstance(item, ThinkingText):
                yield Thinking(item.text)
            elif isinstance(item, ParsedCall | CallError):
                step.items.append(item)

        answer = "".join(step.answer).strip()
        if not step.items:
            feedback = unrun_feedback(
                answer,
                state.registry.names(),
                invented_response=step.invented_at is not None,
                already_told=told,
                end=len(step.text),
            )
            if feedback is not None:
                step.items.append(feedback)
        if not step.items:
            detail = ""
            if not answer and parser.in_thinking and backend.info.opens_thinking:
                detail = "the model ended its turn without closing its thinking (no </think>), so it gave no separate answer"
            elif not answer:
                detail = "the model gave an empty answer"
            state.new_messages.append({"role": "assistant", "content": "".join(turn_raw)})
            yield Finished("completed", answer, detail=detail, duration=time.monotonic() - started)
            return

        outputs, stop = yield from _run_calls(state, step.items, ids, repeats, deadline)
        _record_tool_turn(state, "".join(turn_raw), step.items, outputs)
        if stop is not None:
            yield from _finish(state, [], *stop)
            return
        context.extend(
            tool_results_segments(
                outputs, opens_thinking=backend.info.opens_thinking, inert=inert(state)
            )
        )
        turn_raw = []
        new_turn = True


def _limit_reached(
    state: RunState, steps: int, deadline: float | None
) -> tuple[FinishReason | None, str]:
    limits = state.limits
    if state.cancel.is_set():
        return "cancelled", "the run was cancelled"
    if deadline is not None and time.monotonic() >= deadline:
        return "timeout", f"the run took longer than its {limits.timeout} s limit"
    if steps >= limits.max_steps:
        return "max_steps", (
            f"the model used all {limits.max_steps} steps without finishing its answer; "
            "raise max_steps or simplify the task"
        )
    if limits.max_tokens is not None and state.usage.completion_tokens >= limits.max_tokens:
        return "max_tokens", f"the run used its budget of {limits.max_tokens} generated tokens"
    return None, ""


def _repetition_detail(step: Step) -> str:
    repeat = step.repeat
    what = f" (a span of {repeat.period} characters, {repeat.repeats:.0f} times)" if repeat else ""
    return (
        f"the model's thinking kept repeating itself{what} after the presence penalty was "
        "raised; try again (another seed), or simplify the task"
    )


def _budget_detail(state: RunState, step: Step) -> str:
    where = (
        " (in the middle of a tool call, which was not run)"
        if _ends_in_open_call(step.text)
        else ""
    )
    return f"the run used its budget of {state.limits.max_tokens} generated tokens{where}"


def _ends_in_open_call(text: str) -> bool:
    return text.rfind(CALL_OPEN) > text.rfind(CALL_CLOSE)


def _run_calls(
    state: RunState,
    items: Sequence[ParsedCall | CallError],
    ids: Iterator[int],
    repeats: Counter[str],
    deadline: float | None,
) -> Generator[Event, None, tuple[list[str], tuple[FinishReason, str, str] | None]]:
    """Judge and run the calls of one step; return their observations in call order, and
    ``(reason, answer, detail)`` when the run must end."""
    observations: dict[int, str] = {}
    runnable: list[tuple[int, PreparedCall]] = []
    executor = state.executor
    calls = 0
    for index, item in enumerate(items):
        call_id = f"call_{next(ids)}"
        if isinstance(item, CallError):
            message = (
                f"the tool call could not be parsed: {item.message}"
                if item.kind == "malformed"
                else item.message
            )
            yield Error(message, "parse", call_id=call_id)
            observations[index] = Feedback(f"Error: {message}")
            continue
        call = ToolCall(call_id, item.name, item.arguments, item.placement, item.raw)
        yield ToolCallEvent(call)
        key = item.name + "\x00" + json.dumps(item.arguments, sort_keys=True, ensure_ascii=False)
        repeats[key] += 1
        if repeats[key] > state.limits.max_repeated_calls:
            detail = (
                f"the model called {item.name!r} with the same arguments "
                f"{repeats[key]} times; the run was stopped to avoid a loop"
            )
            yield Error(detail, "repeated", fatal=True, call_id=call_id)
            return [], ("repeated_call", "", detail)
        calls += 1
        if calls > state.limits.max_calls_per_step:
            skipped = executor.error(
                call,
                f"not run: at most {state.limits.max_calls_per_step} calls run per step and "
                f"this was call {calls}; make fewer calls at a time",
                "limit",
            )
            yield skipped
            observations[index] = f"Error: {skipped.error}"
            continue
        prepared = executor.prepare(call)
        if isinstance(prepared, ToolResult):
            yield prepared
            observations[index] = f"Error: {prepared.error}"
            continue
        approved, gate = yield from _approve(state, prepared)
        if not approved:
            denied = executor.error(
                call,
                f"the user denied this call to {call.name!r}"
                + (f" (it needed a yes because {gate})" if gate else "")
                + "; do not repeat it, continue without it or explain what you need",
                "denied",
            )
            yield denied
            observations[index] = f"Error: {denied.error}"
            continue
        runnable.append((index, prepared))
    if runnable:
        t0 = time.monotonic()
        by_id = {p.call.id: (i, p) for i, p in runnable}
        for result in executor.run([p for _, p in runnable], deadline):
            index, ran = by_id[result.call_id]
            if result.error_type not in ("timeout", "cancelled"):  # what it gave reaches the model
                state.flow.note(ran.call, ran.tool)
            yield result
            observations[index] = (
                result.output if result.output is not None else f"Error: {result.error}"
            )
        state.usage.tool_seconds += time.monotonic() - t0
    return [observations[i] for i in range(len(items))], None


def _approve(
    state: RunState, prepared: PreparedCall
) -> Generator[Event, None, tuple[bool, str | None]]:
    """Whether the call may run, and why the data flow held it (``None``: it did not)."""
    call, tool = prepared.call, prepared.tool
    gate = state.flow.gate(tool)
    decision = state.policy.decide(call, tool, gate)
    reason = (
        "; ".join(
            r for r in (gate, tool.approval_note(call.arguments, state.executor.context)) if r
        )
        or None
    )
    if decision == "ask" and state.approval_callback is not None:
        allowed = ask_callback(state.approval_callback, call, reason)
        yield Approval(call, tool.risk, allowed, "callback", reason)
        return allowed, gate
    if decision == "ask":
        event = Approval(call, tool.risk, reason=reason)
        yield event  # the consumer may answer before asking for the next event
        if event.decision is None:
            event.decision, event.decided_by = False, "default"
        return event.decision, gate
    if tool.risk == "dangerous" or gate is not None:
        yield Approval(call, tool.risk, decision == "allow", "policy", reason)
    return decision == "allow", gate


def _record_tool_turn(
    state: RunState, raw: str, items: Sequence[ParsedCall | CallError], outputs: Sequence[str]
) -> None:
    """Add the assistant turn with its calls, and the tool results, to the conversation."""
    calls = [
        {"type": "function", "function": {"name": i.name, "arguments": i.arguments}}
        for i in items
        if isinstance(i, ParsedCall)
    ]
    content = _CALL_BLOCK.sub("", raw).rstrip() if calls else raw
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    state.new_messages.append(message)
    state.new_messages.extend({"role": "tool", "content": o} for o in outputs)


def _finish(
    state: RunState, turn_raw: Sequence[str], reason: FinishReason, answer: str, detail: str
) -> Iterator[Event]:
    if turn_raw:
        state.new_messages.append({"role": "assistant", "content": "".join(turn_raw)})
    yield Finished(reason, answer, detail=detail, duration=time.monotonic() - state.started)


def _run_usage(state: RunState, usage_start: Usage) -> Usage:
    usage = state.backend.usage.since(usage_start)
    usage.tool_seconds = state.usage.tool_seconds
    return usage
