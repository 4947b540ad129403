"""The batch runner on scripted models: results, model reuse, approvals, limits, concurrency,
interruption, and the results file."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import tool
from agent.tasks.planning import plan_tasks
from agent.tasks.results import ResultsFile, TaskResult, not_a_results_file, read_results
from agent.tasks.runner import Runner, explain_load_error, open_model
from agent.tasks.taskfile import TaskPlan, load_task_file
from agent.transcript import load_transcript
from models.base import Backend, BackendError, BackendInfo, GenerateOptions, Segment, StopReason
from models.base import Usage as UsageCounters
from models.options import BackendOptions
from models.scripted import ScriptedBackend, call
from tests.conftest import HANG_BOUND

ANSWER = "Done.\n</think>\n\nok"


def script(folder: Path, name: str, *turns: str, delay: float = 0.0) -> str:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"turns": list(turns), "delay": delay}), encoding="utf-8")
    return f"scripted:{path}"


def plan(folder: Path, tasks: list[dict[str, Any]], **defaults: Any) -> list[TaskPlan]:
    data = {"workspace": str(folder), **defaults, "tasks": tasks}
    path = folder / "tasks.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return plan_tasks(load_task_file(path), cwd=folder)


class Recorder:
    """A reporter that records calls and can act on them (interrupt, inspect the results)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.on_started: Callable[[str], None] | None = None
        self.on_step: Callable[[str, int], None] | None = None
        self.on_finished: Callable[[TaskResult], None] | None = None

    def start(self, total: int, already_done: int) -> None:
        self.calls.append(("start", total, already_done))

    def task_started(self, plan: TaskPlan) -> None:
        self.calls.append(("started", plan.id))
        if self.on_started:
            self.on_started(plan.id)

    def task_step(self, task_id: str, step: int, usage: UsageCounters) -> None:
        self.calls.append(("step", task_id, step))
        if self.on_step:
            self.on_step(task_id, step)

    def task_finished(self, result: TaskResult) -> None:
        self.calls.append(("finished", result.id, result.ok))
        if self.on_finished:
            self.on_finished(result)

    def note(self, text: str) -> None:
        self.calls.append(("note", text))

    def stop(self) -> None:
        self.calls.append(("stop",))


class ConcurrentScripted(ScriptedBackend):
    """A scripted model that says it can serve several agents at once (like a server)."""

    @property
    def info(self) -> BackendInfo:
        return dataclasses.replace(super().info, concurrent=True)


class Models:
    """A factory that records every model it opens."""

    def __init__(self, backend_class: type[ScriptedBackend] = ScriptedBackend) -> None:
        self.backend_class = backend_class
        self.opened: dict[str, ScriptedBackend] = {}
        self.calls: list[tuple[str, BackendOptions]] = []

    def __call__(self, spec: str, options: BackendOptions) -> Backend:
        self.calls.append((spec, options))
        if "broken" in spec:
            raise BackendError(f"cannot load {spec}")
        backend = self.backend_class.from_yaml(spec.removeprefix("scripted:"))
        self.opened[Path(spec).stem] = backend
        return backend


def run(
    plans: list[TaskPlan],
    folder: Path,
    reporter: Recorder | None = None,
    factory: Callable[[str, Mapping[str, Any]], Backend] | None = None,
    **options: Any,
) -> tuple[Runner, list[TaskResult]]:
    results = ResultsFile(folder / "out.jsonl")
    runner = Runner(
        plans,
        results=results,
        reporter=reporter or Recorder(),
        transcripts_dir=folder / "transcripts",
        factory=factory or Models(),
        **options,
    )
    try:
        return runner, runner.run()
    finally:
        results.close()


# -- results -------------------------------------------------------------------------------------


