"""Coalesced transcript writes: deltas merged in order, nothing lost on a crash or at exit,
and what a hard kill can lose bounded by the flush interval."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agent import Agent, load_transcript, tool
from agent.events import Error, Text, Thinking, ToolCall, ToolCallEvent, UsageEvent
from agent.transcript import TranscriptWriter
from models.base import Usage
from models.scripted import ScriptedBackend, call
from tests.conftest import HANG_BOUND, add
from tests.transcripts import merged

LONG = 3600.0
"""A flush interval no test waits for: only a record, a close or the exit writes deltas."""


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_deltas_merge_into_one_record_per_kind_in_order(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    writer = TranscriptWriter(path, flush_interval=LONG)
    writer.start_run("q", {})
    for piece in ("I ", "think", "."):
        writer.write(Thinking(piece))
    writer.write(Text("Half"))
    writer.write(Thinking(" more"))
    assert len(path.read_text().splitlines()) == 1  # the deltas wait
    tool_call = ToolCallEvent(ToolCall("call_1", "add", {"a": 1}, "thinking"))
    writer.write(tool_call)  # written at once, after the deltas before it
    records = _records(path)
    assert [(r["kind"], r.get("text")) for r in records[1:]] == [
        ("thinking", "I think."),
        ("text", "Half"),
        ("thinking", " more"),
        ("tool_call", None),
    ]
    writer.write(Text("an"))
    writer.write(Text("swer"))
    writer.write(UsageEvent(Usage(completion_tokens=3), 1))
    writer.write(Text("!"))
    writer.close()
    events = load_transcript(path).runs[0].events
    assert events == [
        Thinking("I think."),
        Text("Half"),
        Thinking(" more"),
        tool_call,
        Text("answer"),
        UsageEvent(Usage(completion_tokens=3), 1),
        Text("!"),
    ]


def test_an_interval_of_zero_writes_every_delta_on_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    writer = TranscriptWriter(path, flush_interval=0)
    writer.write(Thinking("a"))
    writer.write(Thinking("b"))
    assert [r["text"] for r in _records(path)] == ["a", "b"]
    writer.close()
    with pytest.raises(ValueError, match="-1"):
        TranscriptWriter(path, flush_interval=-1)


def test_a_paused_stream_has_its_deltas_written_within_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    writer = TranscriptWriter(path, flush_interval=0.05)
    writer.write(Thinking("waiting for the next token"))
    deadline = time.monotonic() + HANG_BOUND
    while (not path.exists() or not path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert path.exists()
    assert _records(path) == [{"text": "waiting for the next token", "kind": "thinking"}]
    writer.close()


def test_a_writer_with_a_long_interval_does_not_hold_up_a_short_one(tmp_path: Path) -> None:
    slow = TranscriptWriter(tmp_path / "slow.jsonl", flush_interval=LONG)
    slow.write(Thinking("not due for an hour"))
    time.sleep(0.05)  # the flusher now waits for the slow writer's record to be due
    path = tmp_path / "fast.jsonl"
    fast = TranscriptWriter(path, flush_interval=0.05)
    fast.write(Thinking("due at once"))
    deadline = time.monotonic() + HANG_BOUND
    while (not path.exists() or not path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert path.exists() and _records(path) == [{"text": "due at once", "kind": "thinking"}]
    assert not (tmp_path / "slow.jsonl").exists()
    slow.close()
    fast.close()
    assert _records(tmp_path / "slow.jsonl") == [
        {"text": "not due for an hour", "kind": "thinking"}
    ]


def test_a_consumer_interrupted_mid_run_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    backend = ScriptedBackend(["let me add " * 20 + call("add", a=2, b=3), "</think>5"])
    agent = Agent(backend, tools=[add], transcript=path)
    seen = []
    with pytest.raises(KeyboardInterrupt):
        for event in agent.stream("2+3?"):
            seen.append(event)
            if event.kind == "tool_result":
                raise KeyboardInterrupt
    run = load_transcript(path).runs[0]
    assert merged(run.events) == merged(seen)  # every delta the consumer saw is on disk
    assert run.messages is not None and not run.finished
    later = Agent(ScriptedBackend(["</think>again"]), transcript=False)
    later.resume(path)
    assert later.history[0] == {"role": "user", "content": "2+3?"}


def test_a_callback_that_raises_mid_run_loses_nothing(tmp_path: Path) -> None:
    @tool(risk="dangerous")
    def wipe() -> str:
        """Wipe something."""
        return "wiped"

    def refuse(_call: ToolCall) -> bool:
        raise RuntimeError("the approval service is down")

    path = tmp_path / "t.jsonl"
    backend = ScriptedBackend(["first I wipe " * 10 + call("wipe"), "</think>done"])
    agent = Agent(backend, tools=[wipe], approval=refuse, transcript=path)
    seen = []
    with pytest.raises(RuntimeError, match="service is down"):
        for event in agent.stream("go"):  # the events seen before the error
            seen.append(event)
    events = load_transcript(path).runs[0].events
    assert merged(events) == merged(seen)
    assert merged(events)[0] == Thinking("first I wipe " * 10) and events[-1].kind == "tool_call"


def test_the_exit_writes_what_is_pending(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    script = f"""
        from agent.events import Thinking
        from agent.transcript import TranscriptWriter
        writer = TranscriptWriter({str(path)!r}, flush_interval={LONG})
        writer.write(Thinking("the last thought before exit"))
        raise SystemExit(3)
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=HANG_BOUND * 4,
    )
    assert done.returncode == 3, done.stderr
    assert _records(path) == [{"text": "the last thought before exit", "kind": "thinking"}]


def test_errors_and_thinking_alternate_in_order(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    writer = TranscriptWriter(path, flush_interval=LONG)
    writer.write(Thinking("a"))
    writer.write(Error("bad call", "parse"))
    writer.write(Thinking("b"))
    writer.flush()
    assert [r["kind"] for r in _records(path)] == ["thinking", "error", "thinking"]
    writer.close()
