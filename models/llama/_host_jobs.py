"""The model host's bookkeeping: its limits, a conversation's sequence, one generation.

Plain data for :mod:`models.llama._host_scheduler`, which changes these fields under its lock,
itself or through the modules of its step (:mod:`~models.llama._host_swap`,
:mod:`~models.llama._host_batching`, :mod:`~models.llama._host_drafts`); the fields a session
reads say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from models.base import GenerateOptions, StopReason, Usage

if TYPE_CHECKING:
    from models.llama._lookup import Lookup
    from models.llama.kv_state import PrefixStateStore


@dataclass(frozen=True, slots=True)
class HostLimits:
    """The host's limits; each breaks cleanly (see :mod:`models.llama._host_scheduler` and
    :mod:`models.llama._host_swap`)."""

    max_sessions: int = 64
    """Conversations open at once (parked ones included); one more is refused."""
    swap_bytes: int = 8 << 30
    """RAM for swapped-out KV states; beyond it the longest-idle one is dropped."""
    lookahead: int = 4
    """Tokens sampled ahead of a consumer; what it never reads is dropped from the cache.
    (A host run by its consumer, ``inline``, samples only when asked: no lookahead.)"""

    def __post_init__(self) -> None:
        for name in ("max_sessions", "lookahead"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.swap_bytes < 0:
            raise ValueError(f"swap_bytes must be 0 or more, got {self.swap_bytes!r}")


@dataclass(eq=False, slots=True)
class SeqState:
    """One conversation's sequence: where its KV state is, and what it holds."""

    number: int
    usage: Usage = field(default_factory=Usage)
    slot: int | None = None
    """Its llama.cpp sequence id while its KV cells are in the cache."""
    kv: list[int] = field(default_factory=list)
    """The tokens its KV state holds (positions ``0..len-1``), in the cache or swapped out."""
    swapped: bytes | None = None
    """Its KV state while swapped out to RAM."""
    last_used: float = 0.0
    job: Job | None = None
    closed: bool = False
    lookup: Lookup | None = None
    """Its prompt-lookup drafter (:mod:`models.llama._lookup`); ``None``: plain decoding."""


@dataclass(frozen=True, slots=True)
class WarmStart:
    """The saved KV state of a prompt's first ``end`` tokens (its system turn): loaded instead
    of evaluated into an empty sequence, saved once evaluated (:class:`PrefixStateStore`)."""

    end: int
    store: PrefixStateStore


@dataclass(eq=False, slots=True)
class Job:
    """One generation of one sequence. Host-thread fields change under the scheduler's lock."""

    seq: SeqState
    target: list[int]
    options: GenerateOptions
    sampler: Any
    continuation: bool
    stops: tuple[bytes, ...] = ()
    """Byte strings a draft must not run past (tags that end a step, the stop strings)."""
    warm: WarmStart | None = None
    state: str = "waiting"
    """``"waiting"`` (for a slot), ``"prefill"``, ``"decode"``, ``"done"``."""
    prefilled: int = 0
    started: bool = False
    """Whether its prompt's cells are reserved (see :meth:`Batcher.plan
    <models.llama._host_batching.Batcher.plan>`)."""
    tokens: list[int] = field(default_factory=list)
    """Sampled tokens, end-of-turn excluded, in order."""
    drafted: list[bool] = field(default_factory=list)
    """For each of ``tokens``: whether it was an accepted draft token."""
    pending: int | None = None
    """The last sampled token, not evaluated yet."""
    draft: list[int] = field(default_factory=list)
    """The draft being verified in the current batch (after ``pending``)."""
    end: StopReason | None = None
    """Why the generation ended (``"end_of_turn"``: its end token was sampled)."""
    error: str | None = None
    consumed: int = 0
    """How many of ``tokens`` the consumer has read (set by the consumer)."""
    keep: int | None = None
    """Set by :meth:`Scheduler.finish`: the tokens the consumer kept."""
    settled: bool = False


@dataclass(eq=False, slots=True)
class HostCall:
    """A function to run on the host thread, and its outcome."""

    function: Any
    result: Any = None
    error: BaseException | None = None
    done: bool = False

    def run(self) -> None:
        """Run it, keeping the result or the exception (handed to the caller's thread)."""
        try:
            self.result = self.function()
        except BaseException as exc:  # handed to the caller's thread
            self.error = exc
        self.done = True
