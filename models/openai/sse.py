"""A bounded parser for server-sent events (the ``text/event-stream`` of OpenAI-style servers).

Feed it the raw bytes of a response as they arrive (:meth:`SseParser.feed`); it returns the
complete events (:class:`SseEvent`) the bytes finished, and :meth:`SseParser.close` returns
the last event when the stream ended without the blank line that should follow it (servers
that are lenient about the format are met with leniency).

What the parser follows from the WHATWG format: lines end with ``\\n``, ``\\r\\n`` or ``\\r``;
``data:`` lines of one event are joined with ``\\n``; a blank line dispatches the event;
comment lines (``: ping``) are skipped; one space after the colon is removed; unknown field
names, and lines without a colon (field names with an empty value), are ignored.

What it adds, because the server is not trusted: every line and every event is bounded
(``max_line_bytes``, ``max_event_bytes``), and text that is not UTF-8 raises. Both are
:class:`SseError`, which the caller turns into an error that names the server.

This module imports nothing outside the standard library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_END = re.compile(rb"\r\n|\r|\n")

MAX_LINE_BYTES = 4 * 1024 * 1024
"""The longest line accepted (4 MiB): a streamed token chunk is a few hundred bytes."""
MAX_EVENT_BYTES = 8 * 1024 * 1024
"""The largest event accepted (8 MiB), all its data lines together."""


class SseError(ValueError):
    """The byte stream is not a well-formed, bounded event stream."""


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event."""

    data: str
    """The ``data:`` lines joined with ``\\n`` (``"[DONE]"`` ends an OpenAI stream)."""
    event: str = "message"
    """The ``event:`` field (``"message"`` when the server sent none)."""
    id: str | None = None
    """The last ``id:`` field seen in the stream (it carries over, as the format says)."""


class SseParser:
    """Incremental, bounded SSE parsing; see the module docstring.

    Args:
        max_line_bytes: the longest line accepted, in bytes.
        max_event_bytes: the largest event accepted (its data lines together), in bytes.
    """

    def __init__(
        self, *, max_line_bytes: int = MAX_LINE_BYTES, max_event_bytes: int = MAX_EVENT_BYTES
    ) -> None:
        self.max_line_bytes = max_line_bytes
        self.max_event_bytes = max_event_bytes
        self._buffer = bytearray()
        self._pending_cr = False
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""
        self._id: str | None = None
        self._has_fields = False

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Consume ``chunk``; return the events it completed, in order.

        Raises:
            SseError: a line or an event is over its bound, or a line is not UTF-8.
        """
        events: list[SseEvent] = []
        data = bytes(chunk)
        if self._pending_cr or b"\r" in data:
            self._feed_any(data, events)
            return events
        # The common case (every server this runtime met): lines end with "\n" alone.
        lines = data.split(b"\n")
        if len(lines) > 1:
            if self._buffer:
                self._buffer += lines[0]
                self._check_line_size()
                lines[0] = bytes(self._buffer)
                self._buffer.clear()
            for line in lines[:-1]:
                if len(line) > self.max_line_bytes:
                    self._buffer[:] = line
                    self._check_line_size()
                self._line(line, events)
        self._buffer += lines[-1]
        self._check_line_size()
        return events

    def _feed_any(self, data: bytes, events: list[SseEvent]) -> None:
        """:meth:`feed` for chunks with ``\r`` line ends (or the ``\n`` of a split ``\r\n``)."""
        if self._pending_cr and data.startswith(b"\n"):
            data = data[1:]  # the "\n" of a "\r\n" split across chunks
        self._pending_cr = False
        start = 0
        for end in _LINE_END.finditer(data):
            self._buffer += data[start : end.start()]
            self._check_line_size()
            self._line(bytes(self._buffer), events)
            self._buffer.clear()
            start = end.end()
            if end.group() == b"\r" and start == len(data):
                self._pending_cr = True  # its "\n" may open the next chunk
        self._buffer += data[start:]
        self._check_line_size()

    def close(self) -> list[SseEvent]:
        """End of stream: the last event if the server did not end it with a blank line."""
        events: list[SseEvent] = []
        if self._buffer:
            self._line(bytes(self._buffer), events)
            self._buffer.clear()
        if self._has_fields:
            self._dispatch(events)
        return events

    def _check_line_size(self) -> None:
        if len(self._buffer) > self.max_line_bytes:
            raise SseError(
                f"the server sent a line longer than {self.max_line_bytes} bytes "
                f"(it starts {bytes(self._buffer[:80])!r})"
            )

    def _line(self, raw: bytes, events: list[SseEvent]) -> None:
        if not raw:
            self._dispatch(events)
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SseError(f"the server sent a line that is not UTF-8: {raw[:80]!r}") from exc
        if line.startswith(":"):
            return  # a comment, e.g. a keep-alive ping
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data_size += len(raw)
            if self._data_size > self.max_event_bytes:
                raise SseError(f"the server sent an event larger than {self.max_event_bytes} bytes")
            self._data.append(value)
            self._has_fields = True
        elif name == "event":
            self._event = value
            self._has_fields = True
        elif name == "id" and "\x00" not in value:
            self._id = value
            self._has_fields = True
        # "retry" and unknown fields are ignored, as the format says.

    def _dispatch(self, events: list[SseEvent]) -> None:
        if self._data:
            events.append(SseEvent("\n".join(self._data), self._event or "message", self._id))
        self._data = []
        self._data_size = 0
        self._event = ""
        self._has_fields = False
