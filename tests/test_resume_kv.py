"""Sessions resume from their KV state (``Agent(session_kv=...)`` and ``Agent.resume``).

The conversation's KV state is kept beside its transcript (``TRANSCRIPT.kv``). These tests
run on the model host's fake decoder (tests/models/host_fakes.py), where every evaluated token
is counted exactly, and once on the tiny real model.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import Agent
from models.llama.backend import LlamaCppBackend
from models.llama.host import LlamaHost
from models.llama.kv_state import MAGIC, read_state, write_state
from tests.models.host_fakes import FakeDecoder, ScriptModel, fake_host
from tests.real_model import requires_tiny_model

SCRIPTS = {
    "task A": ["Think A.\n</think>\n\nAnswer A."],
    "task B": ["Think B.\n</think>\n\nAnswer B."],
}


@pytest.fixture
def host() -> Iterator[LlamaHost]:
    h = fake_host(FakeDecoder(ScriptModel(SCRIPTS)))
    yield h
    h.close()


def first_session(host: LlamaHost, tmp_path: Path) -> Path:
    """Run "task A" in an agent keeping its KV state; the transcript's path."""
    path = tmp_path / "chat.jsonl"
    agent = Agent(host.session(), transcript=path, session_kv=True, workspace=tmp_path)
    assert agent.run("task A").answer == "Answer A."
    assert agent.kv_note == "saved the KV state"
    assert (tmp_path / "chat.jsonl.kv").is_file()
    agent.close()
    return path


def resumed(host: LlamaHost, path: Path, tmp_path: Path, **options: object) -> Agent:
    agent = Agent(host.session(), transcript=path, workspace=tmp_path, **options)  # type: ignore[arg-type]
    agent.resume(path)
    return agent


def test_a_resumed_session_restores_its_kv_instead_of_evaluating_again(
    host: LlamaHost, tmp_path: Path
) -> None:
    path = first_session(host, tmp_path)
    copy = tmp_path / "cold.jsonl"
    copy.write_bytes(path.read_bytes())
    cold = resumed(host, copy, tmp_path)  # without the saved state: everything is evaluated
    cold_run = cold.run("task B")
    warm = resumed(host, path, tmp_path, session_kv=True)
    assert warm.kv_note is not None and warm.kv_note.startswith("restored the KV state of")
    warm_run = warm.run("task B")
    assert warm_run.answer == cold_run.answer == "Answer B."
    assert cold_run.usage.prompt_tokens_cached == 0
    saved = saved_tokens(tmp_path / "chat.jsonl.kv")
    # the whole first exchange up to where the template compacts it is reused, not evaluated
    assert warm_run.usage.prompt_tokens_cached > saved // 2
    assert (
        warm_run.usage.prompt_tokens_evaluated + warm_run.usage.prompt_tokens_cached
        == cold_run.usage.prompt_tokens_evaluated
    )


def saved_tokens(state: Path) -> int:
    """How many tokens a state file holds (from its header line)."""
    raw = state.read_bytes()
    return int(json.loads(raw[len(MAGIC) : raw.index(b"\n", len(MAGIC))])["n_tokens"])


@pytest.mark.parametrize("damage", ["torn", "not_a_state", "other_conversation", "other_model"])
def test_a_stale_or_damaged_state_is_ignored_with_a_note(
    host: LlamaHost, tmp_path: Path, damage: str
) -> None:
    path = first_session(host, tmp_path)
    state = tmp_path / "chat.jsonl.kv"
    raw = state.read_bytes()
    expected = {
        "torn": "is torn",
        "not_a_state": "is not a KV state file",
        "other_conversation": "saved for another conversation",
        "other_model": "saved for another model",
    }[damage]
    if damage == "torn":  # a crash while copying, or a disk that filled up
        state.write_bytes(raw[: len(raw) - 7])
    elif damage == "not_a_state":
        state.write_bytes(b"junk" + raw)
    elif damage == "other_conversation":
        other = Agent(host.session(), transcript=path, workspace=tmp_path)
        other.resume(path)
        other.run("task B")  # the transcript moves on without a new KV state
    else:
        host.info = dataclasses.replace(host.info, name="another")
    agent = resumed(host, path, tmp_path, session_kv=True)
    assert agent.kv_note is not None and expected in agent.kv_note, agent.kv_note
    assert "ignored" in agent.kv_note
    result = agent.run("task B")  # the conversation goes on, evaluated again
    assert result.answer == "Answer B." and result.usage.prompt_tokens_cached == 0


def test_a_failed_write_leaves_no_state_to_trust(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.kv"
    assert write_state(path, {"model": 1}, [1, 2, 3], b"state") is None
    assert read_state(path, {"model": 1}) == ([1, 2, 3], b"state")

    def crash(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", crash)
    reason = write_state(path, {"model": 1}, [1, 2, 3, 4], b"newer")
    assert reason is not None and "disk full" in reason
    assert read_state(path, {"model": 1}) == ([1, 2, 3], b"state")  # the old file, whole
    assert not list(tmp_path.glob("*.tmp"))
    assert path.read_bytes().startswith(MAGIC)


def test_a_state_over_the_bound_is_not_written(host: LlamaHost, tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    agent = Agent(host.session(), transcript=path, session_kv=64, workspace=tmp_path)
    agent.run("task A")
    assert agent.kv_note is not None and "more than the limit of 64" in agent.kv_note
    assert not (tmp_path / "chat.jsonl.kv").exists()
    with pytest.raises(ValueError, match="session_kv"):
        Agent(host.session(), session_kv=0)


@pytest.mark.real_model
@requires_tiny_model
def test_the_tiny_model_resumes_from_its_saved_kv(
    tiny_backend: LlamaCppBackend, tmp_path: Path
) -> None:
    path = tmp_path / "chat.jsonl"
    first = Agent(tiny_backend, transcript=path, session_kv=True, temperature=0, max_tokens=8)
    first.run("Say hi.")
    assert first.kv_note == "saved the KV state"
    tiny_backend.reset()  # a new process: nothing in the cache
    agent = Agent(tiny_backend, transcript=path, session_kv=True, temperature=0, max_tokens=4)
    agent.resume(path)
    assert agent.kv_note is not None and agent.kv_note.startswith("restored"), agent.kv_note
    result = agent.run("Say bye.")
    u = result.usage  # the system turn and the first exchange were restored, not evaluated
    assert u.prompt_tokens_cached > 2 * u.prompt_tokens_evaluated > 0
    assert u.prompt_tokens_cached + u.prompt_tokens_evaluated + u.completion_tokens == (
        u.context_tokens
    )
