"""The model host: one loaded llama.cpp model serving many agents at once.

A :class:`LlamaHost` owns one loaded model and one llama.cpp context with several sequences
(:mod:`models.llama._batch`), run by a scheduler thread (:mod:`models.llama._host_scheduler`:
continuous batching, KV swap for parked sequences, the limits). Each agent talks to it through
its own :class:`HostedLlamaBackend` from :meth:`LlamaHost.session`, a
:class:`~models.base.Backend` like any other, so the agent, the loop and the parser do not
know they share a model::

    host = LlamaHost.open("model.gguf", n_seq_max=4)
    agents = [Agent(host.session(), tools=[...]) for _ in range(4)]   # one thread each
    ...
    host.close()

A session behaves as :class:`models.llama.backend.LlamaCppBackend` does for one conversation:
token ids are the source of truth (:class:`~models.llama._record.ContextRecord`), a
continuation evaluates only the new tokens (the last generated one included), the sampler
chain, grammar and stop strings are the session's own, and a consumer that closes the
generator after a chunk leaves a record (and a KV cache) that ends exactly at that chunk.
Counters are per session; a batch's time counts for every session in it (the time each one
waited for its tokens).

llama_cpp is imported inside the functions, never at module import.
"""

from __future__ import annotations

import codecs
import dataclasses
import os
from collections.abc import Collection, Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from models.base import (
    BackendError,
    BackendInfo,
    ContextOverflowError,
    GenerateOptions,
    Sampling,
    Segment,
    StopReason,
    Usage,
)
from models.llama._batch import Decoder
from models.llama._host_scheduler import HostLimits, Job, Scheduler
from models.llama._record import ContextRecord
from models.llama._tokens import StopMatcher
from models.llama.options import LlamaOptions
from models.options import BackendOptions
from models.qwq.tags import TOKEN_TAGS

if TYPE_CHECKING:
    from llama_cpp import Llama

    from models.llama._load import LoadSettings
    from models.llama.backend import LlamaCppBackend

DEFAULT_SEQUENCES = 4
STUB_CTX = 256
"""The context of the ``Llama`` object that holds the weights when the host loads the model:
the host decodes in a context of its own, so this one only needs to exist."""


class HostVocab(Protocol):
    """What a session needs of the vocabulary (:class:`models.llama._tokens.Vocabulary`)."""

    def tokenize(
        self, text: str, *, special: bool, first: bool = False, protect: Collection[str] = ()
    ) -> list[int]: ...

    def piece(self, token: int) -> bytes: ...

    def is_end(self, token: int) -> bool: ...


