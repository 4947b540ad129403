"""The model host's scheduler: continuous batching over sequences, and KV swap for parked ones.

One thread (the *host thread*) owns the :class:`~models.llama._batch.Decoder` and runs steps.
Each step gathers one batch: one token per generating sequence whose consumer is at most
:attr:`HostLimits.lookahead` tokens behind, then prompt chunks of sequences in prefill (in
arrival order) up to ``n_batch``; it decodes the batch once and samples every entry that has
logits with that generation's own sampler chain. Sessions (:class:`SeqState`, one per
conversation) call :meth:`Scheduler.submit` from their own threads and read the sampled tokens
of their :class:`Job`; :meth:`Scheduler.finish` tells the host how many of them the consumer
kept, and returns once the sequence's KV cache holds no more than that.

Memory and fairness (:class:`HostLimits`):

* ``n_seq_max`` sequences hold KV cells at once (llama.cpp sequence ids are *slots*); a
  conversation without a generation running is *parked*. When a slot or cells are needed, the
  longest-idle parked sequence is swapped out: its KV state is copied to RAM
  (``llama_state_seq_get_data``) and its cells freed; it is swapped back in (``set_data``)
  on its next generation, never evaluated again.
* Swapped states beyond ``swap_bytes`` are dropped, longest idle first; such a conversation is
  evaluated again on its next generation (counted in ``prompt_tokens_evaluated``).
* A generation waits (in arrival order) while every slot is held by running generations.
  Generating sequences come before prompt chunks in a batch. A prompt starts only when the
  cells for all of it are free, and keeps them reserved, so prompts never deadlock on cells.
  When the cells of the unified cache run out and no parked sequence is left to swap out, a
  generation that needs one more cell ends with ``"context_full"``, as a single sequence
  does at the end of its window. A context longer than the whole cache is refused before
  any work (:class:`~models.base.ContextOverflowError`).

The KV cache of a sequence always holds a prefix of its history (:attr:`SeqState.kv`); a new
generation keeps the longest common prefix with its prompt and evaluates the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from models.base import GenerateOptions, StopReason, Usage
from models.llama._batch import Decoder, Entry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HostLimits:
    """The host's limits; each breaks cleanly (see the module docstring)."""

    max_sessions: int = 64
    """Conversations open at once (parked ones included); one more is refused."""
    swap_bytes: int = 8 << 30
    """RAM for swapped-out KV states; beyond it the longest-idle one is dropped."""
    lookahead: int = 4
    """Tokens sampled ahead of a consumer; what it never reads is dropped from the cache."""

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


@dataclass(eq=False, slots=True)
class Job:
    """One generation of one sequence. Host-thread fields change under the scheduler's lock."""

    seq: SeqState
    target: list[int]
    options: GenerateOptions
    sampler: Any
    continuation: bool
    state: str = "waiting"
    """``"waiting"`` (for a slot), ``"prefill"``, ``"decode"``, ``"done"``."""
    prefilled: int = 0
    started: bool = False
    """Whether its prompt's cells are reserved (see :meth:`Scheduler._plan`)."""
    tokens: list[int] = field(default_factory=list)
    """Sampled tokens, end-of-turn excluded, in order."""
    pending: int | None = None
    """The last sampled token, not evaluated yet."""
    end: StopReason | None = None
    error: str | None = None
    consumed: int = 0
    """How many of ``tokens`` the consumer has read (set by the consumer)."""
    keep: int | None = None
    """Set by :meth:`Scheduler.finish`: the tokens the consumer kept."""
    settled: bool = False


