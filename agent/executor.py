"""Run tool calls: look up, validate, time out, capture, and make the output safe.

The executor never raises for a tool's sake: unknown tools, bad arguments, exceptions and
timeouts all become a :class:`agent.events.ToolResult` with ``error`` set, which the loop
feeds back to the model. Several calls run concurrently in a thread pool; a sync tool that
overruns its timeout is reported as timed out and left to finish in its thread (tools that
can be stopped, like the python sandbox, watch ``ToolContext.cancel_event`` and their own
deadlines).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from agent.events import ToolCall, ToolResult
from tools import (
    Tool,
    ToolArgumentError,
    ToolCancelledError,
    ToolContext,
    ToolError,
    ToolRegistry,
    UnknownToolError,
    cap,
)
from tools.output import DEFAULT_OUTPUT_CHARS


@dataclass(frozen=True, slots=True)
class PreparedCall:
    """A call whose tool exists and whose arguments passed validation."""

    call: ToolCall
    tool: Tool


def format_output(value: Any) -> str:
    """A tool's return value as text for the model (strings as they are, the rest as JSON)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


class ToolExecutor:
    """Validates and runs calls against one registry, with one tool context.

    Args:
        registry: the tools of the run.
        context: injected into tools that ask for it.
        output_chars: cap on each result placed in the context.
        default_timeout: used for tools that do not set their own (``None``: tool's own).
        max_workers: threads for concurrent calls.
    """

    def __init__(
        self,
        registry: ToolRegistry,
        context: ToolContext,
        *,
        output_chars: int = DEFAULT_OUTPUT_CHARS,
        default_timeout: float | None = None,
        max_workers: int = 8,
    ) -> None:
        self.registry = registry
        self.context = context
        self.output_chars = output_chars
        self.default_timeout = default_timeout
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="qwq-tool")

    def prepare(self, call: ToolCall) -> PreparedCall | ToolResult:
        """Resolve the tool and validate the arguments, or return the error result."""
        try:
            found = self.registry.get(call.name)
        except UnknownToolError as exc:
            return self.error(call, str(exc), "unknown_tool")
        try:
            found.validate(call.arguments)
        except ToolArgumentError as exc:
            return self.error(call, str(exc), "validation")
        return PreparedCall(call, found)

    def error(self, call: ToolCall, message: str, error_type: str) -> ToolResult:
        """A result for a call that did not run (or failed), its text capped (the context's
        builders make it inert: :mod:`models.qwq.chat_template`)."""
        return ToolResult(
            call_id=call.id,
            name=call.name,
            output=None,
            error=cap(message, self.output_chars),
            duration=0.0,
            error_type=error_type,
        )

    def run(
        self, calls: Sequence[PreparedCall], deadline: float | None = None
    ) -> Iterator[ToolResult]:
        """Run ``calls`` concurrently; yield each result as it completes.

        ``deadline`` (a ``time.monotonic()`` value) bounds every call, on top of each tool's
        own timeout. Cancellation (``context.cancel_event``) ends waiting at once.
        """
        started: dict[Future[Any], tuple[PreparedCall, float, float | None]] = {}
        for prepared in calls:
            timeout = (
                prepared.tool.timeout if prepared.tool.timeout is not None else self.default_timeout
            )
            t0 = time.monotonic()
            limit = t0 + timeout if timeout is not None else None
            if deadline is not None:
                limit = deadline if limit is None else min(limit, deadline)
            future = self._pool.submit(prepared.tool.invoke, prepared.call.arguments, self.context)
            started[future] = (prepared, t0, limit)
        pending = set(started)
        while pending:
            limits = [lim for f in pending if (lim := started[f][2]) is not None]
            nearest = min(limits) if limits else None
            wait_for = 0.05 if nearest is None else max(0.0, min(0.05, nearest - time.monotonic()))
            done, _ = wait(pending, timeout=wait_for, return_when=FIRST_COMPLETED)
            for future in done:
                pending.discard(future)
                yield self._collect(future, *started[future][:2])
            now = time.monotonic()
            for future in list(pending):
                prepared, t0, limit = started[future]
                if self.context.cancelled:
                    pending.discard(future)
                    future.cancel()
                    yield self._timed_error(
                        prepared.call, "the run was cancelled while the tool ran", "cancelled", t0
                    )
                elif limit is not None and now >= limit:
                    pending.discard(future)
                    future.cancel()
                    yield self._timed_error(
                        prepared.call,
                        f"the tool {prepared.call.name!r} did not finish within {limit - t0:.1f} s "
                        "and was abandoned; try smaller input or another approach",
                        "timeout",
                        t0,
                    )

    def _timed_error(self, call: ToolCall, message: str, error_type: str, t0: float) -> ToolResult:
        result = self.error(call, message, error_type)
        return ToolResult(
            call_id=result.call_id,
            name=result.name,
            output=None,
            error=result.error,
            duration=time.monotonic() - t0,
            error_type=error_type,
        )

    def _collect(self, future: Future[Any], prepared: PreparedCall, t0: float) -> ToolResult:
        call = prepared.call
        duration = time.monotonic() - t0
        try:
            value = future.result()
        except ToolError as exc:
            cancelled = isinstance(exc, ToolCancelledError) or self.context.cancelled
            kind = "cancelled" if cancelled else "error"
            return self._timed_error(call, str(exc) or type(exc).__name__, kind, t0)
        except Exception as exc:  # a tool's bug is the model's observation, not our crash
            return self._timed_error(call, f"{type(exc).__name__}: {exc}", "exception", t0)
        text = cap(format_output(value), self.output_chars)
        return ToolResult(call.id, call.name, output=text, error=None, duration=duration)

    def shutdown(self) -> None:
        """Stop accepting calls; running threads finish on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)