class LlamaHost:
    """One model, many sessions. Thread-safe: each session is used by one thread at a time.

    Most callers use :meth:`open` (load a GGUF) or :meth:`sharing` (reuse the weights of a
    loaded :class:`~models.llama.backend.LlamaCppBackend`); the constructor takes the parts.

    Args:
        decoder: the multi-sequence context.
        vocab: the model's vocabulary.
        info: what sessions report as their :class:`BackendInfo` (``concurrent`` is set).
        limits: see :class:`~models.llama._host_scheduler.HostLimits`.
        protected: tags that untrusted text must not produce as single tokens.
        owner: closed after the decoder by :meth:`close` (the loaded ``Llama``), or ``None``.
    """

    def __init__(
        self,
        decoder: Decoder,
        vocab: HostVocab,
        info: BackendInfo,
        *,
        limits: HostLimits | None = None,
        protected: Sequence[str] = (),
        owner: Any = None,
    ) -> None:
        self.decoder = decoder
        self.vocab = vocab
        self.info = dataclasses.replace(info, concurrent=True, context_size=decoder.n_ctx)
        self.protected = list(protected)
        self.scheduler = Scheduler(decoder, vocab.is_end, limits)
        self.model_path: Path | None = None
        self.settings: LoadSettings | None = None
        self._owner = owner
        self._closed = False

    @classmethod
    def open(
        cls,
        model_path: str | os.PathLike[str],
        options: LlamaOptions | None = None,
        *,
        n_seq_max: int = DEFAULT_SEQUENCES,
        name: str | None = None,
        default_sampling: Sampling | None = None,
        limits: HostLimits | None = None,
    ) -> LlamaHost:
        """Load ``model_path`` once for ``n_seq_max`` sequences in a unified KV cache of
        ``options.n_ctx`` cells (default: what :func:`models.llama._load.resolve_settings`
        fits for one conversation; a sequence may use all of it while the others are swapped
        out). ``options.lookup`` and ``options.state_dir`` do not apply to a host.

        Raises:
            BackendError: the file is missing or not a GGUF, an option is invalid, or
                llama.cpp could not load it or create the context (the message says what to
                try).
        """
        from models.llama._load import load_llama, open_model_file
        from models.llama._tokens import Vocabulary

        if n_seq_max < 1:
            raise BackendError(f"n_seq_max must be at least 1, not {n_seq_max!r}")
        options = options or LlamaOptions()
        chat_template = options.chat_template
        path, metadata, settings = open_model_file(model_path, options)
        stub = dataclasses.replace(
            settings, n_ctx=STUB_CTX, n_batch=min(settings.n_batch, STUB_CTX)
        )
        llm = load_llama(path, metadata, stub)
        try:
            vocab = Vocabulary(llm)
            info = backend_info(llm, vocab, path, metadata, chat_template, name, default_sampling)
            decoder = _decoder(llm, settings.n_ctx, n_seq_max, settings.n_batch)
        except BaseException:
            llm.close()
            raise
        protected = [t for t in TOKEN_TAGS if vocab.single_token(t) is not None]
        host = cls(decoder, vocab, info, limits=limits, protected=protected, owner=llm)
        host.model_path, host.settings = path, settings
        return host

    @classmethod
    def sharing(
        cls,
        backend: LlamaCppBackend,
        *,
        n_seq_max: int = DEFAULT_SEQUENCES,
        n_ctx: int | None = None,
        limits: HostLimits | None = None,
    ) -> LlamaHost:
        """A host on the weights ``backend`` has loaded (no second copy); ``backend`` must
        stay open while the host is (closing the host leaves it open). ``n_ctx`` defaults
        to the backend's context size."""
        llm: Llama = backend._llm
        size = n_ctx or backend.info.context_size
        decoder = _decoder(llm, size, n_seq_max, backend.settings.n_batch)
        host = cls(
            decoder, backend._vocab, backend.info, limits=limits, protected=backend._protected
        )
        host.model_path, host.settings = backend.model_path, backend.settings
        return host

    def session(self) -> HostedLlamaBackend:
        """A new conversation on this host (its own sequence).

        Raises:
            BackendError: the host is closed, or ``max_sessions`` are open.
        """
        if self._closed:
            raise BackendError("this model host has been closed; open a new one")
        return HostedLlamaBackend(self)

    def close(self) -> None:
        """Stop the scheduler and free the context (and the model, when the host loaded it).
        Generations still running end with a :class:`BackendError`. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.scheduler.close()
        self.decoder.close()
        if self._owner is not None:
            self._owner.close()

    def __enter__(self) -> LlamaHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def backend_info(
    llm: Llama,
    vocab: Any,
    path: Path,
    metadata: dict[str, Any],
    chat_template: str | None,
    name: str | None,
    default_sampling: Sampling | None,
) -> BackendInfo:
    """What a session reports about the model, decided as
    :class:`~models.llama.backend.LlamaCppBackend` decides it (the GGUF's template, QwQ's when
    a QwQ-like GGUF has none)."""
    from models.llama._load import is_qwq_like
    from models.llama.backend import _opens_thinking, _str
    from models.qwq import chat_template as templates

    template = chat_template or _str(metadata.get("tokenizer.chat_template"))
    if template is None and is_qwq_like(path, metadata):
        template = templates.qwq_template()
    probe = template or templates.qwq_template()
    return BackendInfo(
        name=name or path.name,
        chat_template=template,
        opens_thinking=_opens_thinking(probe),
        context_size=llm.n_ctx(),
        supports_grammar=True,
        template_supports_tools=templates.template_supports_tools(probe),
        concurrent=True,
        default_sampling=default_sampling or Sampling(),
        control_tokens=vocab.special_tokens(),
    )


def _decoder(llm: Llama, n_ctx: int, n_seq_max: int, n_batch: int) -> Decoder:
    from models.llama._batch import LlamaDecoder

    return LlamaDecoder(llm, n_ctx=n_ctx, n_seq_max=n_seq_max, n_batch=n_batch)


class HostedLlamaBackend:
    """One conversation on a :class:`LlamaHost`: a :class:`~models.base.Backend`.

    Not thread-safe on its own (one agent uses it); sessions of one host run in parallel.
    """

    def __init__(self, host: LlamaHost) -> None:
        try:
            self._seq = host.scheduler.open_seq()
        except RuntimeError as exc:
            raise BackendError(str(exc)) from exc
        self._host = host
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
    def context_tokens(self) -> list[int]:
        """The token ids of the context as recorded."""
        return list(self._record.tokens)

    def tokenize(self, segment: Segment, *, first: bool = False) -> list[int]:
        """The tokens of one segment in a context (``data`` without special tokens)."""
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
        try:
            job = scheduler.submit(self._seq, target, options, sampler, continuation)
        except RuntimeError as exc:
            sampler.close()
            self._active = None
            raise BackendError(str(exc)) from exc
        piece = self._host.vocab.piece
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        chunks: list[str] = []
        produced = covered = 0
        stop_strings = StopMatcher(options.stop)
        try:
            while True:
                token, reason = self._next(job, produced, options)
                if token is None:
                    assert reason is not None
                    return reason
                produced += 1
                text = decoder.decode(piece(token))
                if decoder.getstate()[0] == b"":
                    covered = produced
                if not text:
                    continue
                chunks.append(text)
                yield text
                if stop_strings.seen(text):
                    return "stopped"
        finally:
            scheduler.finish(job, covered)
            record = self._record
            record.segments, record.ends = list(segments), list(ends)
            record.tokens, record.pending = target + job.tokens[:covered], False
            text = "".join(chunks)
            if text:
                record.segments.append(Segment(text, "model"))
                record.ends.append(len(record.tokens))
            with scheduler.cond:
                self._seq.usage.context_tokens = len(record.tokens)
            self._active = None

    def _next(
        self, job: Job, index: int, options: GenerateOptions
    ) -> tuple[int | None, StopReason | None]:
        """The ``index``-th sampled token, or why there is none (blocks until one of them)."""
        scheduler = self._host.scheduler
        interrupt = options.interrupt
        with scheduler.cond:
            while True:
                if job.error is not None:
                    raise BackendError(job.error)
                if index < len(job.tokens):
                    job.consumed = index + 1
                    scheduler.cond.notify_all()
                    return job.tokens[index], None
                if job.end is not None:
                    return None, job.end
                if interrupt is not None and not job.tokens and interrupt():
                    return None, "interrupted"
                scheduler.cond.wait(0.05 if interrupt is not None else 0.5)

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("this session has been closed; open a new one on the host")

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
        """Replace the context by ``tokens`` with their saved state; it is put into the cache
        on the next generation (a state that does not load then is evaluated again)."""
        self.reset()
        if len(tokens) >= self._host.info.context_size:
            return False
        scheduler = self._host.scheduler
        scheduler.run_in_host(lambda: scheduler.import_seq(self._seq, tokens, data))
        self._record.bare(list(tokens))
        return True

    def reset(self) -> None:
        """Forget the conversation (its KV cells are freed); counters are kept."""
        self._check_open()
        if self._active is not None:
            self._active.close()
            self._active = None
        usage = self.usage
        self._host.scheduler.close_seq(self._seq)
        try:
            self._seq = self._host.scheduler.open_seq()
        except RuntimeError as exc:
            raise BackendError(str(exc)) from exc
        self._seq.usage = usage
        self._record = ContextRecord()

    def close(self) -> None:
        """End this session: free its sequence (the host and its model stay). Idempotent.

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


