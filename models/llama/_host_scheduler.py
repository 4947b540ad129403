"""The model host's scheduler: continuous batching of many sequences on one decoder.

The scheduler owns the :class:`~models.llama._batch.Decoder` and runs *steps*: between two
batches (under its lock) it frees closed sequences' slots, runs the calls queued for the
decoder's thread (:meth:`Scheduler.run_in_host`), settles finished generations, admits
waiting ones and plans the next batch; then it decodes the batch (outside the lock) and
publishes the samples. Each of those jobs has a module of its own:

* :mod:`models.llama._host_jobs`: the data (limits, a sequence, a generation);
* :mod:`models.llama._host_swap`: where each sequence's KV state lives, admission, KV swap of
  parked sequences and the swap budget;
* :mod:`models.llama._host_batching`: what goes into a batch and what its samples do;
* :mod:`models.llama._host_drafts`: prompt-lookup drafts and their verification.

Sessions (:class:`SeqState`, one per conversation) call :meth:`Scheduler.submit` and read the
sampled tokens of their :class:`Job` with :meth:`Scheduler.next_token`;
:meth:`Scheduler.finish` tells the host how many of them the consumer kept, and returns once
the sequence's KV cache holds no more than that.

Who runs the steps: a *threaded* scheduler has a host thread of its own, so sessions of many
threads share each batch; an *inline* one (``inline=True``, the single-conversation
:class:`~models.llama.backend.LlamaCppBackend`) has none: :meth:`Scheduler.next_token` runs a
step in the consumer's thread when it needs a token, so one conversation decodes with no
thread hand-off and nothing sampled ahead. Both run the same step code.

Limits (:class:`HostLimits`) break cleanly: one session past ``max_sessions`` is refused; a
context longer than the whole cache is refused before any work
(:class:`~models.base.ContextOverflowError`, by the session); running out of cells ends a
generation with ``"context_full"`` (:mod:`models.llama._host_batching`); a failed batch ends
its generations with an error and drops what it evaluated.

The KV cache of a sequence always holds a prefix of its history (:attr:`SeqState.kv`); a new
generation keeps the longest common prefix with its prompt and evaluates the rest. When a
generation ends, the last token the consumer kept is *pending* (sampled, not in the cache),
as after plain decoding, unless the turn ended after it: the next generation evaluates it
with its new tokens, so counters and batch shapes do not depend on drafts or lookahead.

Counters (:class:`~models.base.Usage`, per sequence): a generated token counts when the
consumer reads it (``completion_tokens``, and ``draft_tokens_accepted`` for an accepted draft
token), so what was sampled ahead and never read is not counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from models.base import GenerateOptions, StopReason
from models.llama._batch import Decoder, Entry
from models.llama._host_batching import Batcher, Plan
from models.llama._host_drafts import Drafting
from models.llama._host_jobs import HostCall, HostLimits, Job, SeqState, WarmStart
from models.llama._host_swap import KvSlots, reserved_cells
from models.llama._tokens import common_prefix

__all__ = ["HostLimits", "Job", "Scheduler", "SeqState", "WarmStart"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class Scheduler:
    """Runs generations of many sequences on one :class:`Decoder`; see the module docstring.

    Args:
        decoder: the multi-sequence context (only the scheduler's steps use it).
        is_end: whether a sampled token ends the turn.
        limits: see :class:`HostLimits`.
        piece: a token's bytes, for cutting drafts at stop strings (``None``: drafts are not
            cut, for a host whose sequences never draft).
        inline: run steps in the consumer's thread instead of a host thread (one consumer
            at a time; see the module docstring).
    """

    def __init__(
        self,
        decoder: Decoder,
        is_end: Callable[[int], bool],
        limits: HostLimits | None = None,
        *,
        piece: Callable[[int], bytes] | None = None,
        inline: bool = False,
    ) -> None:
        self.decoder = decoder
        self.limits = limits or HostLimits()
        self.inline = inline
        self.cond = threading.Condition()
        self._seqs: list[SeqState] = []
        self._jobs: list[Job] = []
        self.slots = KvSlots(decoder, self.limits, self._seqs)
        """Where the open sequences' KV states are (used under :attr:`cond`)."""
        self._batcher = Batcher(
            decoder,
            self.slots,
            Drafting(decoder, is_end, piece),
            self.limits,
            is_end,
            self.cond.notify_all,
        )
        self._calls: list[HostCall] = []
        self._numbers = 0
        self._closing = False
        self.steps = 0
        """Batches decoded so far."""
        self._thread: threading.Thread | None = None
        if not inline:
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
        *,
        stops: tuple[bytes, ...] = (),
        warm: WarmStart | None = None,
    ) -> Job:
        """Queue a generation continuing ``target`` (no other generation of ``seq`` runs).
        ``stops``: byte strings a draft must end at; ``warm``: the saved state of the
        prompt's system turn to load (or save once evaluated)."""
        job = Job(seq, target, options, sampler, continuation, stops=stops, warm=warm)
        with self.cond:
            if self._closing:
                raise RuntimeError("the model host has been closed; open a new one")
            if seq.job is not None:
                raise RuntimeError(f"sequence {seq.number} already has a generation running")
            seq.job = job
            self._jobs.append(job)
            self.cond.notify_all()
        return job

    def next_token(
        self, job: Job, index: int, interrupt: Callable[[], bool] | None = None
    ) -> tuple[int | None, StopReason | None]:
        """The ``index``-th sampled token of ``job`` (counted as read), or why there is none;
        blocks until one of them (an inline scheduler runs steps until then). ``interrupt()``
        true before the first token returns ``"interrupted"`` (checked between batches).

        Raises:
            RuntimeError: the generation failed (the message says why).
        """
        while True:
            with self.cond:
                while True:
                    if job.error is not None:
                        raise RuntimeError(job.error)
                    if index < len(job.tokens):
                        job.consumed = index + 1
                        usage = job.seq.usage
                        usage.completion_tokens += 1
                        if job.drafted[index]:
                            usage.draft_tokens_accepted += 1
                        if not self.inline:
                            self.cond.notify_all()
                        return job.tokens[index], None
                    if job.end is not None:
                        if job.end == "end_of_turn":
                            job.seq.usage.completion_tokens += 1  # the end token was generated
                        return None, job.end
                    if interrupt is not None and not job.tokens and interrupt():
                        return None, "interrupted"
                    if self.inline:
                        break
                    self.cond.wait(0.05 if interrupt is not None else 0.5)
            if not self.step():
                with self.cond:
                    if job.error is None and job.end is None and len(job.tokens) <= index:
                        job.error = (
                            "the model host has no batch to run for this generation (an inline "
                            "host runs one generation at a time); finish the other one first"
                        )

    def finish(self, job: Job, keep: int) -> None:
        """The consumer is done with ``job`` and keeps its first ``keep`` tokens; returns once
        the host has settled the sequence (its KV holds no token past them)."""
        with self.cond:
            job.keep = min(keep, len(job.tokens))
            self.cond.notify_all()
            while not job.settled:
                if not self._threaded():
                    self._settle(job)
                    break
                self.cond.wait(0.5)

    def close_seq(self, seq: SeqState) -> None:
        """Free ``seq``'s cells and swapped state (its generation must be finished); once
        the host is closing, only forget them (its context is, or is about to be, freed)."""
        with self.cond:
            seq.closed = True
            if seq in self._seqs:
                self._seqs.remove(seq)
            if self._closing:
                seq.slot = None
            self.slots.free_later(seq)
            self.cond.notify_all()
            if not self._threaded():
                self._free_closed()
            while seq.slot is not None and self._threaded():
                self.cond.wait(0.5)  # the host thread frees the slot between batches
            seq.swapped, seq.kv = None, []

    def run_in_host(self, function: Callable[[], _T]) -> _T:
        """Run ``function`` where the steps run, between two batches (the decoder is not
        thread-safe), and return its result or raise its exception.

        Raises:
            RuntimeError: the host is closed (its decoder may be freed).
        """
        call = HostCall(function)
        with self.cond:
            if self._closing:
                raise RuntimeError("the model host has been closed; open a new one")
            if not self._threaded():
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
            if self._thread is None:
                self._abort_all("the model host was closed during the generation")
                self._free_closed()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    @property
    def swaps_out(self) -> int:
        """KV states swapped out to RAM so far."""
        return self.slots.swaps_out

    @property
    def swaps_in(self) -> int:
        """Swapped KV states loaded back so far."""
        return self.slots.swaps_in

    def export_seq(self, seq: SeqState) -> tuple[list[int], bytes] | None:
        """``seq``'s tokens and KV state, wherever it is (host thread; no job running)."""
        return self.slots.export(seq)

    def import_seq(self, seq: SeqState, tokens: list[int], data: bytes) -> bool:
        """Make ``tokens`` with the state ``data`` the KV of ``seq`` (host thread; no job
        running); returns whether ``seq`` holds it, see :meth:`KvSlots.load
        <models.llama._host_swap.KvSlots.load>`."""
        return self.slots.load(seq, tokens, data, reserved_cells(self._jobs))

    def resident_cells(self) -> int:
        """KV cells held by sequences in the cache."""
        return self.slots.resident_cells()

    def swapped_bytes(self) -> int:
        """RAM held by swapped-out states."""
        return self.slots.swapped_bytes()

    def step(self) -> bool:
        """Decode one batch if there is one to run (what the host thread loops on; an inline
        scheduler's consumer calls it). Returns whether a batch ran."""
        with self.cond:
            if self._closing:
                return False
            plan = self._prepare()
        if not plan:
            return False
        self._execute(plan)
        return True

    # -- the steps ---------------------------------------------------------------------------

    def _threaded(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            with self.cond:
                while True:
                    if self._closing:
                        self._abort_all("the model host was closed during the generation")
                        self._free_closed()
                        return
                    plan = self._prepare()
                    if plan:
                        break
                    self.cond.wait()
            self._execute(plan)

    def _prepare(self) -> Plan:
        """Between batches (under the lock): free, run calls, settle, admit, then plan."""
        self._free_closed()
        if self._calls:
            for call in self._calls:
                call.run()
            self._calls.clear()
            self.cond.notify_all()
        for job in [j for j in self._jobs if j.keep is not None]:
            self._settle(job)
        self.slots.admit(self._jobs)
        return self._batcher.plan(self._jobs)

    def _execute(self, plan: Plan) -> None:
        try:
            self._run(plan)
        except Exception as exc:  # a broken batch: its sequences are dropped from there
            log.exception("model host: a batch failed")
            with self.cond:
                self._fail(plan, f"llama.cpp failed while decoding: {exc}")
        except BaseException:  # Ctrl-C in an inline consumer: leave a consistent host
            with self.cond:
                self._fail(plan, "the generation was interrupted while decoding")
            raise

    def _run(self, plan: Plan) -> None:
        """Decode the batch (outside the lock), sample, and publish the tokens."""
        results, seconds = self._batcher.decode(plan)
        self.steps += 1
        with self.cond:
            for (job, part), (sampled, error) in zip(plan, results, strict=True):
                if error is not None:
                    self._fail([(job, part)], error, whole=True)
                else:
                    self._batcher.publish(job, part, sampled, seconds)
            self.cond.notify_all()

    def _free_closed(self) -> None:
        if self.slots.free_closed():
            self.cond.notify_all()

    def _settle(self, job: Job) -> None:
        seq = job.seq
        keep = job.keep or 0
        kept = job.target + job.tokens[:keep]
        n = common_prefix(seq.kv, kept)
        if keep and not (job.end == "end_of_turn" and keep == len(job.tokens)):
            n = min(n, len(kept) - 1)  # the last kept token is pending, as after plain decoding
        if n < len(seq.kv) and job.state != "waiting":  # a waiting job changed nothing yet
            self.slots.drop(seq, n)
        job.settled = True
        job.state = "done"
        seq.job = None
        seq.last_used = time.monotonic()
        if job in self._jobs:
            self._jobs.remove(job)
        job.sampler.close()
        self.cond.notify_all()

    def _fail(
        self, plan: Sequence[tuple[Job, list[Entry]]], message: str, whole: bool = False
    ) -> None:
        """End the generations of ``plan`` with ``message``; their sequences keep what they
        held before the batch (nothing, with ``whole``: the cache cannot be trusted)."""
        for job, part in plan:
            self.slots.drop(job.seq, 0 if whole else part[0].pos)
            job.error = message
            job.draft = []
            job.state = "done"
        self.cond.notify_all()

    def _abort_all(self, message: str) -> None:
        for job in list(self._jobs):
            if job.error is None and job.end is None:
                job.error = message
            self._settle(job)
