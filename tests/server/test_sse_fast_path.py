"""The SSE parser's fast path (lines ending in ``\\n`` alone, what servers send) gives the
same events as the general one, under any chunking, and keeps the bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.openai.sse import SseError, SseEvent, SseParser

LF_STREAM = (
    b': ping\n\nevent: delta\nid: 7\ndata: {"t": "\xc3\xa9"}\ndata:b\n\n'
    b'data: {"x": 1}\n\nretry: 5\nfoo\ndata: last'
)
EXPECTED = [
    SseEvent('{"t": "é"}\nb', "delta", "7"),
    SseEvent('{"x": 1}', id="7"),
    SseEvent("last", id="7"),
]


def parse(chunks: list[bytes], **bounds: int) -> list[SseEvent]:
    parser = SseParser(**bounds)
    events = [e for chunk in chunks for e in parser.feed(chunk)]
    return events + parser.close()


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    edges = sorted(set(points))
    return [stream[a:b] for a, b in zip([0, *edges], [*edges, len(stream)], strict=True)]


@given(st.lists(st.integers(min_value=0, max_value=len(LF_STREAM)), max_size=8))
def test_newline_streams_do_not_depend_on_chunking(points: list[int]) -> None:
    assert parse(cut(LF_STREAM, points)) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=2 * len(LF_STREAM)), max_size=8))
def test_a_stream_that_changes_line_ends_midway(points: list[int]) -> None:
    stream = LF_STREAM.replace(b"data: last", b"data: mid\r\n\r\n") + LF_STREAM
    events = parse(cut(stream, points))
    assert [e.data for e in events] == [
        '{"t": "é"}\nb',
        '{"x": 1}',
        "mid",
        '{"t": "é"}\nb',
        '{"x": 1}',
        "last",
    ]


def test_every_byte_its_own_chunk() -> None:
    assert parse([LF_STREAM[i : i + 1] for i in range(len(LF_STREAM))]) == EXPECTED


def test_the_bounds_hold_on_the_fast_path() -> None:
    with pytest.raises(SseError, match="longer than 16 bytes"):
        parse([b"data: ok\n\ndata: " + b"x" * 40 + b"\n\n"], max_line_bytes=16)
    with pytest.raises(SseError, match="longer than 16 bytes"):
        parse([b"data: 0123", b"456789", b"abcdef\n"], max_line_bytes=16)
    with pytest.raises(SseError, match="larger than 20 bytes"):
        parse([b"data: 0123456789\ndata: 0123456789\n"], max_event_bytes=20)
    with pytest.raises(SseError, match="not UTF-8"):
        parse([b"data: ok\n\ndata: \xff\n\n"])
