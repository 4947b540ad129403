"""``qwq-agent run --concurrency N`` on an embedded model: the runner and a model host.

The host runs on the fake decoder of tests/models/host_fakes.py, so the tasks' outputs are
scripted and the test checks what the runner does with a host: the model is opened once,
each task has a session of its own, the tasks run at once, and every session is closed.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent import tool
from agent.tasks.results import ResultsFile
from agent.tasks.runner import Runner, SessionHost, open_model
from models.base import Backend
from models.llama.host import LlamaHost
from models.options import BackendOptions
from models.scripted import call
from tests.conftest import HANG_BOUND
from tests.models.host_fakes import FakeDecoder, ScriptModel, fake_host
from tests.test_runner import Recorder, plan

_barrier = {"now": threading.Barrier(2, timeout=HANG_BOUND)}


@tool
def meet(who: str) -> str:
    """Return only when another task is in this tool at the same time.

    Args:
        who: The caller.
    """
    _barrier["now"].wait()
    return f"{who} met"


def test_tasks_share_one_host_at_once_each_in_its_own_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools import registry

    monkeypatch.setitem(registry.BUILTINS, "meet", f"{__name__}:meet")
    _barrier["now"] = threading.Barrier(2, timeout=HANG_BOUND)
    scripts = {
        f"task {who}": [call("meet", who=who), f"Met.\n</think>\n\n{who} ok"] for who in "ab"
    }
    decoder = FakeDecoder(ScriptModel(scripts), n_seq_max=2)
    opened: list[LlamaHost] = []

    def factory(spec: str, options: BackendOptions) -> Backend | SessionHost:
        opened.append(fake_host(decoder))
        return opened[-1]

    tasks = [
        {"id": w, "prompt": f"task {w}", "expect": {"tool_called": "meet"}, "model": "m.gguf"}
        for w in "ab"
    ]
    (tmp_path / "m.gguf").write_bytes(b"")  # the factory never reads it
    plans = plan(tmp_path, tasks, tools=["meet"])
    with ResultsFile(tmp_path / "out.jsonl") as results:
        reporter = Recorder()
        runner = Runner(plans, results=results, reporter=reporter, concurrency=2, factory=factory)
        done = runner.run()
    assert sorted((r.id, r.ok, r.answer) for r in done) == [
        ("a", True, "a ok"),
        ("b", True, "b ok"),
    ]
    assert len(opened) == 1  # one model for both tasks
    assert not opened[0].scheduler._seqs  # each task's session was closed
    assert decoder.closed  # and the host, after the last task
    assert not [c for c in reporter.calls if c[0] == "note"]  # no "one task at a time"


def test_open_model_opens_an_embedded_model_as_a_host_only_for_several_sessions(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "none.gguf"
    with pytest.raises(Exception, match="no model file"):
        open_model(str(missing), {}, sessions=2)
    script = tmp_path / "s.yaml"
    script.write_text("turns: [hi]\n", encoding="utf-8")
    backend = open_model(f"scripted:{script}", {}, sessions=2)  # not embedded: a backend
    assert not isinstance(backend, SessionHost)
    backend.close()
