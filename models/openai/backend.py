"""The server backend: any OpenAI-compatible endpoint, streamed over httpx.

llama.cpp's ``llama-server``, llama-cpp-python's server, vLLM, SGLang and hosted APIs speak
the same protocol; one server (a GPU box, or a cluster behind one URL) serves many agents, so
:attr:`~models.base.BackendInfo.concurrent` is true and :meth:`OpenAIBackend.generate` may be
called from several threads at once. Two modes:

* ``"completions"`` (the default; llama.cpp's servers, vLLM): ``POST /completions`` with the
  prompt this runtime rendered, i.e. the concatenation of the context's segments, so both
  placements and interleaved calls inside the thinking work exactly as in process. The
  server's prefix cache does the reuse (``cache_prompt: true`` for llama.cpp; vLLM and SGLang
  cache prefixes on their own). Every sampler is sent; ``GenerateOptions.grammar`` goes as
  ``grammar`` (llama.cpp's GBNF). A stream cut in the middle is resumed: the text received so
  far is appended to the prompt and generation goes on (bounded; not with a grammar, whose
  state cannot be resumed).
* ``"chat"`` (servers that only offer chat, e.g. hosted QwQ): ``POST /chat/completions`` with
  the messages and tools read back out of the ChatML context (see
  :mod:`models.openai._chat`). ``reasoning_content`` deltas become the thinking, closed by
  ``</think>``; tool calls the server parsed are written back as ``<tool_call>`` blocks, so
  the loop's parser handles both kinds of server. The "template" placement only: a context
  that continues inside a turn raises :class:`~models.base.BackendError`.

Strict mode: beyond OpenAI's fields, requests carry the samplers QwQ wants and llama.cpp,
vLLM and SGLang read (:data:`EXTENDED_FIELDS`: ``top_k``, ``min_p``, ``repeat_penalty`` and
vLLM's ``repetition_penalty``, ``cache_prompt``). ``ServerOptions(strict=True)`` (``api_strict``,
``--api-strict``, ``strict = true`` in a config endpoint) leaves them out, for servers that
refuse what OpenAI does not define. A server that answers HTTP 400 or 422 naming one of them
switches the backend to strict by itself: the request is sent again once without them, and
every later one goes strict for the backend's lifetime (logged once, at INFO, on the
``models.openai.backend`` logger).

Contract details (see :mod:`models.base` for the general one):

* The HTTP request is made on the first ``next()``, not by ``generate()``; closing the
  generator closes the response, which tells the server to stop generating.
* End-of-turn strings (``stop``) are sent to the server and never yielded;
  ``GenerateOptions.stop`` strings are matched here, on the text as it streams, and are
  yielded (reason ``"stopped"``), as the other backends do.
* ``finish_reason`` ``"stop"`` is ``"end_of_turn"``; ``"length"`` is ``"length"`` when the
  call had a ``max_tokens``, else ``"context_full"``.
* Errors are :class:`~models.base.BackendError` (after the retries of
  :class:`~models.openai.backend.RetryPolicy`) or :class:`~models.base.ContextOverflowError` when the
  server says the prompt does not fit. The backend stays usable after either.

Counters: from the server's ``usage`` (``prompt_tokens``, ``completion_tokens``,
``prompt_tokens_details.cached_tokens``) and llama.cpp's ``timings`` (``prompt_n``,
``cache_n``, ``predicted_n``, ``prompt_ms``, ``predicted_ms``) or ``tokens_cached`` when
present; otherwise estimated (one token per 4 characters of prompt, one per streamed chunk).
As in the embedded backend, ``prompt_tokens_cached`` counts reuse only when a call does not
continue a context this backend just produced (those tokens were counted when evaluated).

The API key is read from the environment variable named by ``api_key_env`` when the backend
is created; it is never stored anywhere but the HTTP client's headers, and ``repr`` omits it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any

import httpx

from models import redact
from models.base import (
    BackendError,
    BackendInfo,
    GenerateOptions,
    Sampling,
    Segment,
    StopReason,
    Usage,
)
from models.openai._chat import ChatFormatError, ChatStreamAssembler, chatml_to_chat
from models.openai._http import (
    HttpSession,
    Interrupted,
    RequestRefused,
    RetryPolicy,
    StreamCut,
    StreamState,
    pause,
)
from models.openai._support import (
    StopWatch,
    cut_detail,
    first_choice,
    n_ctx,
    opens_thinking_of,
    short_model,
    usable_template,
)
from models.openai._usage import Attempt, UsageMeter
from models.openai.options import DEFAULT_STOP, Mode, ServerOptions
from models.qwq import chat_template as templates

__all__ = [
    "DEFAULT_STOP",
    "EXTENDED_FIELDS",
    "Mode",
    "OpenAIBackend",
    "RetryPolicy",
    "ServerOptions",
]

log = logging.getLogger(__name__)

EXTENDED_FIELDS = ("top_k", "min_p", "repeat_penalty", "repetition_penalty", "cache_prompt")
"""The request fields beyond OpenAI's API sent with ``extended_sampling`` (strict mode: none)."""
_NAMES_EXTENDED = re.compile(r"\b(?:" + "|".join(EXTENDED_FIELDS) + r")\b")


