"""One conversation on a model host: :class:`HostedLlamaBackend`, a :class:`~models.base.Backend`.

Re-exported by :mod:`models.llama.host` (where :class:`~models.llama.host.LlamaHost` makes
sessions); :class:`~models.llama.backend.LlamaCppBackend` is one such session on a host of
its own. Token ids are the source of truth (:class:`~models.llama._record.ContextRecord`): a
continuation evaluates only the new tokens (the last generated one included), the sampler
chain, grammar and stop strings are the session's own, and a consumer that closes the
generator after a chunk leaves a record (and a KV cache) that ends exactly at that chunk.
"""

from __future__ import annotations

import codecs
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

from models.base import (
    BackendError,
    BackendInfo,
    ContextOverflowError,
    GenerateOptions,
    Segment,
    StopReason,
    Usage,
)
from models.llama._host_jobs import WarmStart
from models.llama._record import ContextRecord
from models.llama._tokens import StopMatcher
from models.qwq.tags import CALL_CLOSE, RESPONSE_OPEN

if TYPE_CHECKING:
    from models.llama._lookup import Lookup
    from models.llama.host import LlamaHost
    from models.llama.kv_state import PrefixStateStore

STOP_TAGS = tuple(tag.encode() for tag in (CALL_CLOSE, RESPONSE_OPEN))
"""Tags after which the loop ends a step: no draft runs past them."""


