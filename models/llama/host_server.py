"""A model host behind an OpenAI-compatible completions endpoint, for other processes.

``qwq-agent web`` runs one chat process per browser tab; with a model host behind this
server, every tab's agent uses one loaded model (the tabs talk to it through
:class:`models.openai.backend.OpenAIBackend` in ``"completions"`` mode) instead of loading a copy
each. Each request carries the whole prompt, as OpenAI's API wants; the server keeps each
conversation's KV cache by routing the request to the idle session whose context shares the
longest token prefix with the prompt (a new session when the request does not continue one,
:meth:`HostServer.take_session`), so a tab's next step evaluates only its new tokens, even while
other tabs' sequences come and go (parked sequences are swapped out and back,
:mod:`models.llama._host_scheduler`).

Endpoints: ``POST /v1/completions`` (streamed as server-sent events, or one JSON body, with
``usage`` and llama.cpp-style ``timings``), ``GET /v1/models`` and llama.cpp's ``GET /props``
(the chat template and the context size, which the client renders and checks with). Sampling fields: those
:meth:`models.openai.backend.OpenAIBackend` sends (``top_k``, ``min_p``, ``repeat_penalty``,
``grammar`` included). It binds to loopback only, and with ``api_key`` every request needs
``Authorization: Bearer KEY`` (compared in constant time).
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Generator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from models.base import BackendError, GenerateOptions, Sampling, Segment, StopReason
from models.llama._tokens import common_prefix
from models.llama.host import HostedLlamaBackend, LlamaHost

MAX_BODY = 16 << 20
"""The largest request body accepted (a 128k-token prompt is well under it)."""

MIN_SHARE = 0.5
"""A request continues an idle session's conversation when it shares at least this share of
that session's context (the template drops the last turn's reasoning between user turns, so
a continuation may not share all of it)."""

_FINISH: dict[StopReason, str] = {
    "end_of_turn": "stop",
    "stopped": "stop",
    "interrupted": "stop",
    "length": "length",
    "context_full": "length",
}


class HostServer:
    """Serves ``host`` on ``127.0.0.1:port`` (``0``: a free port) from a thread.

    Args:
        host: the model host (closed by :meth:`close` only with ``owns_host``).
        port: the TCP port on loopback.
        api_key: the bearer token requests must carry (``None``: none needed).
        owns_host: close the host with the server.
    """

    def __init__(
        self,
        host: LlamaHost,
        *,
        port: int = 0,
        api_key: str | None = None,
        owns_host: bool = False,
    ) -> None:
        self.host = host
        self.api_key = api_key
        self._owns_host = owns_host
        self._idle: list[HostedLlamaBackend] = []
        self._lock = threading.Lock()
        server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        server.daemon_threads = True
        self._server = server
        self.port = int(server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/v1"
        """The API root to give :class:`~models.openai.backend.OpenAIBackend`."""
        self._thread = threading.Thread(target=server.serve_forever, name="qwq-host-http")
        self._thread.daemon = True
        self._thread.start()

    def take_session(self, tokens: list[int]) -> HostedLlamaBackend:
        """The idle session whose context shares the most tokens with ``tokens``, when that is
        at least :data:`MIN_SHARE` of its context (the request continues that conversation);
        otherwise a new session while the host has room, so that a new conversation, which
        shares only a system turn, does not take over another's KV. Taken until
        :meth:`give_back`.

        Raises:
            BackendError: every session is busy and the host is at ``max_sessions``.
        """
        with self._lock:
            best: HostedLlamaBackend | None = None
            best_n = 0
            for session in self._idle:
                n = common_prefix(session.context_tokens, tokens)
                if best is None or n > best_n:
                    best, best_n = session, n
            if best is None or best_n < MIN_SHARE * len(best.context_tokens):
                try:
                    return self.host.session()
                except BackendError:
                    if best is None:
                        raise
            self._idle.remove(best)
            return best

    def give_back(self, session: HostedLlamaBackend) -> None:
        """The request on ``session`` is over; it may serve the next one."""
        with self._lock:
            self._idle.append(session)

    def close(self) -> None:
        """Stop serving; close the sessions (and the host with ``owns_host``). Idempotent."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for session in self._idle:
                session.close()
            self._idle.clear()
        if self._owns_host:
            self.host.close()

    def complete(self, body: dict[str, Any]) -> Generator[dict[str, Any], None, None]:
        """The completion events of one request (OpenAI's ``text_completion`` chunks, the
        last with ``finish_reason``, ``usage`` and ``timings``).

        Raises:
            ValueError: the request is malformed (the message says which field).
            BackendError: the model failed, or no session is free.
        """
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise ValueError("'prompt' must be a non-empty string")
        options = _options(body)
        context = [Segment(prompt, "template")]
        probe = self.host.vocab.tokenize(prompt, special=True, first=True)
        session = self.take_session(probe)
        before = session.usage
        reason: StopReason = "end_of_turn"
        try:
            run = session.generate(context, options)
            try:
                while True:
                    try:
                        text = next(run)
                    except StopIteration as stop:
                        reason = stop.value
                        break
                    yield {"object": "text_completion", "choices": [_choice(text, None)]}
            finally:
                run.close()
        finally:
            self.give_back(session)
        used = session.usage.since(before)
        prompt_tokens = used.prompt_tokens_evaluated + used.prompt_tokens_cached
        yield {
            "object": "text_completion",
            "choices": [_choice("", _FINISH[reason])],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": used.completion_tokens,
                "total_tokens": prompt_tokens + used.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": used.prompt_tokens_cached},
            },
            "timings": {
                "prompt_n": used.prompt_tokens_evaluated,
                "cache_n": used.prompt_tokens_cached,
                "predicted_n": used.completion_tokens,
                "prompt_ms": round(used.prefill_seconds * 1000, 3),
                "predicted_ms": round(used.decode_seconds * 1000, 3),
            },
        }


