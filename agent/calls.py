"""The calls of one step: judge each, run the approved ones, and record the tool turn.

:func:`run_calls` is the loop's tool half (:mod:`agent.loop` calls it with the calls a step
made). Each call is judged in order before anything runs: a call that could not be parsed is
fed back as an error; a call repeated too often (the same tool and arguments more than
``limits.max_repeated_calls`` times in the run) ends the run; calls beyond
``limits.max_calls_per_step`` are not run; the executor validates the rest
(:meth:`agent.executor.ToolExecutor.prepare`), and the approval policy (with the data-flow gate
of :mod:`agent.approval`) decides, asking the callback or the consumer of the stream when it
must. The approved calls then run concurrently (:meth:`agent.executor.ToolExecutor.run`).
Unless the run ends, every call gets one observation, in call order.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Generator, Iterator, Sequence
from typing import Any

from agent.approval import ask_callback
from agent.events import Approval, Error, Event, ToolCall, ToolCallEvent, ToolResult
from agent.executor import PreparedCall
from agent.parser import CallError, ParsedCall
from agent.state import Ending, RunState
from models.qwq.observations import Feedback
from models.qwq.tags import CALL_CLOSE, CALL_OPEN

_CALL_BLOCK = re.compile(rf"{CALL_OPEN}.*?(?:{CALL_CLOSE}|$)", re.DOTALL)


def run_calls(
    state: RunState,
    items: Sequence[ParsedCall | CallError],
    ids: Iterator[int],
    repeats: Counter[str],
    deadline: float | None,
) -> Generator[Event, None, list[str] | Ending]:
    """Judge and run the calls of one step; return their observations in call order, or the
    ``"repeated_call"`` :class:`Ending` (after a fatal ``Error`` event) when a call was made
    more than ``limits.max_repeated_calls`` times with the same arguments (nothing runs)."""
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
            return Ending("repeated_call", detail=detail)
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
    return [observations[i] for i in range(len(items))]


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


def record_tool_turn(
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
