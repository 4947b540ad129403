"""Prompt lookup in the model host's steps: a sequence's draft, its verification, its outcome.

A generating sequence with a drafter (:attr:`SeqState.lookup
<models.llama._host_jobs.SeqState.lookup>`, :mod:`models.llama._lookup`) may follow its
pending token in a batch with draft tokens copied from earlier in its context, all with
logits. :class:`Drafting` decides that draft (:meth:`~Drafting.plan`), samples the batch's
entries in order until a sample differs from the draft or ends the turn
(:meth:`~Drafting.verify`: the accepted draft tokens stay in the KV cache, the rest is dropped
by position, and the last sample is the new pending token), and records what was accepted
and what the batch cost (:meth:`~Drafting.settle`).

Drafts end at an end of turn or at the token completing one of the job's stop byte strings
(``</tool_call>``…), so no batch verifies text after them; a draft never runs past the
context window or the generation's ``max_tokens``.
"""

from __future__ import annotations

from collections.abc import Callable

from models.llama._batch import Decoder, Entry
from models.llama._host_jobs import Job
from models.llama._lookup import cut_after_stops

__all__ = ["Drafting"]


class Drafting:
    """Drafts and their verification for the sequences of one decoder.

    Args:
        decoder: the multi-sequence context the batches run on.
        is_end: whether a sampled token ends the turn.
        piece: a token's bytes, for cutting drafts at stop strings (``None``: drafts are not
            cut, for a host whose sequences never draft).
    """

    def __init__(
        self,
        decoder: Decoder,
        is_end: Callable[[int], bool],
        piece: Callable[[int], bytes] | None,
    ) -> None:
        self.decoder = decoder
        self._is_end = is_end
        self._piece = piece

    def plan(self, job: Job, room: int) -> list[int]:
        """The draft to verify after ``job``'s pending token (``room``: at most; the
        sequence must have a drafter)."""
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

    def verify(self, job: Job, part: list[Entry], first: int) -> list[int]:
        """Sample ``[pending] + draft`` (batch entries from ``first``) in order until a sample
        differs from the draft or ends the turn; drop the rejected draft from the KV cache.
        Returns the samples: ``draft[:a]`` then one more, ``a`` draft tokens accepted. The
        sampler sees only the returned tokens (``llama_sampler_sample`` accepts what it
        returns), so a grammar or a penalty advances only on the generation's own tokens.

        Raises:
            RuntimeError: llama.cpp could not drop the rejected draft (the message says to
                open the model without prompt lookup).
        """
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

    @staticmethod
    def settle(job: Job, sampled: list[int], seconds: float) -> None:
        """After a decode batch of ``job`` (its pending token already in the sequence's KV):
        add the accepted draft tokens to the KV, count the draft, and tell the drafter what
        the batch cost (a verify batch, or a plain one)."""
        seq = job.seq
        lookup = seq.lookup
        if job.draft:
            accepted = len(sampled) - 1
            seq.kv.extend(job.draft[:accepted])
            seq.usage.draft_tokens += len(job.draft)
            if lookup is not None:
                lookup.verified(len(job.draft), accepted, seconds)
            job.draft = []
        elif lookup is not None:
            lookup.plain(seconds)
