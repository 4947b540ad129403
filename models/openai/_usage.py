"""The counters of :mod:`models.openai.backend`: what servers report, and estimates where they don't.

Each HTTP stream is an :class:`Attempt`; :class:`UsageMeter` turns it into
:class:`~models.base.Usage` and adds it to the backend's totals, thread-safely (one server
backend serves many agents at once).

Sources, first found wins:

* prompt tokens: ``usage.prompt_tokens``; llama.cpp's ``timings.prompt_n + timings.cache_n``;
  else one token per 4 characters of the prompt;
* cached prompt tokens: ``usage.prompt_tokens_details.cached_tokens``; ``timings.cache_n``;
  ``tokens_cached``; else the estimate of the longest prefix shared with a recent context
  (found in linear time, compared a chunk at a time in C: :func:`common_prefix_length`);
* evaluated prompt tokens: ``timings.prompt_n``; else prompt minus cached;
* completion tokens: ``usage.completion_tokens``; ``timings.predicted_n``; else the number of
  streamed chunks (servers send one per token);
* prefill and decode seconds: ``timings.prompt_ms`` / ``predicted_ms``; else the time to the
  first chunk and from there to the end.

As in the embedded backend, cached tokens are counted only when a call does *not* continue a
context this backend produced (prompt + output of a recent call): a continuation's reused
tokens were counted when they were evaluated or generated, so that over a run
``evaluated + cached + completion ≈ context``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from models.base import Usage

RECENT = 8
"""Contexts remembered to tell a continuation from a new context."""
_CHUNK = 4096
"""Characters compared at once by :func:`common_prefix_length`."""


@dataclass
class Attempt:
    """What one HTTP stream reported, for the counters."""

    prompt: str
    """The text the server was asked to continue (the ChatML text in chat mode)."""
    started: float = field(default_factory=time.perf_counter)
    first: float | None = None
    events: int = 0
    """Events received (0: the server never answered, so nothing is counted)."""
    chunks: int = 0
    text: list[str] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    tokens_cached: int | None = None
    finish: str | None = None
    """The ``finish_reason`` the server sent, if any."""

    def read(self, event: Mapping[str, Any]) -> None:
        """Take the counters out of one streamed event."""
        self.events += 1
        for key, target in (("usage", self.usage), ("timings", self.timings)):
            value = event.get(key)
            if isinstance(value, dict):
                target.update(value)
        if isinstance(event.get("tokens_cached"), int):
            self.tokens_cached = event["tokens_cached"]

    def add_text(self, text: str) -> None:
        """Note one chunk of output."""
        if self.first is None:
            self.first = time.perf_counter()
        self.chunks += 1
        self.text.append(text)

    @property
    def characters(self) -> int:
        return sum(map(len, self.text))


class UsageMeter:
    """Thread-safe totals over every attempt of one backend."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._usage = Usage()
        self._recent: deque[str] = deque(maxlen=RECENT)

    def snapshot(self) -> Usage:
        with self._lock:
            return self._usage.copy()

    def record(self, attempt: Attempt) -> Usage:
        """Add ``attempt``'s counters to the totals; return them (nothing when the server
        sent no event: the request failed before any work)."""
        if not attempt.events:
            return Usage()
        ended = time.perf_counter()
        usage, timings, prompt = attempt.usage, attempt.timings, attempt.prompt
        total = _int(usage.get("prompt_tokens"))
        prompt_n, cache_n = _int(timings.get("prompt_n")), _int(timings.get("cache_n"))
        if total is None and prompt_n is not None and cache_n is not None:
            total = prompt_n + cache_n
        details = usage.get("prompt_tokens_details")
        cached = _first(
            _int(details.get("cached_tokens")) if isinstance(details, dict) else None,
            cache_n,
            attempt.tokens_cached,
        )
        completion = _first(
            _int(usage.get("completion_tokens")), _int(timings.get("predicted_n")), attempt.chunks
        )
        first = attempt.first if attempt.first is not None else ended
        with self._lock:
            continuation = any(prompt.startswith(seen) for seen in self._recent)
            if total is None:
                total = approx_tokens(prompt)
            if cached is None:
                common = max((common_prefix_length(prompt, s) for s in self._recent), default=0)
                cached = min(total, approx_tokens(prompt[:common]))
            this = Usage(
                prompt_tokens_evaluated=prompt_n
                if prompt_n is not None
                else max(0, total - cached),
                prompt_tokens_cached=0 if continuation else cached,
                completion_tokens=completion if completion is not None else 0,
                prefill_seconds=_seconds(timings.get("prompt_ms"), first - attempt.started),
                decode_seconds=_seconds(timings.get("predicted_ms"), ended - first),
                context_tokens=total + (completion or 0),
            )
            self._recent.append(prompt + "".join(attempt.text))
            self._usage.add(this)
        return this


def approx_tokens(text: str) -> int:
    """An estimate for servers that report no counts: one token per 4 characters."""
    return (len(text) + 3) // 4


def _first(*values: int | None) -> int | None:
    return next((v for v in values if v is not None), None)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _seconds(milliseconds: Any, measured: float) -> float:
    if isinstance(milliseconds, int | float) and milliseconds >= 0:
        return float(milliseconds) / 1000.0
    return max(0.0, measured)


def common_prefix_length(a: str, b: str) -> int:
    """The length of the longest common prefix of ``a`` and ``b``, in characters.

    ``len(os.path.commonprefix([a, b]))``, but in time linear in the answer with the work in
    C: equal chunks of :data:`_CHUNK` characters are skipped with one comparison each, and the
    chunk that differs is bisected (``os.path.commonprefix`` steps through the prefix one
    character at a time in Python: about 5 ms per 100,000 characters).
    """
    limit = min(len(a), len(b))
    start = 0
    while start < limit:
        end = min(limit, start + _CHUNK)
        if a.startswith(b[start:end], start):
            start = end
            continue
        low, high = start, end  # a[:low] == b[:low]; they differ somewhere in [low, high)
        while high - low > 1:
            middle = (low + high) // 2
            if a.startswith(b[low:middle], low):
                low = middle
            else:
                high = middle
        return low
    return limit