def test_each_result_is_in_the_file_before_the_next_task_starts(tmp_path: Path) -> None:
    model = script(tmp_path, "m", "I add.\n" + call("calculator", expression="2+3"), ANSWER, ANSWER)
    plans = plan(
        tmp_path,
        [
            {
                "id": "a",
                "prompt": "2+3?",
                "expect": {"contains": "ok", "tool_called": "calculator"},
            },
            {"id": "b", "prompt": "hi", "expect": {"equals": "nope"}},
        ],
        model=model,
    )
    reporter = Recorder()
    seen: list[list[str]] = []
    reporter.on_finished = lambda _: seen.append(
        [r.id for r in read_results(tmp_path / "out.jsonl")[0]]
    )
    _, results = run(plans, tmp_path, reporter)
    assert seen == [["a"], ["a", "b"]]
    a, b = results
    assert (a.ok, a.finish_reason, a.answer, a.error, a.steps) == (True, "completed", "ok", None, 2)
    assert [e["kind"] for e in a.expectations] == ["contains", "tool_called"]
    assert a.tool_calls[0]["name"] == "calculator" and a.tool_calls[0]["output"] == "5"
    assert a.usage["completion_tokens"] > 0 and a.duration > 0 and a.model == model
    assert not b.ok and b.error is None and b.expectations[0]["ok"] is False
    line = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[1])
    assert set(line) == {f.name for f in dataclasses.fields(TaskResult)}
    assert reporter.calls[0] == ("start", 2, 0) and reporter.calls[-1] == ("stop",)
    assert ("step", "a", 2) in reporter.calls


def test_a_model_is_loaded_once_per_spec_and_closed_after_its_last_task(tmp_path: Path) -> None:
    shared = script(tmp_path, "shared", ANSWER, ANSWER)
    other = script(tmp_path, "other", ANSWER)
    plans = plan(
        tmp_path,
        [
            {"id": "a", "prompt": "p"},
            {"id": "b", "prompt": "p", "ctx": 4096},
            {"id": "c", "prompt": "p", "model": other},
        ],
        model=shared,
        ctx=4096,
    )
    models = Models()
    reporter = Recorder()
    closed_when_c_starts: list[bool] = []
    reporter.on_started = lambda task_id: (
        closed_when_c_starts.append(models.opened["shared"].closed) if task_id == "c" else None
    )
    run(plans, tmp_path, reporter, models)
    loaded = BackendOptions.from_mapping({"n_ctx": 4096})
    assert models.calls == [(shared, loaded), (other, loaded)]
    assert closed_when_c_starts == [True]
    assert models.opened["shared"].remaining == 0 and models.opened["other"].closed


def test_sampling_system_and_placement_reach_the_model(tmp_path: Path) -> None:
    model = script(
        tmp_path, "m", "Thinking " + call("calculator", expression="1+1") + " more", ANSWER
    )
    plans = plan(
        tmp_path,
        [{"id": "a", "prompt": "p", "placement": "template"}],
        model=model,
        temperature=0.2,
        top_k=7,
        seed=3,
        system="SYSTEM TEXT",
    )
    models = Models()
    _, (result,) = run(plans, tmp_path, factory=models)
    backend = models.opened["m"]
    sampling = backend.options[0].sampling
    assert (sampling.temperature, sampling.top_k, sampling.seed) == (0.2, 7, 3)
    assert sampling.top_p == backend.info.default_sampling.top_p  # not given: the model's
    assert "SYSTEM TEXT" in backend.prompts[0]
    # "template": a call inside the thinking is not run.
    assert result.tool_calls == [] and result.ok


def test_tools_outside_the_allowlist_are_denied_and_the_model_is_told(tmp_path: Path) -> None:
    write = call("write_file", path="note.txt", content="hi")
    plans = plan(
        tmp_path,
        [
            {
                "id": "denied",
                "prompt": "p",
                "model": script(tmp_path, "d", write, ANSWER),
                "expect": {"tool_called": "write_file"},
            },
            {
                "id": "allowed",
                "prompt": "p",
                "approve": ["write_file"],
                "model": script(tmp_path, "a", write, ANSWER),
                "expect": {"tool_called": "write_file"},
            },
        ],
        tools=["calculator", "write_file"],
    )
    models = Models()
    _, (denied, allowed) = run(plans, tmp_path, factory=models)
    assert not denied.ok and denied.tool_calls[0]["approved"] is False
    assert denied.tool_calls[0]["error_type"] == "denied"
    assert "denied" in models.opened["d"].observations[0]
    assert allowed.ok and allowed.tool_calls[0]["approved"] is True
    assert (tmp_path / "note.txt").read_text() == "hi"


