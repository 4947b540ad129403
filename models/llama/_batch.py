"""The decoder of the model host: one llama.cpp context, many sequences, one batch per step.

:class:`Decoder` is what the host's scheduler (:mod:`models.llama.host`) needs from llama.cpp,
and nothing more: evaluate a batch of ``(token, position, sequence, logits?)`` entries, sample
an entry's logits with a sampler chain, drop a suffix of one sequence from the KV cache, and
move one sequence's KV state out to bytes and back. :class:`LlamaDecoder` is the real one: a
second llama.cpp context over the weights of an already loaded ``Llama``
(``llama_init_from_model`` shares the model; ``Llama()`` itself cannot make a context with
several sequences), with ``n_seq_max`` sequences in a unified KV cache of ``n_ctx`` cells.

Pitfalls it keeps away from the scheduler: ``Llama.eval`` and ``LlamaContext.kv_cache_seq_rm``
work on sequence 0 only (``-1`` maps to 0 there), so this module calls the memory API
(``llama_get_memory`` + ``llama_memory_seq_rm``) with real sequence ids;
``llama_get_logits_ith`` has nothing for an entry without its logits flag, so the scheduler
samples only entries it flagged; the buffer of ``llama_state_seq_get_data`` is reused (its
allocation is most of the cost of a swap).

llama_cpp is imported inside the methods, never at module import.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from models.base import BackendError, GenerateOptions

if TYPE_CHECKING:
    from llama_cpp import Llama


@dataclass(frozen=True, slots=True)
class Entry:
    """One token of a batch."""

    token: int
    pos: int
    """Its position in its sequence (the sequence's KV cache holds positions ``0..pos-1``)."""
    seq: int
    """The llama.cpp sequence id (a slot of the host)."""
    logits: bool
    """Whether to compute logits here (only entries with logits can be sampled)."""


class Sampler(Protocol):
    """A sampler chain for one generation (see :func:`models.llama._tokens.make_sampler`)."""

    def close(self) -> None:
        """Free it."""
        ...


class Decoder(Protocol):
    """What the scheduler needs from a multi-sequence llama.cpp context."""

    n_ctx: int
    """KV cells in all (the unified cache); a sequence may use up to all of them."""
    n_seq_max: int
    """Sequence ids ``0..n_seq_max-1``."""
    n_batch: int
    """The most entries one :meth:`decode` takes."""

    def decode(self, entries: Sequence[Entry]) -> None:
        """Evaluate ``entries`` in one batch (``len(entries) <= n_batch``).

        Raises:
            RuntimeError: llama.cpp failed; the entries' sequences cannot be trusted beyond
                their positions before this call (the caller drops them from there).
        """
        ...

    def sample(self, sampler: Any, index: int) -> int:
        """Sample the logits of the ``index``-th entry of the last batch with ``sampler``
        (which accepts the token it returns)."""
        ...

    def make_sampler(self, options: GenerateOptions, context: Sequence[int]) -> Any:
        """A fresh sampler chain for one generation continuing ``context``, its penalties
        primed with the context's last tokens (``ValueError``: a bad grammar)."""
        ...

    def remove(self, seq: int, start: int) -> bool:
        """Drop positions ``start..`` of ``seq`` from the KV cache (``0``: all of it).
        Returns ``False`` when the cache cannot drop a suffix (a recurrent model): the whole
        sequence is dropped instead."""
        ...

    def save(self, seq: int) -> bytes:
        """The KV state of ``seq`` (to move it out of the cache)."""
        ...

    def restore(self, seq: int, data: bytes) -> bool:
        """Put a state made by :meth:`save` into the empty ``seq``; whether it worked."""
        ...

    def close(self) -> None:
        """Free the context (the model stays with its owner). Idempotent."""
        ...


class LlamaDecoder:
    """A :class:`Decoder` over a second llama.cpp context on ``llm``'s weights (or over
    ``llm``'s own context: :meth:`on_context`).

    Args:
        llm: a loaded model; it must outlive this decoder (the host keeps it).
        n_ctx: KV cells of the unified cache shared by the sequences.
        n_seq_max: how many sequences may hold cells at once.
        n_batch: the most tokens per decode (prompt chunks and one token per generating
            sequence together).

    Raises:
        BackendError: llama.cpp could not create the context (not enough memory: the message
            says what to lower).
    """

    def __init__(self, llm: Llama, *, n_ctx: int, n_seq_max: int, n_batch: int) -> None:
        import llama_cpp

        params = llama_cpp.llama_context_params()
        ctypes.pointer(params)[0] = llm.context_params  # a copy: threads, rope, KV types
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq_max
        params.kv_unified = True
        ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
        if not ctx:
            raise BackendError(
                f"llama.cpp could not create a host context of {n_ctx} tokens for {n_seq_max} "
                "sequences: not enough memory; lower the host's n_ctx or its n_seq_max"
            )
        self._setup(llm, ctx, owned=True)

    @classmethod
    def on_context(cls, llm: Llama) -> LlamaDecoder:
        """A decoder on ``llm``'s own context (its sequences, ``n_ctx`` and ``n_batch``),
        which stays ``llm``'s: :meth:`close` frees only the decoder's batch. For a
        single-conversation host (:class:`~models.llama.backend.LlamaCppBackend`), so
        that code holding the ``Llama`` (a benchmark's raw loop) sees the same cache."""
        decoder = cls.__new__(cls)
        decoder._setup(llm, llm.ctx, owned=False)
        return decoder

    def _setup(self, llm: Llama, ctx: Any, *, owned: bool) -> None:
        import llama_cpp

        self._llm = llm
        self._ctx: Any = ctx
        self._owned = owned
        self._memory = llama_cpp.llama_get_memory(ctx)
        self.n_ctx = int(llama_cpp.llama_n_ctx(ctx))
        self.n_seq_max = int(llama_cpp.llama_n_seq_max(ctx))
        self.n_batch = int(llama_cpp.llama_n_batch(ctx))
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._buffer = (ctypes.c_uint8 * 0)()
        self._closed = False

    def decode(self, entries: Sequence[Entry]) -> None:
        import llama_cpp

        if len(entries) > self.n_batch:
            raise ValueError(f"{len(entries)} entries exceed n_batch={self.n_batch!r}")
        batch = self._batch
        for i, entry in enumerate(entries):
            batch.token[i] = entry.token
            batch.pos[i] = entry.pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = entry.seq
            batch.logits[i] = entry.logits
        batch.n_tokens = len(entries)
        code = llama_cpp.llama_decode(self._ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code} for a batch of {len(entries)}")

    def sample(self, sampler: Any, index: int) -> int:
        import llama_cpp

        return int(llama_cpp.llama_sampler_sample(sampler.sampler, self._ctx, index))

    def make_sampler(self, options: GenerateOptions, context: Sequence[int]) -> Any:
        from models.llama._tokens import make_sampler, prime_penalties

        sampler = make_sampler(self._llm, options)
        prime_penalties(sampler, options, context)
        return sampler

    def remove(self, seq: int, start: int) -> bool:
        import llama_cpp

        if llama_cpp.llama_memory_seq_rm(self._memory, seq, start, -1):
            return True
        llama_cpp.llama_memory_seq_rm(self._memory, seq, 0, -1)
        return False

    def save(self, seq: int) -> bytes:
        import llama_cpp

        size = int(llama_cpp.llama_state_seq_get_size(self._ctx, seq))
        if len(self._buffer) < size:
            self._buffer = (ctypes.c_uint8 * size)()
        written = int(llama_cpp.llama_state_seq_get_data(self._ctx, self._buffer, size, seq))
        return ctypes.string_at(self._buffer, written)

    def restore(self, seq: int, data: bytes) -> bool:
        import llama_cpp

        source = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        return int(llama_cpp.llama_state_seq_set_data(self._ctx, source, len(data), seq)) > 0

    def synchronize(self) -> None:
        """Wait for the device to finish the last batch (for timing)."""
        import llama_cpp

        llama_cpp.llama_synchronize(self._ctx)

    def close(self) -> None:
        import llama_cpp

        if self._closed:
            return
        self._closed = True
        llama_cpp.llama_batch_free(self._batch)
        if self._owned:
            llama_cpp.llama_free(self._ctx)
