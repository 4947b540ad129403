"""``ServerOptions``: how to talk to an OpenAI-compatible server, in one frozen value.

:class:`models.openai.backend.OpenAIBackend` takes one; a config file's ``[endpoints.NAME]``
(:meth:`agent.config.EndpointConfig.server_options`) and the command line's server flags
make one. This module is where each option and its default is written once; it imports
nothing heavy (httpx is imported by the backend).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from models.errors import BackendError

if TYPE_CHECKING:
    from models.openai._http import RetryPolicy

Mode = Literal["completions", "chat"]
DEFAULT_STOP = ("<|im_end|>", "<|endoftext|>")
"""End-of-turn strings of ChatML models (QwQ, Qwen, SmolLM2)."""
MODES: tuple[Mode, ...] = ("completions", "chat")


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """The options of an OpenAI-compatible server backend (see :mod:`models.openai.backend`).

    Validation happens here: an unknown mode, a timeout that is not a finite positive
    number, headers that are not text or hold a line break, a ``context_size`` below 1 or a
    stop that is not a string raise :class:`~models.errors.BackendError`. ``headers`` is
    copied, so the caller's mapping may change afterwards; a single string ``stop`` is one
    stop.

    Attributes:
        model_name: the ``model`` sent with each request (default: the first model the
            server lists at ``GET /models``).
        mode: ``"completions"`` (the prompt this runtime renders) or ``"chat"`` (messages).
        api_key_env: the name of the environment variable holding the API key (sent as a
            bearer token); ``None``: no key. The key itself is read when the backend is made.
        headers: extra headers for every request.
        strict: send only the request fields OpenAI defines (no
            :data:`models.openai.backend.EXTENDED_FIELDS`), for servers that refuse the
            others; without it the backend turns strict by itself when the server refuses
            one of them by name.
        chat_template: the model's Jinja chat template, for rendering prompts in completions
            mode (default: the server's ``/props`` ``chat_template`` when it has one, else
            the built-in QwQ template). In chat mode the server renders; this only tells
            whether its generation prompt opens a thinking block.
        opens_thinking: overrides what the template says about an open ``<think>``.
        context_size: the window in tokens (default: ``/props`` ``n_ctx``, else unknown).
        supports_grammar: whether to send ``GenerateOptions.grammar`` (default: in
            completions mode yes, in chat mode no).
        stop: end-of-turn strings (sent to the server, never yielded).
        connect_timeout: seconds to open a connection.
        read_timeout: seconds without a byte from the server (first byte included) before
            giving up.
        retry: the retry policy (``None``: :class:`~models.openai._http.RetryPolicy`'s
            defaults).
        trust_env: honour proxy environment variables (httpx's ``trust_env``).
    """

    model_name: str | None = None
    mode: Mode = "completions"
    api_key_env: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    strict: bool = False
    chat_template: str | None = None
    opens_thinking: bool | None = None
    context_size: int | None = None
    supports_grammar: bool | None = None
    stop: Sequence[str] = DEFAULT_STOP
    connect_timeout: float = 10.0
    read_timeout: float = 300.0
    retry: RetryPolicy | None = None
    trust_env: bool = True

    def __post_init__(self) -> None:
        """Copy ``headers`` and ``stop``; refuse values that can never work.

        Raises:
            BackendError: an unknown mode; a timeout that is not a finite number of seconds
                above 0; headers that are not a mapping of text to text, or a name or value
                with CR, LF or NUL (they would split the request); a ``context_size`` below
                1; a stop that is not a string.
        """
        if self.mode not in MODES:
            raise BackendError(f"unknown server mode {self.mode!r}; use 'completions' or 'chat'")
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise BackendError(f"{name} must be a number of seconds, got {value!r}")
            if not value > 0:
                raise BackendError(f"{name} must be more than 0 seconds, got {value!r}")
            if math.isinf(value):
                raise BackendError(f"{name} must be a finite number of seconds, got {value!r}")
        if self.context_size is not None and self.context_size < 1:
            raise BackendError(
                f"context_size must be at least 1 token (or None: the server's), "
                f"got {self.context_size!r}"
            )
        object.__setattr__(self, "headers", _checked_headers(self.headers))
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        if not all(isinstance(s, str) for s in stop):
            raise BackendError(f"stop must be strings, got {self.stop!r}")
        object.__setattr__(self, "stop", stop)


_BREAKS = ("\r", "\n", "\0")


def _checked_headers(headers: object) -> dict[str, str]:
    """A copy of ``headers``, each name and value text without a line break.

    Raises:
        BackendError: not a mapping, a name or value that is not text, or one with CR, LF
            or NUL; the message names the header, never its value (it may be secret).
    """
    if not isinstance(headers, Mapping):
        raise BackendError(f"headers must be a mapping of names to values, got {headers!r}")
    copy: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            wrong = value if isinstance(name, str) else name  # its type only: it may be secret
            raise BackendError(f"header {name!r} must be text, got {type(wrong).__name__}")
        if any(c in name or c in value for c in _BREAKS):
            raise BackendError(
                f"header {name!r}: a name or value with CR, LF or NUL would split the request; "
                "remove the line break"
            )
        copy[name] = value
    return copy
