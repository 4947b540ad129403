"""Where each sequence's KV state lives on the model host: a slot, swapped-out bytes, or nothing.

:class:`KvSlots` is the host's memory manager, used by :mod:`models.llama._host_scheduler`
between batches (under its lock, in the thread that runs the steps: the decoder is not
thread-safe). Its contract, with :class:`~models.llama._host_jobs.HostLimits`:

* ``n_seq_max`` sequences hold KV cells at once (llama.cpp sequence ids are *slots*); a
  conversation without a generation running is *parked*. When a slot or cells are needed, the
  longest-idle parked sequence is swapped out: its KV state is copied to RAM
  (``llama_state_seq_get_data``) and its cells freed; it is swapped back in (``set_data``)
  on its next generation, never evaluated again. The cache is unified, so a state (swapped,
  warm-start or imported) is restored only into free cells: parked sequences are swapped out
  for it, and while running generations hold them it waits, as a prompt does. An imported
  state (:meth:`KvSlots.load`, a saved session's) comes in at once as a swapped one comes
  back, or else waits swapped out.
* Swapped states beyond ``swap_bytes`` are dropped, longest idle first; such a conversation is
  evaluated again on its next generation (counted in ``prompt_tokens_evaluated``).
* Admission (:meth:`KvSlots.admit`): a generation waits, in arrival order, while every slot
  is held by running generations; once it has a slot its sequence keeps the longest common
  prefix of its KV and the prompt (never the whole prompt: its last token is evaluated for
  the logits), or, when nothing is kept, loads the warm start (the saved state of the
  prompt's system turn, :class:`~models.llama._host_jobs.WarmStart`) instead of evaluating it.
* :attr:`SeqState.kv <models.llama._host_jobs.SeqState.kv>` always names the tokens the
  sequence's state holds, in the cache or swapped out; :meth:`KvSlots.drop` is the one way to
  cut it (a swapped state cannot be cut: it is then dropped whole).

It never changes the list of open sequences (the scheduler's), only where their states are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from models.llama._batch import Decoder
from models.llama._host_jobs import HostLimits, Job, SeqState
from models.llama._tokens import common_prefix

__all__ = ["KvSlots", "reserved_cells"]

log = logging.getLogger(__name__)


class KvSlots:
    """The slots of one decoder and the swapped-out states of the open sequences.

    Args:
        decoder: the multi-sequence context whose slots and cells it manages.
        limits: ``swap_bytes`` is the budget of swapped-out states.
        seqs: the open sequences (the scheduler's list, read here, never changed).
    """

    def __init__(self, decoder: Decoder, limits: HostLimits, seqs: Sequence[SeqState]) -> None:
        self.decoder = decoder
        self.limits = limits
        self._seqs = seqs
        self.to_free: list[SeqState] = []
        """Closed sequences whose slots are freed before the next batch."""
        self.swaps_out = 0
        """States copied out to RAM so far."""
        self.swaps_in = 0
        """Swapped states loaded back so far."""

    def resident_cells(self) -> int:
        """KV cells held by open sequences in the cache."""
        return sum(len(s.kv) for s in self._seqs if s.slot is not None)

    def swapped_bytes(self) -> int:
        """RAM held by swapped-out states."""
        return sum(len(s.swapped) for s in self._seqs if s.swapped is not None)

    def free_later(self, seq: SeqState) -> None:
        """Free closed ``seq``'s slot, if it holds one, at the next :meth:`free_closed`."""
        if seq.slot is not None:
            self.to_free.append(seq)

    def free_closed(self) -> bool:
        """Free the slots of closed sequences; returns whether there were any."""
        if not self.to_free:
            return False
        for seq in self.to_free:
            if seq.slot is not None:
                self.decoder.remove(seq.slot, 0)
                seq.slot = None
        self.to_free.clear()
        return True

    def admit(self, jobs: Sequence[Job]) -> None:
        """Give waiting jobs a slot (swapping out parked sequences), in arrival order, and
        make each admitted one ready to prefill (see the module docstring)."""
        reserved = reserved_cells(jobs)
        for job in jobs:
            if job.state != "waiting" or job.keep is not None:
                continue
            seq = job.seq
            slot = seq.slot if seq.slot is not None else self._take_slot(seq, reserved)
            if slot is None:
                return  # later jobs wait too: first come, first served
            keep = min(common_prefix(seq.kv, job.target), len(job.target) - 1)
            if keep < len(seq.kv):
                self.drop(seq, keep)
                keep = len(seq.kv)
            cached = 0 if job.continuation else keep
            warm = job.warm
            if (
                warm is not None
                and keep == 0
                and 0 < warm.end < len(job.target)
                and self._room(reserved, warm.end)  # a restore needs free cells
                and warm.store.load(self.decoder, slot, job.target[: warm.end])
            ):
                seq.kv = job.target[: warm.end]
                keep = cached = warm.end
            job.prefilled = keep
            seq.usage.prompt_tokens_cached += cached
            if seq.lookup is not None:
                seq.lookup.sync(job.target)
            job.state = "prefill"

    def drop(self, seq: SeqState, n: int) -> None:
        """Keep the first ``n`` tokens of ``seq``'s KV state (none when llama.cpp cannot cut
        it there, or when it is swapped out and ``n`` is not its whole length)."""
        if seq.slot is not None:
            if not self.decoder.remove(seq.slot, n):
                n = 0
        elif seq.swapped is not None and n == 0:
            seq.swapped = None
        elif seq.swapped is not None:  # a swapped state cannot be cut: bring it back first
            seq.swapped, n = None, 0
        seq.kv = seq.kv[:n]

    def make_room(self, free: int, wanted: int) -> int:
        """Swap out parked sequences, longest idle first, until ``wanted`` cells are free;
        returns the free cells then (fewer than ``wanted`` when none is left to swap)."""
        while free < wanted:
            victim = self._parked_victim()
            if victim is None:
                return free
            cells = len(victim.kv)
            self._swap_out(victim)
            free += cells
        return free

    def export(self, seq: SeqState) -> tuple[list[int], bytes] | None:
        """``seq``'s tokens and KV state, wherever it is (no job running); ``None``: empty."""
        if not seq.kv:
            return None
        if seq.slot is not None:
            return list(seq.kv), self.decoder.save(seq.slot)
        if seq.swapped is not None:
            return list(seq.kv), seq.swapped
        return None

    def load(self, seq: SeqState, tokens: list[int], data: bytes, reserved: int) -> bool:
        """Make ``tokens`` with the state ``data`` the KV of ``seq`` (no job running), as a
        swapped state comes back (:meth:`_take_slot`): into a free slot, else a parked
        sequence's, and into free cells, parked sequences being swapped out for them
        (``reserved``: cells promised to started prompts, see :func:`reserved_cells`).

        Returns whether ``seq`` holds the state: ``False``, with ``seq`` empty, when llama.cpp
        refuses it, or when running generations hold every slot or the cells it needs, so that
        it waits swapped out for its next generation (loaded, or evaluated again, there), and
        the swap budget drops it at once (a state larger than ``swap_bytes``: the imported one
        is the most recently used)."""
        if seq.slot is not None:
            self.decoder.remove(seq.slot, 0)
            seq.slot = None
        seq.kv, seq.swapped = list(tokens), data
        slot = self._take_slot(seq, reserved, counted=False)
        if slot is None:
            self._keep_swap_budget()
            return seq.swapped is not None
        return bool(seq.kv)

    def _unused_slots(self) -> list[int]:
        """Slots no sequence holds (closed ones not freed yet hold theirs)."""
        used = {s.slot for s in self._seqs if s.slot is not None}
        used.update(s.slot for s in self.to_free if s.slot is not None)
        return [slot for slot in range(self.decoder.n_seq_max) if slot not in used]

    def _room(self, reserved: int, cells: int) -> bool:
        """Whether ``cells`` are free in the cache after swapping out parked sequences
        (``reserved``: cells promised to started prompts)."""
        free = self.decoder.n_ctx - self.resident_cells() - reserved
        return self.make_room(free, cells) >= cells

    def _take_slot(self, seq: SeqState, reserved: int, *, counted: bool = True) -> int | None:
        """Give ``seq`` a slot (a free one, else a parked sequence's) and swap its state back
        in, into free cells (parked sequences are swapped out for them: the cache is unified);
        returns the slot (``None``: every slot, or the cells its state needs, are held by
        running generations). A state that does not load leaves ``seq`` empty in its slot;
        ``counted``: one that loads counts in :attr:`swaps_in` (not for an import)."""
        if seq.swapped is not None and not self._room(reserved, len(seq.kv)):
            return None
        free = self._unused_slots()
        if free:
            slot = free[0]
        else:
            victim = self._parked_victim()
            if victim is None:
                return None
            assert victim.slot is not None
            slot = victim.slot
            self._swap_out(victim)
        seq.slot = slot
        if seq.swapped is not None:
            data, seq.swapped = seq.swapped, None
            if not self.decoder.restore(slot, data):
                log.warning("model host: a KV state did not load; its tokens are evaluated again")
                self.decoder.remove(slot, 0)
                seq.kv = []
            elif counted:
                self.swaps_in += 1
        return slot

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


def reserved_cells(jobs: Sequence[Job]) -> int:
    """Cells promised to started prompts and not evaluated yet (see :meth:`Batcher.plan
    <models.llama._host_batching.Batcher.plan>`)."""
    return sum(
        len(j.target) - j.prefilled
        for j in jobs
        if j.state == "prefill" and j.keep is None and j.started
    )
