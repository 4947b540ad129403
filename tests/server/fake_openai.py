"""A scripted OpenAI-compatible server on 127.0.0.1, for the failure cases of the server backend.

Each POST takes the next :class:`Reply` from the script (a stream, an error status, a
connection that hangs or is cut…) and the request is recorded (path, JSON body, headers).
``GET /v1/models`` lists one model; ``GET /props`` answers what ``props`` holds (404 when
``None``). Every wait is bounded, and :meth:`FakeServer.close` releases hanging handlers, so
a test can never hang on the server.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_HANG = 20.0
"""The longest any handler waits, whatever the script says."""


@dataclass
class Reply:
    """One scripted answer to a POST."""

    status: int = 200
    events: Sequence[dict[str, Any] | str] = ()
    """SSE payloads: dicts are JSON-encoded as ``data:`` lines, strings are sent raw."""
    done: bool = True
    """Send ``data: [DONE]`` after the events."""
    cut: bool = False
    """Drop the connection after the events, mid-body (an incomplete chunked response)."""
    body: str = ""
    """A plain body instead of a stream (always for a non-200 reply)."""
    content_type: str = "application/json"
    """The content type of a plain body."""
    headers: dict[str, str] = field(default_factory=dict)
    first_byte_delay: float = 0.0
    """Seconds before the status line (a slow first byte)."""
    event_delay: float = 0.0
    """Seconds between events."""
    hang: bool = False
    """Read the request, then never answer (until the server closes)."""


@dataclass
class Request:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]


def completion_events(*texts: str, finish: str = "stop", **extra: Any) -> list[dict[str, Any]]:
    """Completion chunks for ``texts``, then one with ``finish_reason`` (and ``extra``)."""
    events: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "text": t, "finish_reason": None}]} for t in texts
    ]
    events.append({"choices": [{"index": 0, "text": "", "finish_reason": finish}], **extra})
    return events


def chat_events(
    *deltas: dict[str, Any], finish: str = "stop", **extra: Any
) -> list[dict[str, Any]]:
    """Chat chunks for ``deltas``, then one with ``finish_reason`` (and ``extra``)."""
    events: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas
    ]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}], **extra})
    return events


class FakeServer:
    """See the module docstring. Use as a context manager, or call :meth:`close`."""

    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.requests: list[Request] = []
        self.props: dict[str, Any] | None = None
        self.disconnects = 0
        """Streams whose client went away before the server finished writing."""
        self.released = threading.Event()
        self.active = 0
        """Requests being answered now."""
        self.peak_active = 0
        """The most requests ever answered at once (to tell concurrency from a queue)."""
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def push(self, *replies: Reply) -> None:
        self.script.extend(replies)

    def next_reply(self) -> Reply:
        with self._lock:
            if not self.script:
                return Reply(status=599, body='{"error": {"message": "the test script ran out"}}')
            return self.script.popleft()

    def close(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            if self.path == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": "fake-model"}]})
            elif self.path == "/props" and server.props is not None:
                self._json(200, server.props)
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            with server._lock:
                server.active += 1
                server.peak_active = max(server.peak_active, server.active)
            try:
                self._post()
            finally:
                with server._lock:
                    server.active -= 1

        def _post(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            server.requests.append(Request(self.path, body, dict(self.headers.items())))
            reply = server.next_reply()
            if reply.hang:
                server.released.wait(MAX_HANG)
                self.close_connection = True
                return
            if reply.first_byte_delay:
                server.released.wait(min(reply.first_byte_delay, MAX_HANG))
            if reply.status != 200 or reply.body:
                self._raw(reply.status, reply.body.encode(), reply.content_type, reply.headers)
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            try:
                for payload in _payloads(reply):
                    if reply.event_delay:
                        server.released.wait(min(reply.event_delay, MAX_HANG))
                    self._chunk(payload)
                if reply.cut:
                    self.wfile.write(b"5\r\nda")  # a chunk that never completes
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                server.disconnects += 1
                self.close_connection = True

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _json(self, status: int, value: Any) -> None:
            self._raw(status, json.dumps(value).encode(), "application/json", {})

        def _raw(self, status: int, data: bytes, kind: str, headers: dict[str, str]) -> None:
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _payloads(reply: Reply) -> Iterator[bytes]:
    for event in reply.events:
        if isinstance(event, str):
            yield event.encode()
        else:
            yield b"data: " + json.dumps(event).encode() + b"\n\n"
    if reply.done:
        yield b"data: [DONE]\n\n"


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())
