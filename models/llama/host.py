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

A session (:mod:`models.llama._session`) behaves as
:class:`models.llama.backend.LlamaCppBackend` does for one conversation, because that backend
*is* a session: on a host of its own with one sequence, whose scheduler runs each step in the
consumer's thread (``inline``), so there is one decode path, with prompt lookup and the warm
start as options of a session. Token ids are the source of truth
(:class:`~models.llama._record.ContextRecord`), a continuation evaluates only the new tokens
(the last generated one included), the sampler chain, grammar and stop strings are the
session's own, and a consumer that closes the generator after a chunk leaves a record (and a
KV cache) that ends exactly at that chunk. Counters are per session; a batch's time counts
for every session in it (the time each one waited for its tokens).

llama_cpp is imported inside the functions, never at module import.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from models.base import BackendError, BackendInfo, Sampling
from models.llama._batch import Decoder
from models.llama._host_scheduler import HostLimits, Scheduler
from models.llama._session import HostedLlamaBackend
from models.llama.options import LlamaOptions
from models.options import BackendOptions
from models.qwq.tags import TOKEN_TAGS

if TYPE_CHECKING:
    from llama_cpp import Llama

    from models.llama._load import LoadSettings
    from models.llama._lookup import Lookup
    from models.llama.backend import LlamaCppBackend
    from models.llama.kv_state import PrefixStateStore

__all__ = ["HostLimits", "HostedLlamaBackend", "LlamaHost", "is_embedded", "open_host"]

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

    @property
    def turn_end(self) -> int | None:
        """The id of ``<|im_end|>`` when it is one token (the warm start looks for it)."""
        ...


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
        inline: no host thread: each session's consumer runs the steps (one generation at
            a time; ``info.concurrent`` is then false). The single-conversation backend.
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
        inline: bool = False,
    ) -> None:
        self.decoder = decoder
        self.vocab = vocab
        self.info = dataclasses.replace(info, concurrent=not inline, context_size=decoder.n_ctx)
        self.protected = list(protected)
        self.scheduler = Scheduler(decoder, vocab.is_end, limits, piece=vocab.piece, inline=inline)
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

    def session(
        self, *, lookup: Lookup | None = None, store: PrefixStateStore | None = None
    ) -> HostedLlamaBackend:
        """A new conversation on this host (its own sequence). ``lookup``: its prompt-lookup
        drafter (``None``: plain decoding); ``store``: the warm start of its system turn.

        Raises:
            BackendError: the host is closed, or ``max_sessions`` are open.
        """
        if self._closed:
            raise BackendError("this model host has been closed; open a new one")
        return HostedLlamaBackend(self, lookup=lookup, store=store)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (its sessions then refuse work)."""
        return self._closed

    def close(self) -> None:
        """Stop the scheduler and free the context (and the model, when the host loaded it).
        Generations still running end with a :class:`BackendError`; the sessions' other
        methods raise it too, and closing them is a no-op. Idempotent."""
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


def _opens_thinking(template: str) -> bool:
    from models.qwq import chat_template as templates

    try:
        return templates.opens_thinking(template)
    except templates.TemplateError:
        return False


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _decoder(llm: Llama, n_ctx: int, n_seq_max: int, n_batch: int) -> Decoder:
    from models.llama._batch import LlamaDecoder

    return LlamaDecoder(llm, n_ctx=n_ctx, n_seq_max=n_seq_max, n_batch=n_batch)


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