def _choice(text: str, finish: str | None) -> dict[str, Any]:
    return {"index": 0, "text": text, "finish_reason": finish}


def _options(body: dict[str, Any]) -> GenerateOptions:
    """The generation options of a request body (missing samplers: the model card's)."""
    defaults = Sampling()
    fields: dict[str, Any] = {}
    for name, kind in (
        ("temperature", float),
        ("top_p", float),
        ("top_k", int),
        ("min_p", float),
        ("repeat_penalty", float),
        ("presence_penalty", float),
        ("frequency_penalty", float),
        ("seed", int),
    ):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name!r} must be a number, not {value!r}")
        fields[name] = kind(value)
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 0):
        raise ValueError(f"'max_tokens' must be a whole number ≥ 0, not {max_tokens!r}")
    stop = body.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise ValueError(f"'stop' must be a string or a list of strings, not {stop!r}")
    grammar = body.get("grammar")
    if grammar is not None and not isinstance(grammar, str):
        raise ValueError("'grammar' must be a GBNF string")
    return GenerateOptions(
        sampling=Sampling(**{**_sampling_dict(defaults), **fields}),
        max_tokens=max_tokens,
        grammar=grammar,
        stop=tuple(stop),
    )


def _sampling_dict(sampling: Sampling) -> dict[str, Any]:
    return {name: getattr(sampling, name) for name in Sampling.__slots__}  # type: ignore[attr-defined]


def _handler(server: HostServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _authorised(self) -> bool:
            if server.api_key is None:
                return True
            given = self.headers.get("Authorization", "")
            return hmac.compare_digest(given.encode(), f"Bearer {server.api_key}".encode())

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._json(status, {"error": {"message": message, "code": status}})

        def do_GET(self) -> None:
            if not self._authorised():
                return self._error(401, "a bearer token is needed")
            info = server.host.info
            if self.path.rstrip("/") == "/props":  # llama.cpp's: the template and context
                props = {"chat_template": info.chat_template or "", "n_ctx": info.context_size}
                return self._json(200, props)
            if self.path.rstrip("/") != "/v1/models":
                return self._error(404, f"no such endpoint {self.path!r}; try /v1/models")
            self._json(200, {"object": "list", "data": [{"id": info.name}]})

        def do_POST(self) -> None:
            if not self._authorised():
                return self._error(401, "a bearer token is needed")
            if self.path.rstrip("/") != "/v1/completions":
                return self._error(404, f"no such endpoint {self.path!r}; use /v1/completions")
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                return self._error(413, f"the body must be 1 to {MAX_BODY} bytes, not {length}")
            try:
                body = json.loads(self.rfile.read(length))
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
                events = server.complete(body)
                first = next(events)  # fails before any byte is sent
            except (ValueError, BackendError) as exc:
                return self._error(400, str(exc))
            if not body.get("stream"):
                last = first
                text = first["choices"][0]["text"]
                for event in events:
                    text += event["choices"][0]["text"]
                    last = event
                return self._json(200, {**last, "choices": [_choice(text, _finish(last))]})
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                for event in _chain(first, events):
                    self.wfile.write(b"data: " + json.dumps(event).encode("utf-8") + b"\n\n")
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the client went away
                events.close()
            except BackendError as exc:
                error = {"error": {"message": str(exc)}}
                self.wfile.write(b"data: " + json.dumps(error).encode("utf-8") + b"\n\n")

    return Handler


def _finish(event: dict[str, Any]) -> str | None:
    finish = event["choices"][0].get("finish_reason")
    return finish if isinstance(finish, str) else None


def _chain(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    yield from rest