class HostedLlamaBackend:
    """One conversation on a :class:`~models.llama.host.LlamaHost`.

    Not thread-safe on its own (one agent uses it); sessions of one threaded host run in
    parallel.

    Args:
        host: the host (see :meth:`LlamaHost.session`).
        lookup: its prompt-lookup drafter (``None``: plain decoding).
        store: where the KV state of a prompt's system turn is saved and loaded (the warm
            start, :class:`~models.llama.kv_state.PrefixStateStore`); ``None``: none.

    Raises:
        BackendError: the host is closed, or ``max_sessions`` are open.
    """

    def __init__(
        self,
        host: LlamaHost,
        *,
        lookup: Lookup | None = None,
        store: PrefixStateStore | None = None,
    ) -> None:
        try:
            self._seq = host.scheduler.open_seq()
        except RuntimeError as exc:
            raise BackendError(str(exc)) from exc
        self._seq.lookup = lookup
        self._host = host
        self._store = store
        self._record = ContextRecord()
        self._active: Generator[str, None, StopReason] | None = None
        self._closed = False

    @property
    def info(self) -> BackendInfo:
        """The host's model."""
        return self._host.info

    @property
    def usage(self) -> Usage:
        """This session's cumulative counters."""
        with self._host.scheduler.cond:
            return self._seq.usage.copy()

    @property
    def host(self) -> LlamaHost:
        """The host this session runs on."""
        return self._host

    @property
    def lookup(self) -> Lookup | None:
        """Its prompt-lookup drafter (``None``: plain decoding); settable between
        generations (a benchmark compares the two)."""
        return self._seq.lookup

    @lookup.setter
    def lookup(self, lookup: Lookup | None) -> None:
        with self._host.scheduler.cond:
            self._seq.lookup = lookup

    @property
    def context_tokens(self) -> list[int]:
        """The token ids of the context as recorded."""
        return list(self._record.tokens)

    @property
    def kv_tokens(self) -> list[int]:
        """The tokens this session's KV state holds (a prefix of :attr:`context_tokens` once
        a generation is over: the last generated token is pending, not evaluated)."""
        with self._host.scheduler.cond:
            return list(self._seq.kv)

    def tokenize(self, segment: Segment, *, first: bool = False) -> list[int]:
        """The tokens of one segment in a context (``data`` without special tokens, and never
        into a single-token tag such as ``<tool_call>``).

        Raises:
            BackendError: the session or its host is closed.
        """
        self._check_open()
        vocab = self._host.vocab
        if segment.role == "data":
            return vocab.tokenize(
                segment.text, special=False, first=first, protect=self._host.protected
            )
        return vocab.tokenize(segment.text, special=True, first=first)

    def generate(
        self, context: Sequence[Segment], options: GenerateOptions
    ) -> Generator[str, None, StopReason]:
        """Continue ``context``; see :mod:`models.base` and the module docstring.

        Checks run at call time: an empty context raises ``ValueError``, one that leaves no
        room to generate raises :class:`ContextOverflowError`, an invalid grammar
        ``ValueError``. A previous generation still open is closed.
        """
        self._check_open()
        if self._active is not None:
            self._active.close()
            self._active = None
        segments = [s for s in context if s.text]
        if not segments:
            raise ValueError("cannot generate from an empty context")
        target, ends, continuation = self._record.plan(
            segments, lambda s, first: self.tokenize(s, first=first), self._host.vocab.piece
        )
        n_ctx = self._host.info.context_size
        if len(target) >= n_ctx:
            raise ContextOverflowError(len(target) + 1, n_ctx)
        sampler = self._host.decoder.make_sampler(options, target)
        run = self._run(segments, target, ends, continuation, sampler, options)
        self._active = run
        return run

    def _warm_start(self, segments: list[Segment], prompt: list[int]) -> WarmStart | None:
        """Where this prompt's system turn ends, when its state is to be saved or loaded."""
        if self._store is None:
            return None
        from models.llama.kv_state import system_turn_end

        end = system_turn_end(segments[0], prompt, self._host.vocab.turn_end)
        return WarmStart(end, self._store) if end else None

    def _run(
        self,
        segments: list[Segment],
        target: list[int],
        ends: list[int],
        continuation: bool,
        sampler: Any,
        options: GenerateOptions,
    ) -> Generator[str, None, StopReason]:
        scheduler = self._host.scheduler
        stops: tuple[bytes, ...] = ()
        if self._seq.lookup is not None:
            stops = STOP_TAGS + tuple(stop.encode("utf-8") for stop in options.stop)
        warm = self._warm_start(segments, target[: ends[0]])
        try:
            job = scheduler.submit(
                self._seq, target, options, sampler, continuation, stops=stops, warm=warm
            )
        except RuntimeError as exc:
            sampler.close()
            self._active = None
            raise BackendError(str(exc)) from exc
        piece = self._host.vocab.piece
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        chunks: list[str] = []
        produced = covered = 0  # tokens read / of them, fully yielded as text
        covered_chars = chars = 0  # characters yielded: for the first `covered` tokens / all
        stop_strings = StopMatcher(options.stop)
        failed = False
        try:
            while True:
                try:
                    token, reason = scheduler.next_token(job, produced, options.interrupt)
                except RuntimeError as exc:
                    failed = True
                    raise BackendError(str(exc)) from exc
                if token is None:
                    assert reason is not None
                    return reason
                produced += 1
                text = decoder.decode(piece(token))
                if decoder.getstate()[0] == b"":
                    covered = produced
                    covered_chars = chars + len(text)
                if not text:
                    continue
                chunks.append(text)
                chars += len(text)
                yield text
                if stop_strings.seen(text):
                    return "stopped"
        finally:
            scheduler.finish(job, covered)
            tokens = target + job.tokens[:covered]
            # text yielded past the covered tokens: the start of a token that also began a
            # character it never finished (b" \xe2"); the loop's context has that text
            rest = "".join(chunks)[covered_chars:]
            if rest and not failed:
                tokens += self.tokenize(Segment(rest, "model"))
            self._record_generation(segments, ends, tokens, chunks, failed)
            self._active = None

    def _record_generation(
        self,
        segments: list[Segment],
        ends: list[int],
        tokens: list[int],
        chunks: list[str],
        failed: bool,
    ) -> None:
        record = self._record
        with self._host.scheduler.cond:
            if failed:  # only what the KV cache still holds can be trusted
                record.bare(list(self._seq.kv))
            else:
                record.segments, record.ends = list(segments), list(ends)
                record.tokens, record.pending = tokens, False
                text = "".join(chunks)
                if text:
                    record.segments.append(Segment(text, "model"))
                    record.ends.append(len(record.tokens))
            self._seq.usage.context_tokens = len(record.tokens)

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("this session has been closed; open a new one on the host")
        if self._host.closed:  # its context (and maybe its model) is freed: never touch it
            raise BackendError("the model host has been closed; open a new one")

    # -- the KV state on disk (models.llama.kv_state.KVStateful) ----------------------------------

    def kv_fingerprint(self) -> dict[str, object]:
        """What a saved state of this session depends on besides its tokens."""
        from models.llama.kv_state import fingerprint

        host = self._host
        if host.model_path is None or host.settings is None:
            return {"model": host.info.name}
        return fingerprint(host.model_path, host.info.chat_template, host.settings)

    def export_kv(self) -> tuple[list[int], bytes] | None:
        """The tokens this session's KV state holds and the state (``None``: empty)."""
        self._check_open()
        scheduler = self._host.scheduler
        return scheduler.run_in_host(lambda: scheduler.export_seq(self._seq))

    def import_kv(self, tokens: list[int], data: bytes) -> bool:
        """Replace the context by ``tokens`` with their saved state (a bare record, reused by
        common prefix). Loaded at once, parked sequences being swapped out for its slot and
        cells; while running generations hold them, it waits swapped out and is loaded on
        the next generation (a state that does not load then is evaluated again).

        Returns ``False``, with an empty context, when the state is not held: llama.cpp
        refused it, it is as long as the context, or, waiting, it is larger than the host's
        swap budget (``HostLimits.swap_bytes``)."""
        self.reset()
        if len(tokens) >= self._host.info.context_size:
            return False
        scheduler = self._host.scheduler
        if not scheduler.run_in_host(lambda: scheduler.import_seq(self._seq, tokens, data)):
            return False
        self._record.bare(list(tokens))
        return True

    def reset(self) -> None:
        """Forget the conversation (its KV cells are freed, a drafter forgets its text);
        counters are kept.

        Raises:
            BackendError: the session or its host is closed.
        """
        self._check_open()
        if self._active is not None:
            self._active.close()
            self._active = None
        usage, lookup = self.usage, self._seq.lookup
        self._host.scheduler.close_seq(self._seq)
        try:
            self._seq = self._host.scheduler.open_seq()
        except RuntimeError as exc:
            raise BackendError(str(exc)) from exc
        self._seq.usage = usage
        if lookup is not None:
            lookup.reset()
        self._seq.lookup = lookup
        self._record = ContextRecord()

    def close(self) -> None:
        """End this session: free its sequence (the host and its model stay). Idempotent;
        after the host was closed it only marks the session closed.

        Raises:
            BackendError: a generation of this session runs in another thread right now.
        """
        if self._closed:
            return
        if self._active is not None:
            try:
                self._active.close()
            except ValueError as exc:  # "generator already executing"
                raise BackendError(
                    "cannot close the session while its generation runs in another thread; "
                    "stop that generation (close its generator) first"
                ) from exc
            self._active = None
        self._closed = True
        self._host.scheduler.close_seq(self._seq)