class Scheduler:
    """Runs generations of many sequences on one :class:`Decoder`; see the module docstring.

    Args:
        decoder: the multi-sequence context (the scheduler's host thread is its only user).
        is_end: whether a sampled token ends the turn.
        limits: see :class:`HostLimits`.
    """

    def __init__(
        self, decoder: Decoder, is_end: Callable[[int], bool], limits: HostLimits | None = None
    ) -> None:
        self.decoder = decoder
        self.limits = limits or HostLimits()
        self._is_end = is_end
        self.cond = threading.Condition()
        self._seqs: list[SeqState] = []
        self._jobs: list[Job] = []
        self._to_free: list[SeqState] = []
        self._calls: list[_Call] = []
        self._numbers = 0
        self._closing = False
        self.steps = 0
        """Batches decoded so far."""
        self.swaps_out = 0
        self.swaps_in = 0
        self._thread = threading.Thread(target=self._loop, name="qwq-host", daemon=True)
        self._thread.start()

    # -- sessions' side ---------------------------------------------------------------------

    def open_seq(self) -> SeqState:
        """A new, empty sequence.

        Raises:
            RuntimeError: ``max_sessions`` are open (close one first) or the host is closed.
        """
        with self.cond:
            if self._closing:
                raise RuntimeError("the model host has been closed; open a new one")
            if len(self._seqs) >= self.limits.max_sessions:
                raise RuntimeError(
                    f"the model host already serves {len(self._seqs)} sessions "
                    f"(max_sessions={self.limits.max_sessions!r}); close one, or open the host "
                    "with a larger max_sessions"
                )
            self._numbers += 1
            seq = SeqState(self._numbers, last_used=time.monotonic())
            self._seqs.append(seq)
            return seq

    def submit(
        self,
        seq: SeqState,
        target: list[int],
        options: GenerateOptions,
        sampler: Any,
        continuation: bool,
    ) -> Job:
        """Queue a generation continuing ``target`` (no other generation of ``seq`` runs)."""
        job = Job(seq, target, options, sampler, continuation)
        with self.cond:
            if self._closing:
                raise RuntimeError("the model host has been closed; open a new one")
            if seq.job is not None:
                raise RuntimeError(f"sequence {seq.number} already has a generation running")
            seq.job = job
            self._jobs.append(job)
            self.cond.notify_all()
        return job

    def finish(self, job: Job, keep: int) -> None:
        """The consumer is done with ``job`` and keeps its first ``keep`` tokens; returns once
        the host has settled the sequence (its KV holds no token past them)."""
        with self.cond:
            job.keep = min(keep, len(job.tokens))
            self.cond.notify_all()
            while not job.settled:
                if not self._thread.is_alive():
                    self._settle(job)
                    break
                self.cond.wait(0.5)

    def close_seq(self, seq: SeqState) -> None:
        """Free ``seq``'s cells and swapped state (its generation must be finished)."""
        with self.cond:
            seq.closed = True
            if seq in self._seqs:
                self._seqs.remove(seq)
            if seq.slot is not None:
                self._to_free.append(seq)
            self.cond.notify_all()
            while seq.slot is not None and self._thread.is_alive():
                self.cond.wait(0.5)  # the host thread frees the slot between batches
            seq.swapped, seq.kv = None, []

    def run_in_host(self, function: Callable[[], _T]) -> _T:
        """Run ``function`` on the host thread between two batches (the decoder is not
        thread-safe) and return its result or raise its exception."""
        call: _Call = _Call(function)
        with self.cond:
            if not self._thread.is_alive():
                call.run()
            else:
                self._calls.append(call)
                self.cond.notify_all()
                while not call.done:
                    self.cond.wait(0.5)
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop the host thread; running generations end with an error. Idempotent."""
        with self.cond:
            self._closing = True
            self.cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def export_seq(self, seq: SeqState) -> tuple[list[int], bytes] | None:
        """``seq``'s tokens and KV state, wherever it is (host thread; no job running)."""
        if not seq.kv:
            return None
        if seq.slot is not None:
            return list(seq.kv), self.decoder.save(seq.slot)
        if seq.swapped is not None:
            return list(seq.kv), seq.swapped
        return None

    def import_seq(self, seq: SeqState, tokens: list[int], data: bytes) -> None:
        """Make ``tokens`` with the state ``data`` the KV of ``seq``, as if swapped out: it
        is restored on the next generation (host thread; no job running)."""
        if seq.slot is not None:
            self.decoder.remove(seq.slot, 0)
            seq.slot = None
        seq.kv, seq.swapped = list(tokens), data
        self._keep_swap_budget()

    def resident_cells(self) -> int:
        """KV cells held by sequences in the cache."""
        return sum(len(s.kv) for s in self._seqs if s.slot is not None)

    def swapped_bytes(self) -> int:
        """RAM held by swapped-out states."""
        return sum(len(s.swapped) for s in self._seqs if s.swapped is not None)

    # -- the host thread ---------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self.cond:
                while True:
                    if self._closing:
                        self._abort_all("the model host was closed during the generation")
                        self._free_closed()
                        return
                    self._free_closed()
                    for call in self._calls:
                        call.run()
                    if self._calls:
                        self._calls.clear()
                        self.cond.notify_all()
                    for job in [j for j in self._jobs if j.keep is not None]:
                        self._settle(job)
                    self._admit()
                    plan = self._plan()
                    if plan:
                        break
                    self.cond.wait()
            try:
                self._run(plan)
            except Exception as exc:  # a broken batch: its sequences are dropped from there
                log.exception("model host: a batch failed")
                with self.cond:
                    self._fail(plan, f"llama.cpp failed while decoding: {exc}")

    def _free_closed(self) -> None:
        if not self._to_free:
            return
        for seq in self._to_free:
            if seq.slot is not None:
                self.decoder.remove(seq.slot, 0)
                seq.slot = None
        self._to_free.clear()
        self.cond.notify_all()

    def _all_slots(self) -> list[SeqState]:
        """Sequences holding a slot (closed ones not freed yet included)."""
        return [s for s in self._seqs if s.slot is not None] + self._to_free

    def _settle(self, job: Job) -> None:
        seq = job.seq
        kept = job.target + job.tokens[: job.keep or 0]
        n = _common_prefix(seq.kv, kept)
        if n < len(seq.kv) and job.state != "waiting":  # a waiting job changed nothing yet
            self._drop(seq, n)
        job.settled = True
        job.state = "done"
        seq.job = None
        seq.last_used = time.monotonic()
        if job in self._jobs:
            self._jobs.remove(job)
        job.sampler.close()
        self.cond.notify_all()

    def _drop(self, seq: SeqState, n: int) -> None:
        """Keep the first ``n`` tokens of ``seq``'s KV state."""
        if seq.slot is not None:
            if not self.decoder.remove(seq.slot, n):
                n = 0
        elif seq.swapped is not None and n == 0:
            seq.swapped = None
        elif seq.swapped is not None:  # a swapped state cannot be cut: bring it back first
            seq.swapped, n = None, 0
        seq.kv = seq.kv[:n]

    def _admit(self) -> None:
        """Give waiting jobs a slot (swapping out parked sequences), in arrival order."""
        for job in self._jobs:
            if job.state != "waiting" or job.keep is not None:
                continue
            seq = job.seq
            if seq.slot is None:
                slot = self._free_slot()
                if slot is None:
                    return  # later jobs wait too: first come, first served
                seq.slot = slot
                if seq.swapped is not None:
                    data, seq.swapped = seq.swapped, None
                    if self.decoder.restore(slot, data):
                        self.swaps_in += 1
                    else:
                        log.warning("model host: a swapped state did not load; re-evaluating")
                        self.decoder.remove(slot, 0)
                        seq.kv = []
            keep = min(_common_prefix(seq.kv, job.target), len(job.target) - 1)
            if keep < len(seq.kv):
                self._drop(seq, keep)
                keep = len(seq.kv)
            job.prefilled = keep
            seq.usage.prompt_tokens_cached += 0 if job.continuation else keep
            job.state = "prefill"

    def _free_slot(self) -> int | None:
        used = {s.slot for s in self._all_slots()}
        for slot in range(self.decoder.n_seq_max):
            if slot not in used:
                return slot
        victim = self._parked_victim()
        if victim is None:
            return None
        freed = victim.slot
        self._swap_out(victim)
        return freed

    def _parked_victim(self) -> SeqState | None:
        parked = [s for s in self._seqs if s.slot is not None and s.job is None]
        return min(parked, key=lambda s: s.last_used) if parked else None

    def _swap_out(self, seq: SeqState) -> None:
        assert seq.slot is not None
        if seq.kv:
            seq.swapped = self.decoder.save(seq.slot)
            self.swaps_out += 1
        self.decoder.remove(seq.slot, 0)
        seq.slot = None
        self._keep_swap_budget()

    def _keep_swap_budget(self) -> None:
        budget = self.limits.swap_bytes
        while self.swapped_bytes() > budget:
            held = [s for s in self._seqs if s.swapped is not None]
            oldest = min(held, key=lambda s: s.last_used)
            log.info("model host: swap budget %d bytes reached; dropping a parked state", budget)
            oldest.swapped, oldest.kv = None, []

    def _plan(self) -> list[tuple[Job, list[Entry]]]:
        """This step's batch: a token per generating sequence, then prompt chunks.

        A prompt starts only when the cells for all of it are free (parked sequences are
        swapped out for it); from then on they are reserved for it, so prompts never hold
        cells against each other and generating sequences never take a started prompt's.
        """
        decoder = self.decoder
        room = decoder.n_batch
        plan: list[tuple[Job, list[Entry]]] = []
        prefills = [j for j in self._jobs if j.state == "prefill" and j.keep is None]
        reserved = sum(len(j.target) - j.prefilled for j in prefills if j.started)
        free = decoder.n_ctx - self.resident_cells() - reserved
        for job in self._jobs:
            if job.state != "decode" or job.keep is not None or job.end is not None:
                continue
            if job.pending is None or len(job.tokens) - job.consumed >= self.limits.lookahead:
                continue
            seq = job.seq
            assert seq.slot is not None
            if len(seq.kv) + 1 >= decoder.n_ctx:
                self._end(job, "context_full")
                continue
            free = self._make_room(free, 1)
            if free < 1 or room < 1:
                self._end(job, "context_full" if free < 1 else None)
                continue
            plan.append((job, [Entry(job.pending, len(seq.kv), seq.slot, True)]))
            room -= 1
            free -= 1
        for job in prefills:
            if room < 1:
                break
            need = len(job.target) - job.prefilled
            if not job.started:
                free = self._make_room(free, need)
                if free < need:
                    break  # first come, first served: later prompts wait too
                job.started = True
                free -= need
            seq = job.seq
            assert seq.slot is not None
            count = min(room, need)
            start = job.prefilled
            last = len(job.target)
            entries = [
                Entry(job.target[p], p, seq.slot, p == last - 1)
                for p in range(start, start + count)
            ]
            plan.append((job, entries))
            room -= count
        return plan

    def _make_room(self, free: int, wanted: int) -> int:
        """Swap out parked sequences, longest idle first, until ``wanted`` cells are free."""
        while free < wanted:
            victim = self._parked_victim()
            if victim is None:
                return free
            cells = len(victim.kv)
            self._swap_out(victim)
            free += cells
        return free

    def _end(self, job: Job, reason: StopReason | None) -> None:
        if reason is not None:
            job.end = reason
            self.cond.notify_all()

    def _run(self, plan: list[tuple[Job, list[Entry]]]) -> None:
        """Decode the batch (outside the lock), sample, and publish the tokens."""
        entries = [e for _, part in plan for e in part]
        started = time.perf_counter()
        self.decoder.decode(entries)
        sampled: list[tuple[Job, int | None]] = []
        index = 0
        for job, part in plan:
            index += len(part)
            token = None
            if part[-1].logits and job.options.max_tokens != 0:
                token = self.decoder.sample(job.sampler, index - 1)
            sampled.append((job, token))
        seconds = time.perf_counter() - started
        self.steps += 1
        with self.cond:
            for (job, part), (_, token) in zip(plan, sampled, strict=True):
                self._publish(job, part, token, seconds)
            self.cond.notify_all()

    def _publish(self, job: Job, part: list[Entry], token: int | None, seconds: float) -> None:
        seq, usage = job.seq, job.seq.usage
        if job.state == "prefill":
            seq.kv.extend(job.target[job.prefilled : job.prefilled + len(part)])
            job.prefilled += len(part)
            usage.prompt_tokens_evaluated += len(part)
            usage.prefill_seconds += seconds
            usage.context_tokens = len(job.target)
            if job.prefilled < len(job.target):
                return
            job.state = "decode"
            if job.options.max_tokens == 0:
                job.end = "length"
                return
        else:
            assert job.pending is not None
            seq.kv.append(job.pending)
            usage.decode_seconds += seconds
        job.pending = None
        if token is None:
            return
        usage.completion_tokens += 1
        if self._is_end(token):
            job.end = "end_of_turn"
            return
        job.tokens.append(token)
        job.pending = token
        usage.context_tokens = len(job.target) + len(job.tokens)
        if job.options.max_tokens is not None and len(job.tokens) >= job.options.max_tokens:
            job.end = "length"

    def _fail(self, plan: Sequence[tuple[Job, list[Entry]]], message: str) -> None:
        for job, part in plan:
            self._drop(job.seq, part[0].pos)
            job.error = message
            job.state = "done"
        self.cond.notify_all()

    def _abort_all(self, message: str) -> None:
        for job in list(self._jobs):
            if job.error is None and job.end is None:
                job.error = message
            self._settle(job)


_T = TypeVar("_T")


@dataclass(eq=False, slots=True)
class _Call:
    function: Callable[[], Any]
    result: Any = None
    error: BaseException | None = None
    done: bool = False

    def run(self) -> None:
        try:
            self.result = self.function()
        except BaseException as exc:  # handed to the caller's thread
            self.error = exc
        self.done = True


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
