"""``LlamaOptions``: how to load a GGUF into llama.cpp, in one frozen value.

Every loader of a model file takes one: :class:`models.llama.backend.LlamaCppBackend`,
:meth:`models.llama.host.LlamaHost.open`, :func:`models.llama._load.open_model_file` and
:func:`models.llama._load.resolve_settings` (which turns the ``None`` fields into settings
fitted to the machine). This module is where each option and its default is written once;
it imports neither llama_cpp nor anything heavy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from models.errors import BackendError
from models.llama._fit import KV_CACHE_TYPES
from models.llama._lookup import LookupSettings

DEFAULT_BATCH = 512
"""Prefill batch size (llama.cpp's own default)."""
MIN_CONTEXT = 16
"""The smallest context window a model is loaded with, in tokens."""


@dataclass(frozen=True, slots=True)
class LlamaOptions:
    """The options of an embedded llama.cpp model; ``None`` fields are decided at load time
    by :func:`models.llama._load.resolve_settings` (fitted to the machine and the file).

    Validation happens here, when the options are made, so a bad value is refused before a
    multi-gigabyte file is read: a count that is not an int, a context below
    :data:`MIN_CONTEXT`, ``n_gpu_layers`` below -1, a batch or thread count below 1 and
    unknown KV-cache types raise :class:`~models.errors.BackendError`. What depends on the
    file (a context the model cannot take, a quantized V cache without flash attention) is
    refused at load time.

    Attributes:
        n_ctx: context window in tokens (default: the catalog's recommended context as far as
            it fits, else 8192, or the model's training context when smaller; QwQ above
            32,768 switches on YaRN).
        n_gpu_layers: layers to offload (default: all when the build supports GPU offload
            and they fit, else as many as fit; ``-1``: all).
        n_threads: decode threads (default: the machine's physical cores).
        n_threads_batch: prompt-evaluation threads (default: the larger of ``n_threads`` and
            the CPUs this process may use). On a machine shared with other busy work, 1 for
            both is often much faster for a small model: llama.cpp's threads wait on each
            other by spinning.
        n_batch: prefill batch size (capped at the context size).
        flash_attn: flash attention (default: on when offloading to a GPU).
        type_k: KV-cache type of K (``"f16"`` default, ``"q8_0"``, ``"q4_0"``…).
        type_v: KV-cache type of V (quantized types need flash attention).
        chat_template: overrides the template stored in the GGUF.
        lookup: prompt-lookup decoding (:mod:`models.llama._lookup`): ``True`` drafts where
            it measures a gain, ``False`` never drafts, a
            :class:`~models.llama._lookup.LookupSettings` tunes it. A model host has no
            prompt lookup and ignores it.
        state_dir: folder for warm-start states of the system turn (``None``: no warm
            start; :class:`models.options.BackendOptions` fills in the user cache). A model
            host ignores it.
    """

    n_ctx: int | None = None
    n_gpu_layers: int | None = None
    n_threads: int | None = None
    n_threads_batch: int | None = None
    n_batch: int = DEFAULT_BATCH
    flash_attn: bool | None = None
    type_k: str | None = None
    type_v: str | None = None
    chat_template: str | None = None
    lookup: bool | LookupSettings = True
    state_dir: str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        """Refuse values that can never work.

        Raises:
            BackendError: a count that is not an int, a context below
                :data:`MIN_CONTEXT` tokens, ``n_gpu_layers`` below -1, a batch or thread
                count below 1, or a KV-cache type that is not one llama.cpp knows.
        """
        for name in ("n_ctx", "n_gpu_layers", "n_threads", "n_threads_batch", "n_batch"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                kind = "an int" if name == "n_batch" else "an int or None"
                raise BackendError(f"{name} must be {kind}, got {value!r}")
        if self.n_ctx is not None and self.n_ctx < MIN_CONTEXT:
            raise BackendError(
                f"n_ctx must be at least {MIN_CONTEXT} tokens (or None: fitted to the machine), "
                f"got {self.n_ctx!r}"
            )
        if self.n_gpu_layers is not None and self.n_gpu_layers < -1:
            raise BackendError(
                f"n_gpu_layers must be -1 (all), 0 or more (or None: as many as fit), "
                f"got {self.n_gpu_layers!r}"
            )
        if self.n_batch < 1:
            raise BackendError(f"n_batch must be at least 1, got {self.n_batch!r}")
        if self.n_threads is not None and self.n_threads < 1:
            raise BackendError(f"the thread count must be at least 1, not {self.n_threads!r}")
        if self.n_threads_batch is not None and self.n_threads_batch < 1:
            raise BackendError(
                f"the batch thread count must be at least 1, not {self.n_threads_batch!r}"
            )
        for option in ("type_k", "type_v"):
            name = getattr(self, option)
            if name is not None and not isinstance(name, str):
                raise BackendError(
                    f"{option} must be a KV-cache type name ({', '.join(KV_CACHE_TYPES)}), "
                    f"got {name!r}"
                )
            if name is not None and name.lower() not in KV_CACHE_TYPES:
                raise BackendError(
                    f"unknown KV-cache type {name.lower()!r} for {option}; use one of "
                    f"{', '.join(KV_CACHE_TYPES)}"
                )

    @property
    def state_path(self) -> Path | None:
        """:attr:`state_dir` as a path (``None``: no warm start)."""
        return Path(self.state_dir) if self.state_dir is not None else None
