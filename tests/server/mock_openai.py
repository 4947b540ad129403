"""The scripted OpenAI-compatible server of :mod:`tests.server.fake_openai`, as an
``httpx.MockTransport``: no socket, no thread, no waiting.

It answers the same :class:`~tests.server.fake_openai.Reply` script and records the same
:class:`~tests.server.fake_openai.Request` list, so a test of the backend's own logic (the
request it builds, how it reads a stream, retries, errors, redaction) runs in milliseconds and
cannot race. What only a real connection can show (timeouts, a server that sees the client
leave, streams served concurrently) stays on the threaded :class:`FakeServer`: a reply asking
for a delay or a hang is refused here with a ``ValueError`` that says so.

A ``cut`` reply raises what httpx raises when a chunked body stops short
(``httpx.RemoteProtocolError``), after the scripted events.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from typing import Any

import httpx

from models.openai.backend import OpenAIBackend, ServerOptions
from tests.server.fake_openai import Reply, Request

__all__ = ["MockServer", "open_server_backend"]

_OWN = ("default_sampling", "transport", "discover", "name")
"""The keyword arguments of :class:`OpenAIBackend` that are not :class:`ServerOptions`."""


def open_server_backend(url: str, **options: Any) -> OpenAIBackend:
    """``OpenAIBackend(url, ServerOptions(...), ...)`` from one set of keywords: the
    :class:`ServerOptions` fields and the backend's own (``transport``, ``discover``…)."""
    own = {k: options.pop(k) for k in _OWN if k in options}
    return OpenAIBackend(url, ServerOptions(**options), **own)


class MockServer:
    """See the module docstring. ``backend(**options)`` opens an :class:`OpenAIBackend` on it."""

    url = "http://mock-openai.test/v1"

    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.requests: list[Request] = []
        self.props: dict[str, Any] | None = None
        self.disconnects = 0
        """Streams the client closed before reading them to their end."""
        self.transport = httpx.MockTransport(self._handle)

    def push(self, *replies: Reply) -> None:
        """Queue ``replies``, one per POST, in order."""
        for reply in replies:
            if reply.hang or reply.first_byte_delay or reply.event_delay:
                raise ValueError(
                    f"MockServer does not wait (reply {reply!r}): test timeouts and delays "
                    "over a real connection with tests.server.fake_openai.FakeServer"
                )
        self.script.extend(replies)

    def backend(self, **options: Any) -> OpenAIBackend:
        """An :class:`OpenAIBackend` whose requests go to this server."""
        return open_server_backend(self.url, transport=self.transport, **options)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET":
            if path == "/v1/models":
                return _json(200, {"object": "list", "data": [{"id": "fake-model"}]})
            if path == "/props" and self.props is not None:
                return _json(200, self.props)
            return _json(404, {"error": {"message": f"no route {path}"}})
        headers = {k.decode(): v.decode() for k, v in request.headers.raw}
        self.requests.append(Request(path, json.loads(request.content or b"{}"), headers))
        if not self.script:
            return _json(599, {"error": {"message": "the test script ran out"}})
        reply = self.script.popleft()
        if reply.status != 200 or reply.body:
            return _plain(reply.status, reply.body.encode(), reply.content_type, reply.headers)
        return httpx.Response(
            200,
            stream=_Stream(self, reply),
            headers={"content-type": "text/event-stream", **reply.headers},
        )


class _Stream(httpx.SyncByteStream):
    """The body of a streamed reply; counts a close before the end as a disconnect."""

    def __init__(self, server: MockServer, reply: Reply) -> None:
        self.server = server
        self.reply = reply
        self.finished = False

    def __iter__(self) -> Iterator[bytes]:
        chunks = [
            event.encode()
            if isinstance(event, str)
            else b"data: " + json.dumps(event).encode() + b"\n\n"
            for event in self.reply.events
        ]
        if self.reply.done and not self.reply.cut:
            chunks.append(b"data: [DONE]\n\n")
        for index, chunk in enumerate(chunks):
            # the last chunk handed over is the end of the body: closing after it is no disconnect
            self.finished = self.finished or (index == len(chunks) - 1 and not self.reply.cut)
            yield chunk
        self.finished = True
        if self.reply.cut:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body "
                "(incomplete chunked read)"
            )

    def close(self) -> None:
        if not self.finished:
            self.server.disconnects += 1
            self.finished = True


class _Body(httpx.SyncByteStream):
    """A plain body, read from the stream as a network response is (``httpx.Response(content=…)``
    would be read already, and the backend's streamed reading would fail)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        if self.data:
            yield self.data


def _plain(status: int, data: bytes, kind: str, headers: dict[str, str]) -> httpx.Response:
    all_headers = {"content-type": kind, "content-length": str(len(data)), **headers}
    return httpx.Response(status, stream=_Body(data), headers=all_headers)


def _json(status: int, value: Any) -> httpx.Response:
    return _plain(status, json.dumps(value).encode(), "application/json", {})
