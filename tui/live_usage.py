"""Live figures of a run for the status bar, measured while the model generates.

The agent reports exact counters once per step (:class:`agent.events.UsageEvent`); with QwQ a
step can think for minutes, so the bar also needs figures *during* it. :class:`LiveMeter`
runs in the TUI's worker thread beside ``agent.stream()``: it sees every event as it is
yielded and, at most every ``interval`` seconds (and after each step's usage), reads the
backend's cumulative counters and returns a :class:`LiveFigures` for the bar.

Where the counts come from:

* A backend whose counters move while it generates (llama.cpp counts each token as it is
  sampled) gives exact tokens and decode speed.
* A backend that counts a generation only when it ends (a server, the scripted backend)
  leaves the counters still; meanwhile the tokens are estimated from the streamed text at
  :data:`CHARS_PER_TOKEN` characters a token (the estimate the server backend uses when a
  server reports nothing) and the speed from the wall time since the first of them. The
  step's end replaces the estimate with the backend's count (``estimated`` says which).
* The thinking tokens are the run's tokens shared in proportion to the characters streamed
  as thinking and as answer: exact while the model only thinks, which is when it matters.

Reading the counters costs one small copy per ``interval``, not per token. Nothing here
imports Textual.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from agent import Event, Text, Thinking, ToolCallEvent, Usage, UsageEvent

CHARS_PER_TOKEN = 4
"""Characters per token when the backend has not counted them yet."""
INTERVAL = 0.25
"""Seconds between two figures during a generation (the bar redraws at 4 Hz)."""


@dataclass(frozen=True, slots=True)
class LiveFigures:
    """What the status bar shows of a run in progress (cumulative for the run)."""

    tokens: int
    """Tokens generated in the run so far."""
    thinking_tokens: int
    """Of ``tokens``, those of the thinking (see the module docstring)."""
    context_tokens: int
    """The context's length now: the backend's last level plus what was generated since."""
    tokens_per_second: float
    """Decode speed: the run's (counted tokens over decode time), or, while tokens are
    estimated, the estimated tokens over the wall time since the first of them."""
    estimated: bool
    """Whether ``tokens`` includes an estimate from text the backend has not counted yet."""


class LiveMeter:
    """Turns the events of one run, and the backend's counters, into :class:`LiveFigures`.

    Args:
        read_usage: the backend's cumulative counters (``lambda: backend.usage``), called
            from the thread that iterates the run (the backend is idle between chunks).
        interval: the least time between two figures during a generation; ``None`` gives
            figures only after each step's usage event (deterministic: no clock involved).
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        read_usage: Callable[[], Usage],
        *,
        interval: float | None = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read_usage
        self._interval = interval
        self._clock = clock
        self._start = read_usage().copy()
        self._counted = self._start.completion_tokens
        """The backend's completion count at the last reading."""
        self._level = self._start.context_tokens
        self._tokens_at_level = 0
        self._confirmed = 0
        """Run tokens the backend has counted."""
        self._uncounted_chars = 0
        """Characters streamed since the backend's count last moved."""
        self._uncounted_since: float | None = None
        self._thinking_chars = 0
        self._other_chars = 0
        self._last: float | None = None

    def observe(self, event: Event) -> LiveFigures | None:
        """Account ``event``; figures when it is time to show new ones, else ``None``."""
        if isinstance(event, UsageEvent):
            return self.figures(self._now())
        if isinstance(event, Thinking):
            chars = len(event.text)
            self._thinking_chars += chars
        elif isinstance(event, Text):
            chars = len(event.text)
            self._other_chars += chars
        elif isinstance(event, ToolCallEvent):
            chars = len(event.call.raw)
            self._other_chars += chars
        else:
            return None
        if not chars:
            return None
        self._uncounted_chars += chars
        now = self._now()
        if self._uncounted_since is None:
            self._uncounted_since = now
        if self._interval is None or (self._last is not None and now - self._last < self._interval):
            return None
        return self.figures(now)

    def _now(self) -> float:
        return self._clock() if self._interval is not None else 0.0

    def figures(self, now: float | None = None) -> LiveFigures:
        """Read the backend's counters now and return the run's figures (``now``: the
        clock's time, read when not given and the meter has an interval)."""
        now = self._now() if now is None else now
        self._last = now
        usage = self._read()
        estimated = False
        rate = usage.since(self._start).decode_tokens_per_second
        if usage.completion_tokens != self._counted:  # the backend counted: trust it
            self._confirmed += usage.completion_tokens - self._counted
            self._counted = usage.completion_tokens
            self._uncounted_chars, self._uncounted_since = 0, None
        tokens = self._confirmed
        if self._uncounted_chars:
            guess = -(-self._uncounted_chars // CHARS_PER_TOKEN)
            tokens += guess
            estimated = True
            since = self._uncounted_since
            if self._interval is not None and since is not None and now > since:
                rate = guess / (now - since)
        if usage.context_tokens != self._level:
            self._level, self._tokens_at_level = usage.context_tokens, tokens
        streamed = self._thinking_chars + self._other_chars
        thinking = tokens * self._thinking_chars // streamed if streamed else 0
        return LiveFigures(
            tokens=tokens,
            thinking_tokens=thinking,
            context_tokens=self._level + tokens - self._tokens_at_level,
            tokens_per_second=rate,
            estimated=estimated,
        )