class OpenAIBackend:
    """A :class:`~models.base.Backend` over an OpenAI-compatible server (module docstring).

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8080/v1`` (a bare ``http://host:port``
            gets ``/v1``).
        options: how to talk to it (:class:`~models.openai.options.ServerOptions`: model,
            mode, key, headers, strict mode, template, timeouts, retries); default: its
            defaults (completions mode, the server's first model, no key).
        default_sampling: the model's recommended sampling (default: QwQ's).
        transport: the httpx transport that carries the requests (default: httpx's own, over
            the network). Tests pass an ``httpx.MockTransport`` to script the server; a
            caller can pass one with its own TLS, proxy or retry settings.
        discover: ask the server for its models and ``/props`` now (else only on use).
        name: a display name (default: ``MODEL @ URL``).

    Raises:
        BackendError: an invalid URL, an API key variable that is not set, or a server that
            cannot be reached when the model must be discovered.
    """

    def __init__(
        self,
        base_url: str,
        options: ServerOptions | None = None,
        *,
        default_sampling: Sampling | None = None,
        transport: httpx.BaseTransport | None = None,
        discover: bool = True,
        name: str | None = None,
    ) -> None:
        options = options or ServerOptions()
        mode, headers, api_key_env = options.mode, options.headers, options.api_key_env
        redact.register(headers=headers, url=base_url)
        url = base_url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise BackendError(
                f"the server URL {redact.redact_url(base_url)!r} must start with http:// or https://"
            )
        if url.count("/") == 2:  # no path at all
            url += "/v1"
        api_key = None
        if api_key_env:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise BackendError(
                    f"the environment variable {api_key_env!r} that should hold the API key is "
                    "not set (or empty); export it, or drop --api-key-env for a server without keys"
                )
            redact.register(api_key=api_key)
        self.base_url = url
        self.mode: Mode = mode
        self.extended_sampling = not options.strict
        self._strict_lock = threading.Lock()
        self.stop = tuple(options.stop)
        self._http = HttpSession(
            url,
            headers=dict(headers),
            api_key=api_key,
            api_key_env=api_key_env,
            connect_timeout=options.connect_timeout,
            read_timeout=options.read_timeout,
            retry=options.retry or RetryPolicy(),
            trust_env=options.trust_env,
            transport=transport,
        )
        self._meter = UsageMeter()
        self._closed = False
        try:
            with redact.scrubbed():
                props = self._props() if discover else {}
                self.model_name = options.model_name or (
                    self.server_models()[0] if discover else ""
                )
        except BaseException:
            self._http.close()
            raise
        server_template = usable_template(props.get("chat_template"))
        template = options.chat_template or server_template
        probe = template or templates.qwq_template()
        opens_thinking = options.opens_thinking
        if opens_thinking is None:
            opens_thinking = opens_thinking_of(probe)
        self._info = BackendInfo(
            name=redact.redact(name)
            if name
            else f"{short_model(self.model_name)} @ {self.shown_url}",
            chat_template=template if mode == "completions" else None,
            opens_thinking=opens_thinking,
            context_size=options.context_size or n_ctx(props),
            supports_grammar=(mode == "completions")
            if options.supports_grammar is None
            else options.supports_grammar,
            template_supports_tools=(
                templates.template_supports_tools(probe) if mode == "completions" else True
            ),
            concurrent=True,
            default_sampling=default_sampling or Sampling(),
            continues_in_turn=mode == "completions",
        )

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend({self.shown_url!r}, model_name={self.model_name!r}, mode={self.mode!r})"
        )

    @property
    def shown_url(self) -> str:
        """:attr:`base_url` fit to show: no ``user:pass@``, no query values, no secret."""
        return redact.redact_url(self.base_url)

    # -- the Backend protocol -------------------------------------------------------------

    @property
    def info(self) -> BackendInfo:
        return self._info

    @property
    def usage(self) -> Usage:
        """A snapshot of the cumulative counters (all callers of this backend together)."""
        return self._meter.snapshot()

    def generate(
        self, context: Sequence[Segment], options: GenerateOptions
    ) -> Generator[str, None, StopReason]:
        """Continue ``context``; see the module docstring and :mod:`models.base`.

        Raises (at call time): ``ValueError`` for an empty context; BackendError when the
        backend is closed, or (chat mode) when the context cannot be expressed as messages.
        """
        if self._closed:
            raise BackendError("the server backend is closed; create a new one")
        if not context:
            raise ValueError("generate() needs a non-empty context")
        text = "".join(segment.text for segment in context)
        if self.mode == "completions":
            return _scrubbed(self._completions(text, options))
        try:
            request = chatml_to_chat(text)
        except ChatFormatError as exc:
            raise BackendError(str(exc)) from exc
        body: dict[str, Any] = {"messages": request.messages}
        if request.tools:
            body["tools"] = request.tools
        return _scrubbed(self._chat(text, body, options))

    def close(self) -> None:
        """Close the connections. Idempotent."""
        if not self._closed:
            self._closed = True
            self._http.close()

    # -- discovery ------------------------------------------------------------------------

    def server_models(self) -> list[str]:
        """The model ids the server lists (``GET /models``).

        Raises:
            BackendError: the server cannot be reached or lists no model.
        """
        with redact.scrubbed():
            listing = self._http.get_json(f"{self.base_url}/models")
        data = listing.get("data") if isinstance(listing, dict) else None
        ids = [m["id"] for m in data or () if isinstance(m, dict) and isinstance(m.get("id"), str)]
        if not ids:
            raise BackendError(
                f"the server at {self.shown_url} lists no model at /models; pass the model name "
                "(--model-name)"
            )
        return ids

    def _props(self) -> dict[str, Any]:
        """llama.cpp's ``/props`` (server root), or ``{}`` when the server has none."""
        root = self.base_url.removesuffix("/v1")
        try:
            props = self._http.get_json(f"{root}/props", retries=False, timeout=5.0)
        except BackendError:
            return {}
        return props if isinstance(props, dict) else {}

    # -- requests -------------------------------------------------------------------------

    def _body(self, options: GenerateOptions, max_tokens: int | None) -> dict[str, Any]:
        s = options.sampling
        body: dict[str, Any] = {
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "presence_penalty": s.presence_penalty,
            "frequency_penalty": s.frequency_penalty,
            "stop": list(self.stop),
        }
        if self.model_name:
            body["model"] = self.model_name
        if s.seed is not None:
            body["seed"] = s.seed
        if self.extended_sampling:
            extended = (s.top_k, s.min_p, s.repeat_penalty, s.repeat_penalty, True)
            # repetition_penalty is vLLM's name for repeat_penalty
            body.update(zip(EXTENDED_FIELDS, extended, strict=True))
        if options.grammar is not None and self._info.supports_grammar:
            body["grammar"] = options.grammar
        return body

    def _stream(
        self,
        path: str,
        body: Mapping[str, Any],
        state: StreamState,
        interrupt: Callable[[], bool] | None = None,
    ) -> Generator[dict[str, Any], None, None]:
        url = f"{self.base_url}{path}"
        try:
            response = self._http.send("POST", url, body, interrupt=interrupt)
        except RequestRefused as refused:
            if not self._turn_strict(refused, body):
                raise
            body = {k: v for k, v in body.items() if k not in EXTENDED_FIELDS}
            response = self._http.send("POST", url, body, interrupt=interrupt)
        try:
            yield from self._http.events(response, state)
        finally:
            response.close()

    def _completions(
        self, prompt: str, options: GenerateOptions
    ) -> Generator[str, None, StopReason]:
        produced: list[str] = []
        watch = StopWatch(options.stop)
        cuts = 0
        while True:
            sent = prompt + "".join(produced)
            budget = None if options.max_tokens is None else options.max_tokens - len(produced)
            if budget is not None and budget <= 0:
                return "length"
            attempt = Attempt(sent)
            state = StreamState()
            events = self._stream(
                "/completions",
                {**self._body(options, budget), "prompt": sent},
                state,
                options.interrupt,
            )
            try:
                for event in events:
                    attempt.read(event)
                    choice = first_choice(event)
                    text = choice.get("text")
                    if isinstance(text, str) and text:
                        attempt.add_text(text)
                        produced.append(text)
                        yield text
                        if watch.hit(text):
                            return "stopped"
                    if isinstance(choice.get("finish_reason"), str):
                        attempt.finish = choice["finish_reason"]
                if attempt.finish is not None:
                    return self._reason(attempt.finish, options)
                raise StreamCut(cut_detail(state, attempt))
            except Interrupted:
                return "interrupted"
            except StreamCut as cut:
                cuts += 1
                if cuts > self._http.retry.max_retries or (options.grammar and produced):
                    raise BackendError(
                        f"the server at {self.shown_url} cut the stream {cuts} times ({cut}); "
                        "the conversation is kept: try again, and check the server"
                    ) from cut
                if not self._wait_to_retry(cuts, options):
                    return "interrupted"
            finally:
                events.close()
                self._meter.record(attempt)

    def _chat(
        self, prompt: str, body: dict[str, Any], options: GenerateOptions
    ) -> Generator[str, None, StopReason]:
        watch = StopWatch(options.stop)
        cuts = 0
        while True:
            assembler = ChatStreamAssembler(opens_thinking=self._info.opens_thinking)
            attempt = Attempt(prompt)
            state = StreamState()
            events = self._stream(
                "/chat/completions",
                {**self._body(options, options.max_tokens), **body},
                state,
                options.interrupt,
            )
            try:
                for event in events:
                    attempt.read(event)
                    choice = first_choice(event)
                    pieces = assembler.delta(choice.get("delta") or choice.get("message") or {})
                    if isinstance(choice.get("finish_reason"), str):
                        attempt.finish = choice["finish_reason"]
                        pieces += assembler.finish()
                    for piece in pieces:
                        attempt.add_text(piece)
                        yield piece
                        if watch.hit(piece):
                            return "stopped"
                if attempt.finish is not None:
                    return self._reason(attempt.finish, options)
                raise StreamCut(cut_detail(state, attempt))
            except Interrupted:
                return "interrupted"
            except StreamCut as cut:
                cuts += 1
                if assembler.produced or cuts > self._http.retry.max_retries:
                    raise BackendError(
                        f"the server at {self.shown_url} cut the stream ({cut}) after "
                        f"{attempt.characters} characters of the answer; the "
                        "conversation is kept: ask again, and check the server"
                    ) from cut
                if not self._wait_to_retry(cuts, options):
                    return "interrupted"
            finally:
                events.close()
                self._meter.record(attempt)

    def _turn_strict(self, refused: RequestRefused, body: Mapping[str, Any]) -> bool:
        """Whether ``refused`` names a field of :data:`EXTENDED_FIELDS` that ``body`` carries:
        then the backend is strict from now on (said once in the log), and the request should
        be sent again without them."""
        named = _NAMES_EXTENDED.search(refused.detail)
        if refused.status not in (400, 422) or named is None or named.group() not in body:
            return False
        with self._strict_lock:
            if self.extended_sampling:
                self.extended_sampling = False
                log.info(
                    "the server at %s refused the field %r (HTTP %d: %s); requests to it leave "
                    "out the samplers OpenAI does not define from now on (strict mode: "
                    "--api-strict, or strict = true in its config endpoint, says so up front)",
                    self.shown_url,
                    named.group(),
                    refused.status,
                    refused.detail[:200],
                )
        return True

    def _wait_to_retry(self, cuts: int, options: GenerateOptions) -> bool:
        """Wait before asking again after the ``cuts``-th cut stream; ``False`` when
        ``options.interrupt`` asked to stop meanwhile."""
        try:
            pause(self._http.retry.delay(cuts - 1, None), options.interrupt)
        except Interrupted:
            return False
        return True

    def _reason(self, finish: str, options: GenerateOptions) -> StopReason:
        if finish == "length":
            return "length" if options.max_tokens is not None else "context_full"
        if finish == "content_filter":
            raise BackendError(
                f"the server at {self.shown_url} stopped the answer with its content filter"
            )
        return "end_of_turn"


def _scrubbed(stream: Generator[str, None, StopReason]) -> Generator[str, None, StopReason]:
    """``stream``, with registered secrets blanked out of any error it raises."""
    with redact.scrubbed():
        return (yield from stream)
