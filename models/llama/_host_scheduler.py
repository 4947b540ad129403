"""The model host's scheduler: continuous batching over sequences, and KV swap for parked ones.

The scheduler owns the :class:`~models.llama._batch.Decoder` and runs *steps*. Each step
gathers one batch: one token per generating sequence whose consumer is at most
:attr:`HostLimits.lookahead` tokens behind (with its prompt-lookup draft, if it drafts), then
prompt chunks of sequences in prefill (in arrival order) up to ``n_batch``; it decodes the
batch once and samples every entry that has logits with that generation's own sampler chain.
Sessions (:class:`SeqState`, one per conversation) call :meth:`Scheduler.submit` and read the
sampled tokens of their :class:`Job` with :meth:`Scheduler.next_token`;
:meth:`Scheduler.finish` tells the host how many of them the consumer kept, and returns once
the sequence's KV cache holds no more than that.

Who runs the steps: a *threaded* scheduler has a host thread of its own, so sessions of many
threads share each batch; an *inline* one (``inline=True``, the single-conversation
:class:`~models.llama.backend.LlamaCppBackend`) has none: :meth:`Scheduler.next_token` runs a
step in the consumer's thread when it needs a token, so one conversation decodes with no
thread hand-off and nothing sampled ahead. Both run the same step code.

Prompt lookup (:mod:`models.llama._lookup`, per sequence: :attr:`SeqState.lookup`): a
generating sequence's entry may be followed by draft tokens copied from earlier in its
context, all with logits; its sampler samples them in order until a sample differs from the
draft (or ends the turn), the accepted draft tokens stay in the KV cache, the rest is dropped
by position, and the last sample is the new pending token. Drafts end at an end of turn or at
the token completing one of the job's stop byte strings (``</tool_call>``…), so no batch
verifies text after them.

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
generation keeps the longest common prefix with its prompt and evaluates the rest. When a
generation ends, the last token the consumer kept is *pending* (sampled, not in the cache),
as after plain decoding, unless the turn ended after it: the next generation evaluates it
with its new tokens, so counters and batch shapes do not depend on drafts or lookahead.

Counters (:class:`~models.base.Usage`, per sequence): a generated token counts when the
consumer reads it (``completion_tokens``, and ``draft_tokens_accepted`` for an accepted draft
token), so what was sampled ahead and never read is not counted; a batch's time counts for
every sequence in it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from models.base import GenerateOptions, StopReason
from models.llama._batch import Decoder, Entry
from models.llama._host_jobs import HostCall, HostLimits, Job, SeqState, WarmStart
from models.llama._lookup import cut_after_stops
from models.llama._tokens import common_prefix

__all__ = ["HostLimits", "Job", "Scheduler", "SeqState", "WarmStart"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_Plan = list[tuple[Job, list[Entry]]]


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
        self._is_end = is_end
        self._piece = piece
        self.cond = threading.Condition()
        self._seqs: list[SeqState] = []
        self._jobs: list[Job] = []
        self._to_free: list[SeqState] = []
        self._calls: list[HostCall] = []
        self._numbers = 0
        self._closing = False
        self.steps = 0
        """Batches decoded so far."""
        self.swaps_out = 0
        self.swaps_in = 0
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
        """Free ``seq``'s cells and swapped state (its generation must be finished)."""
        with self.cond:
            seq.closed = True
            if seq in self._seqs:
                self._seqs.remove(seq)
            if seq.slot is not None:
                self._to_free.append(seq)
            self.cond.notify_all()
            if not self._threaded():
                self._free_closed()
            while seq.slot is not None and self._threaded():
                self.cond.wait(0.5)  # the host thread frees the slot between batches
            seq.swapped, seq.kv = None, []

    def run_in_host(self, function: Callable[[], _T]) -> _T:
        """Run ``function`` where the steps run, between two batches (the decoder is not
        thread-safe), and return its result or raise its exception."""
        call = HostCall(function)
        with self.cond:
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

    def export_seq(self, seq: SeqState) -> tuple[list[int], bytes] | None:
        """``seq``'s tokens and KV state, wherever it is (host thread; no job running)."""
        if not seq.kv:
            return None
        if seq.slot is not None:
            return list(seq.kv), self.decoder.save(seq.slot)
        if seq.swapped is not None:
            return list(seq.kv), seq.swapped
        return None

    def import_seq(self, seq: SeqState, tokens: list[int], data: bytes) -> bool:
        """Make ``tokens`` with the state ``data`` the KV of ``seq`` (host thread; no job
        running). Into a free slot at once: ``False`` when llama.cpp refuses the state (the
        sequence is then empty); with no free slot, as if swapped out: it is restored on the
        next generation (evaluated again there if it does not load)."""
        if seq.slot is not None:
            self.decoder.remove(seq.slot, 0)
            seq.slot = None
        seq.kv, seq.swapped = [], None
        used = {s.slot for s in self._all_slots()}
        free = [slot for slot in range(self.decoder.n_seq_max) if slot not in used]
        if not free:
            seq.kv, seq.swapped = list(tokens), data
            self._keep_swap_budget()
            return True
        if not self.decoder.restore(free[0], data):
            self.decoder.remove(free[0], 0)
            return False
        seq.slot, seq.kv = free[0], list(tokens)
        return True

    def resident_cells(self) -> int:
        """KV cells held by sequences in the cache."""
        return sum(len(s.kv) for s in self._seqs if s.slot is not None)

    def swapped_bytes(self) -> int:
        """RAM held by swapped-out states."""
        return sum(len(s.swapped) for s in self._seqs if s.swapped is not None)

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

    def _prepare(self) -> _Plan:
        """Between batches (under the lock): free, run calls, settle, admit, then plan."""
        self._free_closed()
        if self._calls:
            for call in self._calls:
                call.run()
            self._calls.clear()
            self.cond.notify_all()
        for job in [j for j in self._jobs if j.keep is not None]:
            self._settle(job)
        self._admit()
        return self._plan()

    def _execute(self, plan: _Plan) -> None:
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
        keep = job.keep or 0
        kept = job.target + job.tokens[:keep]
        n = common_prefix(seq.kv, kept)
        if keep and not (job.end == "end_of_turn" and keep == len(job.tokens)):
            n = min(n, len(kept) - 1)  # the last kept token is pending, as after plain decoding
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
            keep = min(common_prefix(seq.kv, job.target), len(job.target) - 1)
            if keep < len(seq.kv):
                self._drop(seq, keep)
                keep = len(seq.kv)
            cached = 0 if job.continuation else keep
            warm = job.warm
            if (
                warm is not None
                and keep == 0
                and 0 < warm.end < len(job.target)
                and warm.store.load(self.decoder, seq.slot, job.target[: warm.end])
            ):
                seq.kv = job.target[: warm.end]
                keep = cached = warm.end
            job.prefilled = keep
            seq.usage.prompt_tokens_cached += cached
            if seq.lookup is not None:
                seq.lookup.sync(job.target)
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

    def _plan(self) -> _Plan:
        """This step's batch: a token (and its draft) per generating sequence, then prompt
        chunks.

        A prompt starts only when the cells for all of it are free (parked sequences are
        swapped out for it); from then on they are reserved for it, so prompts never hold
        cells against each other and generating sequences never take a started prompt's.
        """
        decoder = self.decoder
        room = decoder.n_batch
        plan: _Plan = []
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
            position = len(seq.kv)
            job.draft = self._draft(job, min(room, free) - 1) if seq.lookup is not None else []
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
                free = self._make_room(free, need)
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

    def _draft(self, job: Job, room: int) -> list[int]:
        """The draft to verify after ``job``'s pending token (``room``: at most)."""
        lookup = job.seq.lookup
        assert lookup is not None
        room = min(room, self.decoder.n_ctx - 2 - len(job.seq.kv))
        if job.options.max_tokens is not None:
            room = min(room, job.options.max_tokens - len(job.tokens) - 1)
        piece = self._piece
        if piece is None:
            return lookup.draft(room)

        def cut(draft: list[int]) -> int:
            longest = max((len(stop) for stop in job.stops), default=0)
            tail = b""  # at least the last `longest` bytes of the context, however tokenized
            for history in (job.tokens, job.target):
                for token in reversed(history):
                    if len(tail) >= longest:
                        break
                    tail = piece(token) + tail
            return cut_after_stops(draft, piece, tail, job.stops, self._is_end)

        return lookup.draft(room, cut)

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

    def _run(self, plan: _Plan) -> None:
        """Decode the batch (outside the lock), sample, and publish the tokens."""
        entries = [e for _, part in plan for e in part]
        started = time.perf_counter()
        self.decoder.decode(entries)
        results: list[tuple[list[int], str | None]] = []
        index = 0
        for job, part in plan:
            first = index
            index += len(part)
            sampled: list[int] = []
            error = None
            if part[-1].logits and job.options.max_tokens != 0:
                if job.draft and job.state == "decode":
                    try:
                        sampled = self._verify(job, part, first)
                    except RuntimeError as exc:
                        error = str(exc)
                else:
                    sampled = [self.decoder.sample(job.sampler, index - 1)]
            warm = job.warm
            if warm is not None and job.state == "prefill" and part[-1].pos + 1 == warm.end:
                warm.store.save(self.decoder, part[-1].seq, job.target[: warm.end])
            results.append((sampled, error))
        seconds = time.perf_counter() - started
        self.steps += 1
        with self.cond:
            for (job, part), (sampled, error) in zip(plan, results, strict=True):
                if error is not None:
                    self._fail([(job, part)], error, whole=True)
                else:
                    self._publish(job, part, sampled, seconds)
            self.cond.notify_all()

    def _verify(self, job: Job, part: list[Entry], first: int) -> list[int]:
        """Sample ``[pending] + draft`` (batch entries from ``first``) in order until a sample
        differs from the draft or ends the turn; drop the rejected draft from the KV cache.
        Returns the samples: ``draft[:a]`` then one more, ``a`` draft tokens accepted. The
        sampler sees only the returned tokens (``llama_sampler_sample`` accepts what it
        returns), so a grammar or a penalty advances only on the generation's own tokens."""
        draft = job.draft
        sampled: list[int] = []
        for i in range(len(part)):
            token = self.decoder.sample(job.sampler, first + i)
            sampled.append(token)
            if i == len(draft) or token != draft[i] or self._is_end(token):
                break
        keep = part[0].pos + len(sampled)  # the pending token and the accepted draft
        if keep <= part[-1].pos and not self.decoder.remove(part[0].seq, keep):
            raise RuntimeError(
                f"llama.cpp could not drop a rejected draft (positions {keep} and on) from the "
                "KV cache of this model; open it with lookup=False (--no-lookup)"
            )
        return sampled

    def _publish(self, job: Job, part: list[Entry], sampled: list[int], seconds: float) -> None:
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
            lookup = seq.lookup
            if job.draft:
                accepted = len(sampled) - 1
                seq.kv.extend(job.draft[:accepted])
                usage.draft_tokens += len(job.draft)
                if lookup is not None:
                    lookup.verified(len(job.draft), accepted, seconds)
                job.draft = []
            elif lookup is not None:
                lookup.plain(seconds)
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

    def _fail(
        self, plan: Sequence[tuple[Job, list[Entry]]], message: str, whole: bool = False
    ) -> None:
        """End the generations of ``plan`` with ``message``; their sequences keep what they
        held before the batch (nothing, with ``whole``: the cache cannot be trusted)."""
        for job, part in plan:
            self._drop(job.seq, 0 if whole else part[0].pos)
            job.error = message
            job.draft = []
            job.state = "done"
        self.cond.notify_all()

    def _abort_all(self, message: str) -> None:
        for job in list(self._jobs):
            if job.error is None and job.end is None:
                job.error = message
            self._settle(job)