def test_approve_all_allows_every_tool_of_the_task(tmp_path: Path) -> None:
    write = call("write_file", path="all.txt", content="yes")
    plans = plan(
        tmp_path,
        [{"id": "a", "prompt": "p", "expect": {"tool_called": "write_file"}}],
        model=script(tmp_path, "m", write, ANSWER),
        tools=["write_file"],
    )
    _, (result,) = run(plans, tmp_path, approve_all=True)
    assert result.ok and (tmp_path / "all.txt").read_text() == "yes"


def test_approve_all_does_not_lift_the_private_data_gate(tmp_path: Path) -> None:
    """--yes is "allow", as in `ask`: after a private read, sending data out is still held."""
    from tests.test_capabilities import SECRET, RecordingSearch
    from tools import web_search as search_module

    (tmp_path / ".env").write_text(f"API_KEY={SECRET}\n")
    turns = [call("read_file", path=".env"), call("web_search", query=SECRET), ANSWER]
    plans = plan(
        tmp_path,
        [{"id": "x", "prompt": "p"}],
        model=script(tmp_path, "m", *turns),
        tools=["read_file", "web_search"],
    )
    client = RecordingSearch()
    previous = search_module.set_search_client(lambda timeout: client)
    try:
        _, (result,) = run(plans, tmp_path, approve_all=True)
    finally:
        search_module.set_search_client(previous)
    assert client.queries == []
    assert [c["approved"] for c in result.tool_calls] == [None, False]  # read_file is safe


@pytest.mark.parametrize(
    ("settings", "turns", "reason", "words"),
    [
        (
            {"max_steps": 1},
            [call("calculator", expression="1"), ANSWER],
            "max_steps",
            "all 1 steps",
        ),
        ({"max_tokens": 3}, ["x" * 200 + ANSWER], "max_tokens", "budget of 3"),
        ({"timeout_s": 0.05}, ["slow " * 40 + ANSWER], "timeout", "0.05 s limit"),
    ],
)
def test_limits_end_a_task_with_an_error(
    tmp_path: Path, settings: dict[str, Any], turns: list[str], reason: str, words: str
) -> None:
    delay = 0.01 if "timeout_s" in settings else 0.0
    plans = plan(
        tmp_path,
        [{"id": "a", "prompt": "p", **settings}],
        model=script(tmp_path, "m", *turns, delay=delay),
    )
    _, (result,) = run(plans, tmp_path)
    assert (result.ok, result.finish_reason) == (False, reason)
    assert result.error is not None and words in result.error


def test_fail_fast_stops_after_the_first_failure(tmp_path: Path) -> None:
    plans = plan(
        tmp_path,
        [{"id": i, "prompt": "p", "expect": {"equals": "no"}} for i in ("a", "b", "c")],
        model=script(tmp_path, "m", ANSWER, ANSWER, ANSWER),
    )
    runner, results = run(plans, tmp_path, fail_fast=True)
    assert [r.id for r in results] == ["a"] and runner.stopping
    _, results = run(plans, tmp_path)
    assert [r.id for r in results] == ["a", "b", "c"]


@pytest.mark.parametrize("when", ["step", "start"])
def test_interrupt_records_the_task_as_interrupted_and_stops(tmp_path: Path, when: str) -> None:
    plans = plan(
        tmp_path,
        [{"id": "a", "prompt": "p"}, {"id": "b", "prompt": "p"}],
        model=script(tmp_path, "m", "Let me see " + call("calculator", expression="2"), ANSWER),
    )
    reporter = Recorder()
    holder: list[Runner] = []
    if when == "step":  # during the run, between two steps
        reporter.on_step = lambda *_: holder[0].interrupt("SIGINT")
    else:  # before the agent has even started (the signal must not be lost)
        reporter.on_started = lambda _: holder[0].interrupt("SIGINT")
    results_file = ResultsFile(tmp_path / "out.jsonl")
    runner = Runner(plans, results=results_file, reporter=reporter, factory=Models())
    holder.append(runner)
    (result,) = runner.run()
    results_file.close()
    assert runner.interrupted_by == "SIGINT"
    assert (result.id, result.ok, result.interrupted) == ("a", False, True)
    assert (result.finish_reason, result.error) == ("cancelled", "interrupted by SIGINT")
    (line,) = read_results(tmp_path / "out.jsonl")[0]
    assert line.interrupted


