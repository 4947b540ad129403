"""The HTTP side of :mod:`models.openai.backend`: requests with bounded retries, errors that say what
to do, and the server-sent events of a streamed response as JSON objects.

Retry policy (:class:`RetryPolicy`): a request is retried, at most ``max_retries`` times, when
it could not connect (refused, reset, connect timeout, the connection closed before an
answer), on HTTP 429 and on HTTP 5xx. The wait before retry *n* (0-based) is the server's
``Retry-After`` when it sent one (seconds or an HTTP date), else
``backoff * 2**n`` with ±20 % jitter, capped at ``max_backoff``. A ``Retry-After`` longer than
``max_retry_after`` is not waited for: the error says how long the server asked for.
A server that accepted the request but sends nothing for ``read_timeout`` seconds is not
retried (it may still be working on it): that is a :class:`~models.base.BackendError` at once.

The API key is only ever in the client's default headers: it is not in any message, log or
``repr`` here (errors name the environment variable, never its value). What a server sends
back goes through :func:`models.redact.redact` (the key, every header value and the URL's
``user:pass@`` are registered there), since a server may echo the request.
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from models.base import BackendError, ContextOverflowError
from models.openai.sse import SseError, SseParser
from models.redact import redact, redact_url

MAX_ERROR_BODY = 64 * 1024
"""Bytes of an error response read for its message."""
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to wait before giving up on a server (module docstring)."""

    max_retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if retry_after is not None:
            return retry_after
        base: float = min(self.max_backoff, self.backoff * 2.0**attempt)
        return base * random.uniform(0.8, 1.2)


class StreamCut(Exception):
    """The event stream ended before the server said it was complete."""


