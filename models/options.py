"""``BackendOptions``: everything :func:`models.catalog.open_backend` needs besides the spec.

One frozen value groups the options of each kind of backend, so that a spec can name any of
them and each backend gets its own part:

* :attr:`BackendOptions.llama` (:class:`~models.llama.options.LlamaOptions`) for a catalog
  name or a ``.gguf`` path, and for a model host (:func:`models.llama.host.open_host`);
* :attr:`BackendOptions.server` (:class:`~models.openai.options.ServerOptions`) for an
  ``http(s)://`` spec;
* the hub options (:attr:`~BackendOptions.download`, :attr:`~BackendOptions.cache_dir`,
  :attr:`~BackendOptions.endpoint`) for a catalog model not downloaded yet, and
  :attr:`~BackendOptions.warm_start`;
* a ``scripted:`` spec takes none.

:meth:`BackendOptions.from_mapping` reads the flat names of ``Agent(backend_options={...})``
(``n_ctx``, ``api_mode``, ``api_strict``…, see :data:`FLAT_NAMES`); :meth:`~BackendOptions.merged`
lays more of them over a value, which is how the config file, a task file and the command
line each add theirs.

The rule for what they raise: a name that is not an option (or options that are not a
mapping) is the caller's input, an :class:`~models.errors.InputError` (``agent.InputError``,
a ``ValueError``) whose message lists the known names and suggests the closest; a value an
option refuses is a :class:`~models.errors.BackendError`, raised by the option's own check
in :class:`~models.llama.options.LlamaOptions` or :class:`~models.openai.options.ServerOptions`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from models.errors import InputError
from models.llama.options import LlamaOptions
from models.openai.options import ServerOptions

_LLAMA = (
    "n_gpu_layers",
    "n_threads",
    "n_threads_batch",
    "n_batch",
    "flash_attn",
    "type_k",
    "type_v",
    "lookup",
    "state_dir",
)
_SERVER = {
    "model_name": "model_name",
    "api_mode": "mode",
    "api_key_env": "api_key_env",
    "headers": "headers",
    "api_strict": "strict",
}
_BOTH = {"n_ctx": ("n_ctx", "context_size"), "chat_template": ("chat_template", "chat_template")}
_OWN = ("warm_start", "download", "cache_dir", "endpoint")

FLAT_NAMES: tuple[str, ...] = tuple(sorted({*_LLAMA, *_SERVER, *_BOTH, *_OWN}))
"""The flat option names :meth:`BackendOptions.from_mapping` knows: the llama.cpp options
(``n_ctx``, ``n_gpu_layers``, ``n_threads``, ``n_threads_batch``, ``n_batch``,
``flash_attn``, ``type_k``, ``type_v``, ``chat_template``, ``lookup``, ``state_dir``), the
server options (``model_name``, ``api_mode``, ``api_key_env``, ``headers``, ``api_strict``;
``n_ctx`` and ``chat_template`` apply to a server too) and the hub's (``warm_start``,
``download``, ``cache_dir``, ``endpoint``)."""


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """The options of :func:`models.catalog.open_backend`, one part per kind of backend.

    Attributes:
        llama: for a catalog model or a ``.gguf`` file.
        server: for an ``http(s)://`` spec.
        warm_start: save and reuse the KV state of the system turn on disk; when
            ``llama.state_dir`` is ``None`` the states go to the user cache (``kv-states``).
            ``False``: no warm start, whatever ``llama.state_dir`` says.
        download: fetch a missing hub model (else fail with instructions).
        cache_dir: the huggingface_hub cache (default: its own, ``HF_HUB_CACHE``).
        endpoint: the hub URL (default: huggingface_hub's, ``HF_ENDPOINT``).
    """

    llama: LlamaOptions = field(default_factory=LlamaOptions)
    server: ServerOptions = field(default_factory=ServerOptions)
    warm_start: bool = True
    download: bool = True
    cache_dir: str | os.PathLike[str] | None = None
    endpoint: str | None = None

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> BackendOptions:
        """The options named by flat keys (:data:`FLAT_NAMES`); the others keep their defaults.

        Raises:
            models.errors.InputError: not a mapping, or a key that is not an option (the
                message lists the known ones and suggests the closest); a ``ValueError``.
            models.errors.BackendError: a value the option refuses (a thread count of 0…).
        """
        return cls().merged(options)

    def merged(self, options: Mapping[str, Any]) -> BackendOptions:
        """These options with the flat keys of ``options`` (:data:`FLAT_NAMES`) laid over them.

        Raises:
            models.errors.InputError: not a mapping, or a key that is not an option (the
                message lists the known ones and suggests the closest); a ``ValueError``.
            models.errors.BackendError: a value the option refuses (its type or range).
        """
        if not isinstance(options, Mapping):
            raise InputError(
                f"backend_options must be a mapping of option names to values, got {options!r}; "
                f"known names: {', '.join(FLAT_NAMES)}"
            )
        unknown = sorted(set(options) - set(FLAT_NAMES), key=str)
        if unknown:
            raise InputError(
                f"unknown backend_options {unknown}; known: {', '.join(FLAT_NAMES)}"
                + _did_you_mean(unknown)
            )
        llama: dict[str, Any] = {k: v for k, v in options.items() if k in _LLAMA}
        server: dict[str, Any] = {_SERVER[k]: v for k, v in options.items() if k in _SERVER}
        for key, (llama_name, server_name) in _BOTH.items():
            if key in options:
                llama[llama_name] = options[key]
                server[server_name] = options[key]
        own = {k: v for k, v in options.items() if k in _OWN}
        return dataclasses.replace(
            self,
            llama=dataclasses.replace(self.llama, **llama),
            server=dataclasses.replace(self.server, **server),
            **own,
        )

    def hub(self) -> dict[str, Any]:
        """The keyword arguments of :func:`models.catalog.model_path` (``download``,
        ``cache_dir``, ``endpoint``)."""
        return {"download": self.download, "cache_dir": self.cache_dir, "endpoint": self.endpoint}


def _did_you_mean(unknown: list[str]) -> str:
    """``"; did you mean 'n_ctx'?"`` for the unknown names that are close to a known one
    (a typo), else ``""``."""
    close = {
        name: match[0]
        for name in unknown
        if isinstance(name, str) and (match := difflib.get_close_matches(name, FLAT_NAMES, 1))
    }
    if not close:
        return ""
    if len(unknown) == 1:
        return f"; did you mean {next(iter(close.values()))!r}?"
    return "; did you mean " + ", ".join(f"{m!r} for {n!r}" for n, m in close.items()) + "?"