def test_a_model_that_fails_to_load_is_an_error_of_its_tasks(tmp_path: Path) -> None:
    broken = script(tmp_path, "broken", ANSWER)
    plans = plan(
        tmp_path,
        [
            {"id": "a", "prompt": "p", "model": broken},
            {"id": "b", "prompt": "p", "model": broken},
            {"id": "c", "prompt": "p"},
        ],
        model=script(tmp_path, "good", ANSWER),
    )
    models = Models()
    _, results = run(plans, tmp_path, factory=models)
    assert [(r.id, r.ok) for r in results] == [("a", False), ("b", False), ("c", True)]
    assert results[0].error is not None and "could not be loaded: cannot load" in results[0].error
    assert [spec for spec, _ in models.calls].count(broken) == 1  # not retried
    with ResultsFile(tmp_path / "o2.jsonl") as file, pytest.raises(BackendError):
        Runner(plans, results=file, reporter=Recorder(), factory=Models()).preload()


def test_a_load_error_names_the_task_file_key_that_caused_it(tmp_path: Path) -> None:
    def factory(spec: str, options: BackendOptions) -> Backend:
        raise BackendError(
            f"{options.llama.n_ctx} tokens: not enough memory. Use a smaller --ctx, "
            "or fewer GPU layers (--n-gpu-layers), or the CPU (--n-gpu-layers 0)"
        )

    plans = plan(
        tmp_path,
        [
            {"id": "a", "prompt": "p", "n_gpu_layers": -1},
            {"id": "b", "prompt": "p", "ctx": 4096},
        ],
        model=script(tmp_path, "m", ANSWER),
        ctx=100000,
    )
    _, results = run(plans, tmp_path, factory=factory)
    file = tmp_path / "tasks.yaml"
    assert results[0].error == (
        f"the model {plans[0].model!r} could not be loaded: {file}:3:6: ctx: 100000 tokens: not "
        "enough memory. Use a smaller ctx:, or fewer GPU layers (n_gpu_layers:), or the CPU "
        "(n_gpu_layers: 0)"
    )
    assert results[1].error is not None and f"{file}:10:8: ctx: 4096 tokens" in results[1].error
    assert "--n-gpu-layers 0" in (results[1].error or "")  # not set in the file: left as is


def test_explain_load_error_leaves_other_messages_alone(tmp_path: Path) -> None:
    (first,) = plan(tmp_path, [{"id": "a", "prompt": "p"}], model=script(tmp_path, "m", ANSWER))
    assert explain_load_error(first, "use --ctx 8192 or less") == "use --ctx 8192 or less"
    located = dataclasses.replace(first, load_options_at={"ctx": "t.yaml:1:6"})
    assert explain_load_error(located, "no such file") == "no such file"
    assert explain_load_error(located, "use --ctx 8192") == "t.yaml:1:6: ctx: use ctx: 8192"


class Exploding(ScriptedBackend):
    def generate(
        self, context: Sequence[Segment], options: GenerateOptions
    ) -> Generator[str, None, StopReason]:
        raise RuntimeError("boom")