class RequestRefused(BackendError):
    """The server refused the request itself with an HTTP status that retrying cannot change
    (4xx other than 429), e.g. a field it does not accept.

    Attributes:
        status: the HTTP status.
        detail: the server's message (credentials blanked).
    """

    def __init__(self, message: str, status: int, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


@dataclass
class StreamState:
    """What a stream told about its own end."""

    done: bool = False
    """``data: [DONE]`` was received."""


class HttpSession:
    """One ``httpx.Client`` (connection reuse) for one server, with the retry policy.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8080/v1``.
        headers: extra headers sent with every request.
        api_key: sent as ``Authorization: Bearer …``; also kept to blank it out of anything
            the server says back (an error that echoes the header), never shown or logged.
        api_key_env: the name of the variable that held the key, for error messages.
        connect_timeout: seconds to open a connection.
        read_timeout: seconds without a byte from the server before giving up.
        retry: the retry policy.
        trust_env: honour proxy variables and ``.netrc`` (httpx's ``trust_env``).
        transport: the httpx transport that carries the requests (default: httpx's own, over
            the network); e.g. ``httpx.MockTransport`` in tests.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        api_key: str | None,
        api_key_env: str | None,
        connect_timeout: float,
        read_timeout: float,
        retry: RetryPolicy,
        trust_env: bool,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.retry = retry
        self.read_timeout = read_timeout
        all_headers = {"Accept": "text/event-stream, application/json", **headers}
        if api_key:
            all_headers["Authorization"] = f"Bearer {api_key}"
        self._secret = api_key or None
        self._client = httpx.Client(
            headers=all_headers,
            timeout=httpx.Timeout(
                connect=connect_timeout, read=read_timeout, write=read_timeout, pool=read_timeout
            ),
            trust_env=trust_env,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def redact(self, text: str) -> str:
        """``text`` with the API key, the header values and the URL's credentials blanked out
        (a server may echo the request)."""
        if self._secret and len(self._secret) >= 4:
            text = text.replace(self._secret, "[API key hidden]")
        return redact(text)

    def get_json(self, url: str, *, retries: bool = True, timeout: float | None = None) -> Any:
        """GET ``url`` (absolute) and decode its JSON body.

        Raises:
            BackendError: the server cannot be reached, errs, or the body is not JSON.
        """
        response = self.send("GET", url, None, retries=retries, timeout=timeout)
        try:
            body = _read_capped(response, 16 * MAX_ERROR_BODY)
        finally:
            response.close()
        try:
            return json.loads(body)
        except ValueError as exc:
            raise BackendError(
                f"the server at {redact_url(url)} did not answer with JSON: {redact(body[:200])!r}"
            ) from exc

    def send(
        self,
        method: str,
        url: str,
        body: Mapping[str, Any] | None,
        *,
        retries: bool = True,
        timeout: float | None = None,
        interrupt: Callable[[], bool] | None = None,
    ) -> httpx.Response:
        """Send a request with the retry policy; return the open (streamed) 2xx response.

        The caller must close the response. ``interrupt`` is polled while waiting to retry.

        Raises:
            Interrupted: ``interrupt()`` became true while waiting to retry.
            BackendError: no 2xx answer, after the retries the policy allows.
            ContextOverflowError: the server says the prompt is longer than its window.
        """
        shown = redact_url(url)
        attempt = 0
        limit = self.retry.max_retries if retries else 0
        while True:
            retry_after: float | None = None
            try:
                request = self._client.build_request(
                    method,
                    url,
                    json=body,
                    timeout=httpx.Timeout(timeout)
                    if timeout is not None
                    else httpx.USE_CLIENT_DEFAULT,
                )
                response = self._client.send(request, stream=True)
            except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout) as exc:
                raise BackendError(
                    f"the server at {shown} accepted the request but sent no answer within "
                    f"{timeout or self.read_timeout:g} s ({type(exc).__name__}); it may be "
                    "overloaded or stuck: check it, or raise the read timeout"
                ) from exc
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                failure = (
                    f"cannot reach the server at {shown}: {redact(str(exc)) or type(exc).__name__}"
                )
                hint = "check that it is running and that the URL ends with its API root (/v1)"
            except (httpx.ReadError, httpx.WriteError) as exc:
                failure = (
                    f"the connection to {shown} failed: {redact(str(exc)) or type(exc).__name__}"
                )
                hint = "check the server and the network between"
            except httpx.HTTPError as exc:  # invalid URL, proxy errors, ...
                raise BackendError(f"the request to {shown} failed: {redact(str(exc))}") from exc
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return response
                if 300 <= status < 400:
                    location = response.headers.get("location", "?")
                    response.close()
                    raise BackendError(
                        f"the server at {shown} redirects (HTTP {status}) to {location!r}; "
                        "use that address as the base URL"
                    )
                detail = self.redact(error_detail(response))
                overflow = context_overflow(detail)
                if overflow is not None:  # some servers say it with a 500: retrying is futile
                    raise overflow
                if status not in _RETRY_STATUS:
                    raise self.http_error(url, status, detail)
                retry_after = _retry_after(response)
                failure = f"the server at {shown} answered HTTP {status}: {detail}"
                hint = (
                    "it is rate-limiting requests: wait, or run fewer agents at once"
                    if status == 429
                    else "check the server's log"
                )
                if retry_after is not None and retry_after > self.retry.max_retry_after:
                    raise BackendError(
                        f"{failure}; it asks to retry after {retry_after:g} s, longer than the "
                        f"{self.retry.max_retry_after:g} s this client waits; {hint}"
                    )
            if attempt >= limit:
                tries = f" (after {attempt + 1} attempts)" if attempt else ""
                raise BackendError(f"{failure}{tries}; {hint}")
            pause(self.retry.delay(attempt, retry_after), interrupt)
            attempt += 1

    def http_error(
        self, url: str, status: int, detail: str
    ) -> RequestRefused | ContextOverflowError:
        """The error for a non-retryable HTTP status, saying what to do about it."""
        overflow = context_overflow(detail)
        if overflow is not None:
            return overflow
        message = (
            f"the server at {redact_url(url)} refused the request with HTTP {status}: {detail}"
        )
        if status in (401, 403):
            key = (
                f"check the API key in the environment variable {self.api_key_env!r}"
                if self.api_key_env
                else "it may need an API key: name the environment variable that holds it "
                "(api_key_env, --api-key-env)"
            )
            return RequestRefused(f"{message}; {key}", status, detail)
        if status == 404:
            return RequestRefused(
                f"{message}; check the base URL (usually ending in /v1) and the model name, "
                "and use the chat mode for servers that offer only /chat/completions",
                status,
                detail,
            )
        return RequestRefused(message, status, detail)

    def events(self, response: httpx.Response, state: StreamState) -> Iterator[dict[str, Any]]:
        """The JSON objects of a streamed response, until ``[DONE]`` or the end of the body.

        A plain JSON body (a server that ignored ``stream``) is one object.

        Raises:
            StreamCut: the connection broke mid-stream.
            BackendError: a read timeout, an event that is not JSON, an oversized line, or an
                error object sent in the stream.
        """
        url = str(response.request.url)
        try:
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind not in ("", "text/event-stream", "application/json"):
                raise BackendError(
                    f"the server at {redact_url(url)} answered with {kind!r}, not an event stream; check "
                    "that the URL is the API root of an OpenAI-compatible server (…/v1)"
                )
            if kind == "application/json":
                payload = _read_capped(response, 16 * MAX_ERROR_BODY)
                state.done = True
                yield self._decode(url, payload)
                return
            parser = SseParser()
            for chunk in response.iter_raw():
                for event in parser.feed(chunk):
                    if event.data.strip() == "[DONE]":
                        state.done = True
                        return
                    yield self._decode(url, event.data)
            for event in parser.close():
                if event.data.strip() == "[DONE]":
                    state.done = True
                    return
                yield self._decode(url, event.data)
        except httpx.ReadTimeout as exc:
            raise BackendError(
                f"the server at {redact_url(url)} stopped sending for {self.read_timeout:g} s in the middle "
                "of an answer; it may be overloaded or stuck: check it, or raise the read timeout"
            ) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise StreamCut(f"the connection broke: {exc or type(exc).__name__}") from exc
        except SseError as exc:
            raise BackendError(f"the stream from {redact_url(url)} is malformed: {exc}") from exc

    def _decode(self, url: str, data: str) -> dict[str, Any]:
        try:
            value = json.loads(data)
        except ValueError as exc:
            raise BackendError(
                f"the server at {redact_url(url)} sent an event that is not JSON: {redact(data[:200])!r}; the server "
                "or a proxy in between is not speaking the OpenAI streaming format"
            ) from exc
        if not isinstance(value, dict):
            raise BackendError(
                f"the server at {redact_url(url)} sent an event that is not an object: {redact(data[:200])!r}"
            )
        if "error" in value:
            detail = self.redact(_message(value))
            raise context_overflow(detail) or BackendError(
                f"the server at {redact_url(url)} reported an error in the stream: {detail}"
            )
        return value


class Interrupted(Exception):
    """``GenerateOptions.interrupt`` asked to stop while the client waited to retry."""


def pause(seconds: float, interrupt: Callable[[], bool] | None) -> None:
    """Sleep ``seconds``, polling ``interrupt`` every 0.1 s.

    Raises:
        Interrupted: ``interrupt()`` became true.
    """
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if interrupt is not None and interrupt():
            raise Interrupted
        time.sleep(min(0.1, left))


def _read_capped(response: httpx.Response, limit: int) -> str:
    data = bytearray()
    for chunk in response.iter_raw():
        data += chunk
        if len(data) > limit:
            break
    return bytes(data[:limit]).decode("utf-8", errors="replace")


def error_detail(response: httpx.Response) -> str:
    """The message of an error response (its body read up to a bound), closing it."""
    try:
        text = _read_capped(response, MAX_ERROR_BODY)
    except httpx.HTTPError as exc:
        text = f"(the body could not be read: {exc})"
    finally:
        response.close()
    try:
        return _message(json.loads(text))
    except ValueError:
        return text.strip()[:500] or response.reason_phrase


def _message(value: Any) -> str:
    """The human message inside the common error shapes, or the JSON itself."""
    if isinstance(value, dict):
        error = value.get("error", value.get("detail"))
        if isinstance(error, dict):
            extra = {k: v for k, v in error.items() if k in ("n_prompt_tokens", "n_ctx")}
            message = str(error.get("message") or error)
            return message + (f" {json.dumps(extra)}" if extra else "")
        if isinstance(error, str):
            return error
    return json.dumps(value)[:500]


_OVERFLOW_PATTERNS = (
    # llama-cpp-python: "Requested tokens (3010) exceed context window of 2048"
    (re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)"), 1, 2),
    # vLLM / OpenAI: "maximum context length is 32768 tokens. However, you requested 40000 tokens"
    (re.compile(r"maximum context length is (\d+) tokens\D+?(\d+) tokens", re.S), 2, 1),
    # llama.cpp's llama-server: {"n_prompt_tokens": 3000, "n_ctx": 2048}
    (re.compile(r'"n_prompt_tokens": (\d+), "n_ctx": (\d+)'), 1, 2),
)


def context_overflow(detail: str) -> ContextOverflowError | None:
    """A :class:`ContextOverflowError` when an error message says the prompt is too long."""
    for pattern, needed, available in _OVERFLOW_PATTERNS:
        match = pattern.search(detail)
        if match:
            return ContextOverflowError(int(match.group(needed)), int(match.group(available)))
    if "exceed_context_size" in detail or "exceeds the available context size" in detail:
        error = ContextOverflowError(0, 0)
        error.args = (
            f"the context is longer than the server's window ({detail}); start a new session, "
            "shorten the task or tool outputs, or give the server a larger context",
        )
        return error
    return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
