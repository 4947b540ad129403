"""Everything model-side: the backend seam, the backends, the QwQ format, the model catalog.

- :mod:`models.base`: the :class:`~models.base.Backend` protocol every backend implements
  (generate from a context of segments, stop reasons, counters) and :mod:`models.errors`
  its exception tree.
- :mod:`models.llama`: the embedded llama.cpp backend (the default), the shared model host;
  :class:`~models.llama.options.LlamaOptions` how to load a GGUF.
- :mod:`models.openai`: the OpenAI-compatible server backend;
  :class:`~models.openai.options.ServerOptions` how to talk to a server.
- :mod:`models.options`: :class:`~models.options.BackendOptions`, the options of every backend
  in one value (what ``open_backend(spec, options)`` takes).
- :mod:`models.scripted`: the fake that replays a script through the real parser and loop.
- :mod:`models.qwq`: the QwQ format: tags, chat template, observations, grammar.
- :mod:`models.catalog`: model names to backends (``qwq-32b``, a ``.gguf``, a URL,
  ``scripted:FILE``), downloads (:mod:`models._hub`, :mod:`models.progress`);
  :mod:`models.model_info` describes them for ``qwq-agent models``.
- :mod:`models.control_tokens` (untrusted text made inert), :mod:`models.redact` (secrets
  kept out of messages and logs).

Other packages import the names below from here; the backends themselves
(:mod:`models.llama.backend`, :mod:`models.openai.backend`, :mod:`models.llama.host`) are
imported by module, where they are used, so that ``import models`` loads neither llama.cpp
nor httpx. ``models`` never imports ``agent``, ``tools`` or ``tui``.
"""

from __future__ import annotations

from models.base import (
    Backend,
    BackendInfo,
    GenerateOptions,
    Sampling,
    Segment,
    StopReason,
    Usage,
)
from models.catalog import (
    DownloadPlan,
    check_spec,
    default_sampling,
    download_plan,
    model_path,
    open_backend,
    parse_spec,
    recommended_context,
)
from models.control_tokens import Neutraliser, neutraliser
from models.errors import BackendError, ContextOverflowError
from models.llama.options import LlamaOptions
from models.openai.options import ServerOptions
from models.options import BackendOptions
from models.progress import LoadProgress, ProgressCallback
from models.scripted import ScriptedBackend

__all__ = [
    "Backend",
    "BackendError",
    "BackendInfo",
    "BackendOptions",
    "ContextOverflowError",
    "DownloadPlan",
    "GenerateOptions",
    "LlamaOptions",
    "LoadProgress",
    "Neutraliser",
    "ProgressCallback",
    "Sampling",
    "ScriptedBackend",
    "Segment",
    "ServerOptions",
    "StopReason",
    "Usage",
    "check_spec",
    "default_sampling",
    "download_plan",
    "model_path",
    "neutraliser",
    "open_backend",
    "parse_spec",
    "recommended_context",
]