def test_an_unexpected_exception_is_recorded_and_the_batch_goes_on(tmp_path: Path) -> None:
    plans = plan(
        tmp_path,
        [
            {"id": "a", "prompt": "p", "model": script(tmp_path, "x", ANSWER)},
            {"id": "b", "prompt": "p"},
        ],
        model=script(tmp_path, "good", ANSWER),
    )

    def factory(spec: str, options: BackendOptions) -> Backend:
        if spec.endswith("x.yaml"):
            return Exploding.from_yaml(spec.removeprefix("scripted:"))
        return open_model(spec, options)

    _, (a, b) = run(plans, tmp_path, factory=factory)
    assert (a.ok, a.finish_reason, a.error) == (False, "error", "RuntimeError: boom")
    assert b.ok


def test_each_attempt_gets_its_own_transcript(tmp_path: Path) -> None:
    plans = plan(tmp_path, [{"id": "a", "prompt": "hello"}], model=script(tmp_path, "m", ANSWER))
    _, (first,) = run(plans, tmp_path)
    _, (second,) = run(plans, tmp_path)
    assert first.transcript_path == str(tmp_path / "transcripts" / "a.jsonl")
    assert second.transcript_path == str(tmp_path / "transcripts" / "a.2.jsonl")
    transcript = load_transcript(second.transcript_path)
    assert transcript.runs[0].prompt == "hello" and transcript.runs[0].finished
    results = ResultsFile(tmp_path / "o.jsonl")
    runner = Runner(plans, results=results, reporter=Recorder(), factory=Models())
    (untracked,) = runner.run()
    results.close()
    assert untracked.transcript_path is None


# -- concurrency -----------------------------------------------------------------------------------

_meeting = {"barrier": threading.Barrier(2, timeout=HANG_BOUND)}
_occupancy = {"now": 0, "max": 0}
_occupancy_lock = threading.Lock()


@tool
def rendezvous(who: str) -> str:
    """Return only when another task is in this tool at the same time.

    Args:
        who: The caller.
    """
    _meeting["barrier"].wait()
    return f"{who} met"


@tool
def occupy(who: str) -> str:
    """Stay a moment, counting how many tasks are here at once.

    Args:
        who: The caller.
    """
    with _occupancy_lock:
        _occupancy["now"] += 1
        _occupancy["max"] = max(_occupancy["max"], _occupancy["now"])
    time.sleep(0.1)
    with _occupancy_lock:
        _occupancy["now"] -= 1
    return f"{who} done"


@pytest.fixture
def test_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    from tools import registry

    monkeypatch.setitem(registry.BUILTINS, "rendezvous", f"{__name__}:rendezvous")
    monkeypatch.setitem(registry.BUILTINS, "occupy", f"{__name__}:occupy")
    _meeting["barrier"] = threading.Barrier(2, timeout=HANG_BOUND)
    _occupancy.update(now=0, max=0)


@pytest.mark.usefixtures("test_tools")
def test_concurrent_backends_run_tasks_at_once(tmp_path: Path) -> None:
    tasks = [
        {
            "id": who,
            "prompt": "p",
            "model": script(tmp_path, who, call("rendezvous", who=who), ANSWER),
            "expect": {"tool_called": "rendezvous"},
        }
        for who in ("a", "b")
    ]
    plans = plan(tmp_path, tasks, tools=["rendezvous"])
    _, results = run(plans, tmp_path, factory=Models(ConcurrentScripted), concurrency=2)
    assert sorted((r.id, r.ok) for r in results) == [("a", True), ("b", True)]


@pytest.mark.usefixtures("test_tools")
def test_an_embedded_backend_serves_one_task_at_a_time(tmp_path: Path) -> None:
    turns = [call("occupy", who="a"), ANSWER, call("occupy", who="b"), ANSWER]
    plans = plan(
        tmp_path,
        [{"id": w, "prompt": "p", "expect": {"tool_called": "occupy"}} for w in "ab"],
        model=script(tmp_path, "m", *turns),
        tools=["occupy"],
    )
    reporter = Recorder()
    _, results = run(plans, tmp_path, reporter, concurrency=2)
    assert all(r.ok for r in results) and len(results) == 2
    assert _occupancy["max"] == 1
    notes = [c[1] for c in reporter.calls if c[0] == "note"]
    assert len(notes) == 1 and "serves one task at a time" in notes[0]


