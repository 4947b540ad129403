"""One step of the model host: what goes into its batch, and what its samples do to the jobs.

:class:`Batcher` is the content of a step of :mod:`models.llama._host_scheduler` (which holds
the lock, the threads and the jobs' lifecycle). :meth:`Batcher.plan` (under the lock) gathers
one batch: one token per generating sequence whose consumer is at most
:attr:`HostLimits.lookahead <models.llama._host_jobs.HostLimits.lookahead>` tokens behind
(with its prompt-lookup draft, :mod:`models.llama._host_drafts`), then prompt chunks of
sequences in prefill, in arrival order, up to ``n_batch``. :meth:`Batcher.decode` (outside the
lock) decodes it once and samples every entry that has logits with that generation's own
sampler chain; :meth:`Batcher.publish` (under the lock again) hands the samples to the jobs.

Cells (the unified cache, managed by :class:`~models.llama._host_swap.KvSlots`):

* Generating sequences come before prompt chunks in a batch. A prompt starts only when the
  cells for all of it are free (parked sequences are swapped out for it), and keeps them
  reserved, so prompts never deadlock on cells and generating sequences never take a started
  prompt's.
* When the cells run out and no parked sequence is left to swap out, a generation that needs
  one more cell ends with ``"context_full"``, as a single sequence does at the end of its
  window.
* A prompt chunk ends where the warm start's system turn ends, so that state is saved right
  there (:class:`~models.llama._host_jobs.WarmStart`).

Counters (:class:`~models.base.Usage`, per sequence): a prompt chunk counts as evaluated, a
batch's time counts for every sequence in it (prefill or decode seconds); the generated
tokens are counted when the consumer reads them (by the scheduler).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from models.base import StopReason
from models.llama._batch import Decoder, Entry
from models.llama._host_drafts import Drafting
from models.llama._host_jobs import HostLimits, Job
from models.llama._host_swap import KvSlots, reserved_cells

__all__ = ["Batcher", "Plan", "Results"]

Plan = list[tuple[Job, list[Entry]]]
"""A batch: each job in it with its entries, in batch order."""
Results = list[tuple[list[int], str | None]]
"""For each job of a :data:`Plan`: its samples, or why its part of the batch failed."""


class Batcher:
    """Plans, decodes and publishes the batches of one decoder; see the module docstring.

    Args:
        decoder: the multi-sequence context.
        slots: where the sequences' states are (it makes room for the batches).
        drafting: the prompt-lookup drafts of the sequences that draft.
        limits: ``lookahead`` bounds how far a generation samples ahead of its consumer.
        is_end: whether a sampled token ends the turn.
        notify: wakes the consumers (called under the scheduler's lock when a generation
            ends while planning).
    """

    def __init__(
        self,
        decoder: Decoder,
        slots: KvSlots,
        drafting: Drafting,
        limits: HostLimits,
        is_end: Callable[[int], bool],
        notify: Callable[[], None],
    ) -> None:
        self.decoder = decoder
        self.slots = slots
        self.drafting = drafting
        self.limits = limits
        self._is_end = is_end
        self._notify = notify

    def plan(self, jobs: Sequence[Job]) -> Plan:
        """This step's batch from ``jobs`` (in arrival order): a token (and its draft) per
        generating sequence, then prompt chunks; ends the generations that have no cell
        left (see the module docstring)."""
        decoder = self.decoder
        room = decoder.n_batch
        plan: Plan = []
        prefills = [j for j in jobs if j.state == "prefill" and j.keep is None]
        reserved = reserved_cells(prefills)
        free = decoder.n_ctx - self.slots.resident_cells() - reserved
        for job in jobs:
            if job.state != "decode" or job.keep is not None or job.end is not None:
                continue
            if job.pending is None or len(job.tokens) - job.consumed >= self.limits.lookahead:
                continue
            seq = job.seq
            assert seq.slot is not None
            if len(seq.kv) + 1 >= decoder.n_ctx:
                self._end(job, "context_full")
                continue
            free = self.slots.make_room(free, 1)
            if free < 1 or room < 1:
                self._end(job, "context_full" if free < 1 else None)
                continue
            position = len(seq.kv)
            drafts = seq.lookup is not None
            job.draft = self.drafting.plan(job, min(room, free) - 1) if drafts else []
            entries = [Entry(job.pending, position, seq.slot, True)]
            for i, token in enumerate(job.draft, start=1):
                entries.append(Entry(token, position + i, seq.slot, True))
            plan.append((job, entries))
            room -= len(entries)
            free -= len(entries)
        for job in prefills:
            if room < 1:
                break
            need = len(job.target) - job.prefilled
            if not job.started:
                free = self.slots.make_room(free, need)
                if free < need:
                    break  # first come, first served: later prompts wait too
                job.started = True
                free -= need
            seq = job.seq
            assert seq.slot is not None
            start = job.prefilled
            count = min(room, need)
            if job.warm is not None and start < job.warm.end:
                count = min(count, job.warm.end - start)  # its state is saved right there
            last = len(job.target)
            entries = [
                Entry(job.target[p], p, seq.slot, p == last - 1)
                for p in range(start, start + count)
            ]
            plan.append((job, entries))
            room -= count
        return plan

    def decode(self, plan: Plan) -> tuple[Results, float]:
        """Decode the batch and sample it (outside the lock); save a warm start whose system
        turn the batch completed. Returns each job's samples (or the error of its draft's
        verification) and the batch's seconds.

        Raises:
            RuntimeError: llama.cpp failed to decode (the batch's sequences cannot be trusted
                past their positions before it).
        """
        entries = [e for _, part in plan for e in part]
        started = time.perf_counter()
        self.decoder.decode(entries)
        results: Results = []
        index = 0
        for job, part in plan:
            first = index
            index += len(part)
            sampled: list[int] = []
            error = None
            if part[-1].logits and job.options.max_tokens != 0:
                if job.draft and job.state == "decode":
                    try:
                        sampled = self.drafting.verify(job, part, first)
                    except RuntimeError as exc:
                        error = str(exc)
                else:
                    sampled = [self.decoder.sample(job.sampler, index - 1)]
            warm = job.warm
            if warm is not None and job.state == "prefill" and part[-1].pos + 1 == warm.end:
                warm.store.save(self.decoder, part[-1].seq, job.target[: warm.end])
            results.append((sampled, error))
        return results, time.perf_counter() - started

    def publish(self, job: Job, part: list[Entry], sampled: list[int], seconds: float) -> None:
        """Apply ``job``'s part of a decoded batch (under the lock): the evaluated tokens
        join its sequence's KV, the samples its tokens (the last one pending), and the
        generation ends at an end of turn or at ``max_tokens``."""
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
            self.drafting.settle(job, sampled, seconds)
        job.pending = None
        last = len(sampled) - 1
        for i, token in enumerate(sampled):
            if self._is_end(token):
                job.end = "end_of_turn"
                return
            job.tokens.append(token)
            job.drafted.append(i < last)
            if seq.lookup is not None:
                seq.lookup.append(token)
        if not sampled:
            return
        job.pending = sampled[-1]
        usage.context_tokens = len(job.target) + len(job.tokens)
        if job.options.max_tokens is not None and len(job.tokens) >= job.options.max_tokens:
            job.end = "length"

    def _end(self, job: Job, reason: StopReason | None) -> None:
        if reason is not None:
            job.end = reason
            self._notify()
