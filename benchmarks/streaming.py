"""Client CPU per streamed token: what the runtime costs on top of the server, per token.

A multi-step run goes through :meth:`agent.Agent.stream` with its transcript on, against an
OpenAI-compatible server faked in this process by an ``httpx.MockTransport`` whose replies are
encoded before the clock starts (handing them over costs next to nothing). Each step streams
one token per server-sent event, as llama.cpp's server does, and ends in a calculator call;
the last step answers. The figure is ``time.process_time()`` of the whole process (every
thread: the stream, the parser, the loop, the transcript, the tool) divided by the tokens
streamed.

Two servers: one that reports its counters (llama.cpp's ``timings``), and one that reports
none, so that the client estimates them (the cached prefix among them) on a long context.
Beside them, the first again with the transcript written and flushed event by event (the
behaviour before writes were coalesced), for the share of the transcript.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from agent import Agent
from models.openai.backend import OpenAIBackend

_THOUGHT = (
    "so the sum of the first terms is what I need and then I check it against the formula "
    "before I trust it because the last step could be off by one somewhere here"
)
_WORDS = _THOUGHT.split(" ")
_CALL = '<tool_call>\n{{"name": "calculator", "arguments": {{"expression": "12345 * {n}"}}}}\n</tool_call>'
_ANSWER = "</think>\n\nThe product is 83810205."


def _tokens(text: str) -> list[str]:
    """``text`` in pieces of about one token (4 characters)."""
    return [text[i : i + 4] for i in range(0, len(text), 4)]


def _step(index: int, tokens: int, last: bool) -> list[str]:
    """The streamed pieces of one step: ``tokens`` pieces, ending in a call or the answer.
    The words are drawn at random (seeded): a thinking that repeats itself would be cut short
    by the loop's repetition guard."""
    ending = _tokens(_ANSWER if last else "\n" + _CALL.format(n=index + 2))
    rng = random.Random(index)
    return [rng.choice(_WORDS) + " " for _ in range(tokens - len(ending))] + ending


def _encode(pieces: list[str], counters: bool, prompt_chars: int) -> list[bytes]:
    """The SSE body of one reply: one event per piece, then the finish (with counters)."""
    chunks = [
        b"data: "
        + json.dumps({"choices": [{"index": 0, "text": p, "finish_reason": None}]}).encode()
        + b"\n\n"
        for p in pieces
    ]
    last: dict[str, Any] = {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}
    if counters:
        last["timings"] = {
            "prompt_n": 64,
            "cache_n": max(0, prompt_chars // 4 - 64),
            "predicted_n": len(pieces),
            "prompt_ms": 10.0,
            "predicted_ms": 1000.0,
        }
    chunks.append(b"data: " + json.dumps(last).encode() + b"\n\n")
    chunks.append(b"data: [DONE]\n\n")
    return chunks


class _Body(httpx.SyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks


class _FakeServer:
    """Answers the ``steps`` POSTs of one run with pre-encoded streams, in order."""

    def __init__(self, steps: int, tokens: int, counters: bool, prompt_chars: int) -> None:
        self.replies = [
            _encode(_step(i, tokens, i == steps - 1), counters, prompt_chars + i * tokens * 4)
            for i in range(steps)
        ]
        self.posts = 0
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            if request.url.path.endswith("/models"):
                body = json.dumps({"data": [{"id": "fake"}]}).encode()
                return httpx.Response(200, stream=_Body([body]))
            return httpx.Response(404, stream=_Body([b"{}"]))
        chunks = self.replies[self.posts % len(self.replies)]
        self.posts += 1
        return httpx.Response(
            200, stream=_Body(chunks), headers={"content-type": "text/event-stream"}
        )


def client_cpu_per_token(
    *,
    steps: int = 8,
    tokens: int = 1000,
    prompt_tokens: int = 24000,
    counters: bool = True,
    repeat: int = 1,
) -> dict[str, Any]:
    """Client CPU (µs) per streamed token over a run of ``steps`` steps of ``tokens`` tokens
    each, after a prompt of about ``prompt_tokens`` tokens, transcript on; the median of
    ``repeat`` runs.

    Args:
        steps: model generations in the run (all but the last end in a tool call).
        tokens: server-sent events (one token each) per step.
        prompt_tokens: the size of the user prompt, in tokens of 4 characters.
        counters: whether the fake server reports llama.cpp's ``timings``.
        repeat: runs measured (each with a new agent and server).
    """
    prompt = ("Here is the data to work on. " * (prompt_tokens * 4 // 29 + 1))[: prompt_tokens * 4]
    prompt += "\nWhat is 12345 * 6789?"
    runs = sorted(
        (_one_run(prompt, steps, tokens, counters) for _ in range(max(1, repeat))),
        key=lambda run: run[0],
    )
    cpu, wall, lines = runs[len(runs) // 2]
    streamed = steps * tokens
    return {
        "steps": steps,
        "tokens": streamed,
        "prompt_tokens": prompt_tokens,
        "server_counters": counters,
        "repeat": len(runs),
        "cpu_s": round(cpu, 4),
        "wall_s": round(wall, 4),
        "us_per_token": round(cpu / streamed * 1e6, 2),
        "transcript_lines": lines,
    }


def _one_run(prompt: str, steps: int, tokens: int, counters: bool) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, transcript lines) of one run."""
    server = _FakeServer(steps, tokens, counters, len(prompt))
    backend = OpenAIBackend("http://fake.test/v1", transport=server.transport)
    with tempfile.TemporaryDirectory() as folder:
        transcript = Path(folder) / "run.jsonl"
        agent = Agent(backend, tools=["calculator"], transcript=transcript, max_steps=steps + 1)
        try:
            started_cpu, started_wall = time.process_time(), time.perf_counter()
            for event in agent.stream(prompt):
                if event.kind == "finished" and event.reason != "completed":
                    raise RuntimeError(f"the benchmark run did not complete: {event.detail}")
            cpu = time.process_time() - started_cpu
            wall = time.perf_counter() - started_wall
        finally:
            agent.close()
        if server.posts != steps:
            raise RuntimeError(f"the run made {server.posts} requests, not {steps}")
        with transcript.open(encoding="utf-8") as handle:
            lines = sum(1 for _ in handle)
    return cpu, wall, lines


def figures(quick: bool) -> dict[str, Any]:
    """Both servers (with and without counters), and, beside them, the server with counters
    and the transcript written event by event as it was before writes were coalesced
    (``FLUSH_INTERVAL = 0``); ``quick``: a tiny run for the tests."""
    from agent import transcript

    if quick:
        shape = {"steps": 2, "tokens": 60, "prompt_tokens": 500, "repeat": 1}
    else:
        shape = {"steps": 8, "tokens": 1000, "prompt_tokens": 24000, "repeat": 5}
    client_cpu_per_token(steps=2, tokens=20, prompt_tokens=100)  # imports, template, tools
    results = {
        "with_counters": client_cpu_per_token(counters=True, **shape),
        "without_counters": client_cpu_per_token(counters=False, **shape),
    }
    coalesced = transcript.FLUSH_INTERVAL
    transcript.FLUSH_INTERVAL = 0.0
    try:
        results["per_event_transcript"] = client_cpu_per_token(counters=True, **shape)
    finally:
        transcript.FLUSH_INTERVAL = coalesced
    return results


if __name__ == "__main__":
    print(json.dumps(figures(quick=False), indent=2))