def test_concurrency_must_be_positive(tmp_path: Path) -> None:
    with ResultsFile(tmp_path / "o.jsonl") as file, pytest.raises(ValueError, match="at least 1"):
        Runner([], results=file, reporter=Recorder(), concurrency=0)


# -- the results file ------------------------------------------------------------------------------


def result(task_id: str, *, ok: bool = True, interrupted: bool = False) -> TaskResult:
    return TaskResult(task_id, ok, "answer", "completed", interrupted=interrupted)


def test_resume_drops_a_torn_last_line_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text(result("a").to_json() + "\n" + result("b").to_json()[:25], encoding="utf-8")
    file = ResultsFile(path, resume=True)
    assert file.dropped_torn_line and set(file.earlier) == {"a"} and file.done_ids() == {"a"}
    file.write(result("b"))
    file.close()
    assert [r.id for r in read_results(path)[0]] == ["a", "b"]
    assert read_results(path)[1] == 0


def test_resume_keeps_a_whole_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text(result("a").to_json(), encoding="utf-8")
    file = ResultsFile(path, resume=True)
    file.write(result("b"))
    file.close()
    assert not file.dropped_torn_line
    assert [r.id for r in read_results(path)[0]] == ["a", "b"]


def test_interrupted_and_unreadable_lines_do_not_count_as_done(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    lines = [
        result("a", interrupted=True).to_json(),
        "not json",
        json.dumps({"no": "id"}),
        json.dumps([1, 2]),
        result("b", ok=False).to_json(),
        result("a").to_json(),
        result("c", interrupted=True).to_json(),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    file = ResultsFile(path, resume=True)
    file.close()
    assert file.skipped_lines == 3
    assert file.done_ids() == {"a", "b"}  # the newer line of a wins; c was interrupted


def test_unreadable_lines_are_kept_with_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text(f"garbage\n\n{result('a').to_json()}\n" + '{"id": 1}\n', encoding="utf-8")
    with ResultsFile(path, resume=True) as file:
        assert file.unreadable == [(1, "garbage"), (4, '{"id": 1}')]
        assert file.skipped_lines == 2 and file.done_ids() == {"a"}


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (None, None),
        (b"", None),
        (b"\n  \n", None),
        (f"\n{result('a').to_json()}\nanything\n".encode(), None),
        (b'{"id":"a","ok":tr', None),  # torn by a kill
        (b"tasks: []\n", "its first line is not JSON: 'tasks: []'"),
        (b'{"id":"a","ok":tr\nmore\n', "its first line is not JSON"),  # torn, yet not last
        (b'"text"\n', "its first line is JSON but not an object: '\"text\"'"),
        (b'{"id": "a", "ok": 1}\n', "a JSON object but not a result"),
        (b"x" * 100 + b"\n", "its first line is not JSON: '" + "x" * 60 + "…'"),
    ],
)
def test_not_a_results_file_says_what_it_found(
    tmp_path: Path, content: bytes | None, found: str | None
) -> None:
    path = tmp_path / "out.jsonl"
    if content is not None:
        path.write_bytes(content)
    what = not_a_results_file(path)
    assert what is None if found is None else what is not None and found in what, what
    assert not_a_results_file(tmp_path) is None  # a folder: cannot be written, destroys nothing


def test_without_resume_the_file_starts_anew(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "out.jsonl"
    path.parent.mkdir()
    path.write_text(result("old").to_json() + "\n", encoding="utf-8")
    file = ResultsFile(path)
    file.close()
    assert path.read_text() == "" and file.earlier == {}


def test_task_result_round_trip_and_failure_text() -> None:
    failed = TaskResult(
        "x",
        False,
        "",
        "completed",
        expectations=[
            {"kind": "equals", "ok": False, "expected": "a", "detail": "the answer is ''"}
        ],
    )
    back = TaskResult.from_dict(json.loads(failed.to_json()))
    assert back == failed and back.failure == "equals: the answer is ''"
    assert TaskResult.from_dict({"id": "x", "ok": True, "bogus": 1, "answer": "a"}) is None
    assert result("y").failure == ""