def open_host(
    spec: str,
    options: BackendOptions | None = None,
    *,
    n_seq_max: int = DEFAULT_SEQUENCES,
    limits: HostLimits | None = None,
) -> LlamaHost:
    """A host for an embedded model spec (a catalog name or a ``.gguf`` path), resolved as
    :func:`models.catalog.open_backend` resolves it, with ``options.llama`` and the hub
    options of ``options`` (:class:`models.options.BackendOptions`; the server options and
    what only a single-conversation backend has, prompt lookup and warm start, do not apply).

    Raises:
        BackendError: ``spec`` is not an embedded model, or it cannot be found, downloaded or
            loaded (the message says why and what to do).
    """
    from models.catalog import default_sampling, model_path, parse_spec

    options = options or BackendOptions()
    parsed = parse_spec(spec)
    if parsed.kind not in ("catalog", "path"):
        raise BackendError(
            f"{spec!r} is not an embedded model: a model host loads a catalog name or a .gguf "
            "file (a server already serves several conversations; use it directly)"
        )
    path = model_path(spec, **options.hub()) if parsed.kind == "catalog" else Path(parsed.value)
    return LlamaHost.open(
        path,
        options.llama,
        n_seq_max=n_seq_max,
        name=spec if parsed.kind == "catalog" else None,
        default_sampling=default_sampling(spec),
        limits=limits,
    )


def is_embedded(spec: str) -> bool:
    """Whether ``spec`` names a model a host can load (a catalog name or a file path)."""
    from models.catalog import parse_spec

    return parse_spec(spec).kind in ("catalog", "path")
