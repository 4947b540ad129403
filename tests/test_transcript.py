"""Transcripts: one JSON object per line, deltas coalesced, readable after a crash."""

from __future__ import annotations

import json
import time
from pathlib import Path

from agent import Agent, load_transcript
from agent.events import Finished, ToolResult, event_from_dict, event_to_dict
from agent.transcript import list_sessions
from models.scripted import ScriptedBackend, call
from tests.conftest import HANG_BOUND, add
from tests.transcripts import merged


def test_every_event_is_written_and_read_back(tmp_path: Path) -> None:
    backend = ScriptedBackend([call("add", a=2, b=3), "ok</think>5"])
    agent = Agent(backend, tools=[add], sessions_dir=tmp_path)
    result = agent.run("2+3?")
    assert result.transcript_path is not None
    transcript = load_transcript(result.transcript_path)
    assert len(transcript.runs) == 1 and transcript.skipped_lines == 0
    run = transcript.runs[0]
    assert run.prompt == "2+3?" and run.meta["tools"] == ["add"] and run.finished
    assert merged(run.events) == merged(result.events)


def test_runs_of_one_conversation_share_a_file(tmp_path: Path) -> None:
    agent = Agent(ScriptedBackend(["</think>a", "</think>b"]), sessions_dir=tmp_path)
    agent.run("one")
    agent.run("two")
    assert [r.prompt for r in load_transcript(agent.transcript_path or "").runs] == ["one", "two"]
    agent.reset()
    agent2 = Agent(ScriptedBackend(["</think>c"]), sessions_dir=tmp_path)
    agent2.run("three")
    assert len(list_sessions(tmp_path)) == 2


def test_lines_are_on_disk_while_the_run_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    agent = Agent(ScriptedBackend(["abc" * 10 + "</think>x"]), transcript=path)
    stream = agent.stream("q")
    first = next(stream)
    assert first.kind == "thinking"
    assert len(path.read_text().splitlines()) == 1  # run_started, at once
    # the stream is paused here: the first delta is written all the same, within the bound
    deadline = time.monotonic() + HANG_BOUND
    while first.text not in path.read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert f'"text":{json.dumps(first.text)}' in path.read_text()
    stream.close()


def test_a_torn_last_line_is_skipped_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    Agent(ScriptedBackend(["</think>fine"]), transcript=path).run("q")
    with path.open("a") as f:
        f.write('{"kind": "text", "te')
    transcript = load_transcript(path)
    assert transcript.skipped_lines == 1
    assert isinstance(transcript.runs[0].events[-1], Finished)


def test_event_round_trip() -> None:
    event = ToolResult("call_1", "add", "5", None, 0.1)
    assert event_from_dict(event_to_dict(event)) == event


def test_resume_continues_the_conversation_in_the_same_file(tmp_path: Path) -> None:
    first = Agent(
        ScriptedBackend(["secret</think>Paris.", "more</think>Lyon."]), sessions_dir=tmp_path
    )
    first.run("Capital of France?")
    path = first.transcript_path
    assert path is not None
    backend = ScriptedBackend(["</think>It has about 2 million people."])
    later = Agent(backend, sessions_dir=tmp_path)
    later.resume(path)
    assert later.history == first.history
    later.run("How many people live there?")
    prompt = backend.prompts[0]
    assert "Capital of France?" in prompt and "Paris." in prompt and "secret" not in prompt
    assert [r.prompt for r in load_transcript(path).runs] == [
        "Capital of France?",
        "How many people live there?",
    ]


def test_history_of_a_killed_run_keeps_the_prompt_and_partial_answer(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    Agent(ScriptedBackend(["</think>Partial answer"]), transcript=path).run("q")
    lines = path.read_text().splitlines()
    path.write_text(
        "\n".join(line for line in lines if '"kind":"messages"' not in line.replace(" ", "")) + "\n"
    )
    assert load_transcript(path).history() == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "Partial answer"},
    ]


def test_resuming_after_a_torn_last_line_starts_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    Agent(ScriptedBackend(["</think>one"]), transcript=path).run("first")
    with path.open("a") as f:
        f.write('{"kind": "text", "te')  # a crash mid-line
    later = Agent(ScriptedBackend(["</think>two"]), transcript=path)
    later.resume(path)
    later.run("second")
    transcript = load_transcript(path)
    assert [r.prompt for r in transcript.runs] == ["first", "second"]
    assert transcript.skipped_lines == 1 and transcript.runs[1].finished
    answers = [m["content"].split("</think>")[-1] for m in transcript.history()]
    assert answers == ["first", "one", "second", "two"]


def test_reset_with_a_fixed_file_starts_the_conversation_over(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    agent = Agent(ScriptedBackend(["</think>1", "</think>2"]), transcript=path)
    agent.run("one")
    agent.reset()
    agent.run("two")
    transcript = load_transcript(path)
    assert [r.prompt for r in transcript.runs] == ["one", "two"]  # everything is kept
    answers = [m["content"].split("</think>")[-1] for m in transcript.history()]
    assert answers == ["two", "2"]  # but only what followed the reset is resumed


def test_an_approval_answered_by_the_stream_consumer_is_recorded(tmp_path: Path) -> None:
    from agent import tool

    @tool(risk="dangerous")
    def wipe() -> str:
        """Wipe something."""
        return "wiped"

    backend = ScriptedBackend(["</think>" + call("wipe"), "</think>done"])
    agent = Agent(backend, tools=[wipe], approval="ask", transcript=tmp_path / "t.jsonl")
    for event in agent.stream("go"):
        if event.kind == "approval":
            event.approve()
    events = load_transcript(tmp_path / "t.jsonl").runs[0].events
    approval = next(e for e in events if e.kind == "approval")
    assert approval.decision is True and approval.decided_by == "consumer"
    kinds = [e.kind for e in events]
    assert kinds.index("approval") < kinds.index("tool_result")


def test_an_abandoned_run_keeps_the_turns_alternating(tmp_path: Path) -> None:
    backend = ScriptedBackend(["thinking" * 20 + "</think>never seen", "</think>fine"])
    agent = Agent(backend, transcript=False)
    for _event in agent.stream("one"):
        break  # the consumer walks away
    agent.run("two")
    roles = [m["role"] for m in agent.history]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert "<|im_start|>user\none<|im_end|>\n<|im_start|>assistant\n" in backend.prompts[1]


def test_the_result_has_the_run_duration() -> None:
    result = Agent(ScriptedBackend(["abc " * 30 + "</think>ok"], delay=0.01), transcript=False).run(
        "go"
    )
    assert result.duration > 0 and result.events[-1].kind == "finished"
    assert result.duration == result.events[-1].duration
