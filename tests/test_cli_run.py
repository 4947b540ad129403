"""``qwq-agent run``: exit codes, options, progress output, and crash safety with real
subprocesses (SIGKILL in the middle of a batch, then ``--resume``; SIGTERM)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from agent.cli.entry import build_parser, main
from agent.cli.run import run_tasks
from agent.tasks.progress import PlainReporter, RichReporter, make_reporter, print_summary
from agent.tasks.results import TaskResult, read_results
from agent.transcript import load_transcript
from models.base import BackendError, Usage
from models.options import BackendOptions
from models.scripted import call
from tests.real_model import requires_tiny_model

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "tasks" / "scripted-demo.yaml"
ANSWER = "Done.\n</think>\n\nok"


def script(folder: Path, name: str, *turns: str, delay: float = 0.0) -> str:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"turns": list(turns), "delay": delay}), encoding="utf-8")
    return f"scripted:{path}"


def task_file(folder: Path, tasks: list[dict[str, Any]], **defaults: Any) -> Path:
    path = folder / "tasks.yaml"
    data = {"workspace": str(folder), **defaults, "tasks": tasks}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def ids(out: Path) -> list[str]:
    return [r.id for r in read_results(out)[0]]


# -- exit codes ----------------------------------------------------------------------------------


def test_the_scripted_demo_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    assert main(["run", str(DEMO), "--out", str(out)]) == 0
    results = read_results(out)[0]
    assert [r.id for r in results] == ["add", "boxed", "json", "denied", "greet"]
    assert all(r.ok for r in results)
    captured = capsys.readouterr()
    assert "5 passed" in captured.out and f"results: {out}" in captured.out
    assert "[1/5] add: started" in captured.err and "\x1b[" not in captured.err
    transcripts = sorted(p.name for p in (tmp_path / "out.transcripts").iterdir())
    assert transcripts == ["add.jsonl", "boxed.jsonl", "denied.jsonl", "greet.jsonl", "json.jsonl"]


def test_a_failed_expectation_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = task_file(
        tmp_path,
        [{"id": "a", "prompt": "p", "expect": {"contains": "banana"}}, {"id": "b", "prompt": "p"}],
        model=script(tmp_path, "m", ANSWER, ANSWER),
    )
    assert main(["run", str(path), "--out", str(tmp_path / "o.jsonl")]) == 1
    captured = capsys.readouterr().out
    assert "1 passed, 1 failed" in captured and "banana" in captured
    first = read_results(tmp_path / "o.jsonl")[0][0]
    assert first.failure == "contains: not in the answer: 'banana'"


def test_a_task_that_errors_exits_1(tmp_path: Path) -> None:
    model = script(tmp_path, "m", call("calculator", expression="1"))  # then the script runs out
    path = task_file(tmp_path, [{"id": "a", "prompt": "p"}], model=model)
    assert main(["run", str(path), "--out", str(tmp_path / "o.jsonl")]) == 1
    (result,) = read_results(tmp_path / "o.jsonl")[0]
    assert result.finish_reason == "error" and result.error and "no turn 2" in result.error


@pytest.mark.parametrize(
    ("content", "options", "words"),
    [
        (b"tasks:\n\t- {id: a}\n", [], "tasks.yaml:2:1: a tab character"),
        (b"model: a\nmodel: b\n", [], "tasks.yaml:2:1: the key 'model' appears twice"),
        (b"tasks: [{id: a, prompt: p, expect: {equals: yes}}]\n", [], 'put it in quotes: "yes"'),
        (b"\xff\xfe", [], "not valid UTF-8"),
        (b"", [], "the file is empty"),
        (b"tasks: [{id: a, prompt: p}]\n", ["--only", "zz"], "--only: no task with the id 'zz'"),
        (
            b"tasks: [{id: a, prompt: p}]\n",
            ["--max-steps", "0"],
            "--max-steps: must be at least 1, got 0",
        ),
        (
            b"tasks: [{id: a, prompt: p}]\n",
            ["--concurrency", "0"],
            "--concurrency: must be at least 1",
        ),
        (b"tasks: [{id: a, prompt: p}]\n", ["--tools", "shell"], "--tools: unknown tool 'shell'"),
        (b"tasks: [{id: a, prompt: p}]\n", ["--model", "nope"], "--model: unknown model 'nope'"),
        (
            b"tasks:\n  - id: a\n    prompt: Hello {{ name }}\n",
            [],
            "tasks.yaml:3:13: tasks[0].prompt: the prompt cannot be rendered: 'name' is undefined",
        ),
        (
            b"tasks:\n  - id: a\n    prompt: hi {{ name \n",
            [],
            "tasks.yaml:3:13: tasks[0].prompt: line 1 of the prompt is not a valid Jinja2",
        ),
        (
            b"approve: [python]\ntasks: [{id: a, prompt: p}]\n",
            [],
            "tasks.yaml:1:11: approve[0]: 'python' is approved but not enabled",
        ),
    ],
)
def test_bad_input_exits_2_before_any_task_runs(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    options: list[str],
    words: str,
) -> None:
    path = tmp_path / "tasks.yaml"
    path.write_bytes(content)
    out = tmp_path / "o.jsonl"
    assert main(["run", str(path), "--out", str(out), *options]) == 2
    assert words in capsys.readouterr().err
    assert not out.exists()


def test_a_model_that_cannot_load_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.yaml").write_text("turns: 5\n", encoding="utf-8")
    path = task_file(tmp_path, [{"id": "a", "prompt": "p"}], model="scripted:bad.yaml")
    assert main(["run", str(path), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "'turns:' list" in capsys.readouterr().err


def test_an_unusable_out_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = task_file(tmp_path, [{"id": "a", "prompt": "p"}], model=script(tmp_path, "m", ANSWER))
    assert main(["run", str(path), "--out", str(tmp_path)]) == 2
    assert "qwq-agent:" in capsys.readouterr().err


def test_out_may_not_be_the_task_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = task_file(tmp_path, [{"id": "a", "prompt": "p"}], model=script(tmp_path, "m", ANSWER))
    before = path.read_bytes()
    (tmp_path / "sub").mkdir()
    for out in (path, tmp_path / "sub" / ".." / "tasks.yaml"):
        for resume in ([], ["--resume"]):
            assert main(["run", str(path), "--out", str(out), *resume]) == 2
            err = capsys.readouterr().err
            assert f"--out {out} is the task file itself" in err
            assert f"--out {tmp_path / 'tasks.results.jsonl'}" in err  # what to use instead
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (b"model: qwq-32b\n", "its first line is not JSON: 'model: qwq-32b'"),
        (b"\n\n[1, 2]\n", "its first line is JSON but not an object: '[1, 2]'"),
        (b'{"kind": "session"}\n', "its first line is a JSON object but not a result"),
        (b"GGUF\x03\x00\xff\xfe", "its first line is not JSON: 'GGUF\\x03\\x00"),
    ],
)
def test_out_may_not_overwrite_a_file_that_is_not_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, found: str
) -> None:
    path = task_file(tmp_path, [{"id": "a", "prompt": "p"}], model=script(tmp_path, "m", ANSWER))
    out = tmp_path / "precious.txt"
    out.write_bytes(content)
    for resume, would in (([], "overwrite it"), (["--resume"], "append results to it")):
        assert main(["run", str(path), "--out", str(out), *resume]) == 2
        err = capsys.readouterr().err
        assert f"--out {out} exists and is not a results file ({found}" in err
        assert f"running would {would}; give --out another path, e.g. --out " in err
    assert out.read_bytes() == content


def test_out_may_be_a_results_file_even_one_torn_by_a_kill(tmp_path: Path) -> None:
    path = task_file(
        tmp_path, [{"id": "a", "prompt": "p"}], model=script(tmp_path, "m", ANSWER, ANSWER)
    )
    out = tmp_path / "o.jsonl"
    out.write_text('{"id":"a","ok":tr', encoding="utf-8")  # killed while writing line 1
    assert main(["run", str(path), "--out", str(out), "--resume"]) == 0
    out.write_text("\n")
    assert main(["run", str(path), "--out", str(out)]) == 0
    assert ids(out) == ["a"]


def test_resume_warns_about_lines_that_are_not_results_and_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = task_file(
        tmp_path, [{"id": i, "prompt": "p"} for i in "ab"], model=script(tmp_path, "m", ANSWER)
    )
    out = tmp_path / "o.jsonl"
    done = TaskResult("a", True, "ok", "completed").to_json()
    out.write_text(f"{done}\ngarbage\n\n[1]\n", encoding="utf-8")
    assert main(["run", str(path), "--out", str(out), "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"{out}:2: not a result, ignored (left in the file): 'garbage'" in err
    assert f"{out}:4: not a result, ignored (left in the file): '[1]'" in err
    assert ids(out) == ["a", "b"] and read_results(out)[1] == 2


def test_a_context_the_model_cannot_take_points_at_the_task_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def factory(spec: str, options: BackendOptions) -> Any:
        limit = 8192
        raise BackendError(
            f"a context of {options.llama.n_ctx} tokens is more than this model supports "
            f"({limit}); use --ctx {limit} or less"
        )

    path = tmp_path / "tasks.yaml"
    path.write_text("model: qwq-32b\nctx: 100000\ntasks: [{id: a, prompt: p}]\n")
    out = tmp_path / "o.jsonl"
    args = args_for(path, out)
    assert run_tasks(args, factory=factory) == 2
    err = capsys.readouterr().err
    assert (
        f"qwq-agent: {path}:2:6: ctx: a context of 100000 tokens is more than this model "
        "supports (8192); use ctx: 8192 or less"
    ) in err.replace("\n", "")
    assert "--ctx" not in err
    assert run_tasks(args_for(path, out, "--ctx", "9000"), factory=factory) == 2
    err = capsys.readouterr().err
    assert "qwq-agent: a context of 9000 tokens" in err and "use --ctx 8192" in err


# -- options ---------------------------------------------------------------------------------------


def test_command_line_options_beat_the_file_and_its_tasks(tmp_path: Path) -> None:
    good = script(tmp_path, "good", ANSWER, ANSWER)
    path = task_file(
        tmp_path,
        [
            {"id": "a", "prompt": "p", "model": "scripted:missing-but-overridden.yaml"},
            {"id": "b", "prompt": "p", "max_steps": 1},
        ],
        model="scripted:also-missing.yaml",
    )
    out = tmp_path / "o.jsonl"
    assert main(["run", str(path), "--out", str(out), "--model", good, "--max-steps", "3"]) == 0
    assert [r.model for r in read_results(out)[0]] == [good, good]


def test_only_runs_the_named_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = task_file(
        tmp_path,
        [{"id": i, "prompt": "p"} for i in "abc"],
        model=script(tmp_path, "m", ANSWER, ANSWER),
    )
    out = tmp_path / "o.jsonl"
    assert main(["run", str(path), "--out", str(out), "--only", "c", "--only", "a"]) == 0
    assert ids(out) == ["a", "c"]
    assert "2 passed" in capsys.readouterr().out


def test_fail_fast_leaves_the_rest_not_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = task_file(
        tmp_path,
        [{"id": i, "prompt": "p", "expect": {"equals": "x"}} for i in "abc"],
        model=script(tmp_path, "m", ANSWER, ANSWER, ANSWER),
    )
    out = tmp_path / "o.jsonl"
    assert main(["run", str(path), "--out", str(out), "--fail-fast"]) == 1
    assert ids(out) == ["a"]
    assert "1 failed, 2 not run" in capsys.readouterr().out


def test_yes_approves_listed_tools_and_no_transcript(tmp_path: Path) -> None:
    write = call("write_file", path="y.txt", content="ok")
    path = task_file(
        tmp_path,
        [{"id": "a", "prompt": "p", "expect": {"tool_called": "write_file"}}],
        model=script(tmp_path, "m", write, ANSWER),
        tools=["write_file"],
    )
    out = tmp_path / "o.jsonl"
    assert main(["run", str(path), "--out", str(out), "--yes", "--no-transcript"]) == 0
    (result,) = read_results(out)[0]
    assert result.transcript_path is None and (tmp_path / "y.txt").read_text() == "ok"
    assert not (tmp_path / "o.transcripts").exists()


def test_default_out_is_beside_the_task_file(tmp_path: Path) -> None:
    path = task_file(tmp_path, [{"id": "a", "prompt": "p"}], model=script(tmp_path, "m", ANSWER))
    assert main(["run", str(path)]) == 0
    assert ids(tmp_path / "tasks.results.jsonl") == ["a"]
    assert (tmp_path / "tasks.results.transcripts" / "a.jsonl").is_file()


def test_resume_skips_finished_tasks_and_counts_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = task_file(
        tmp_path, [{"id": i, "prompt": "p"} for i in "ab"], model=script(tmp_path, "m", ANSWER)
    )
    out = tmp_path / "o.jsonl"
    assert main(["run", str(path), "--out", str(out), "--only", "a"]) == 0
    capsys.readouterr()
    # The script has one turn: running "a" again would fail, so passing proves it was skipped.
    assert main(["run", str(path), "--out", str(out), "--resume"]) == 0
    assert ids(out) == ["a", "b"]
    captured = capsys.readouterr()
    assert "passed (earlier)" in captured.out and "2 passed" in captured.out
    assert "running 1 task (1 already done)" in captured.err


# -- progress --------------------------------------------------------------------------------------


def args_for(path: Path, out: Path, *extra: str) -> Any:
    return build_parser().parse_args(["run", str(path), "--out", str(out), *extra])


def test_progress_on_a_terminal_is_a_live_bar(tmp_path: Path) -> None:
    path = task_file(
        tmp_path,
        [{"id": "a", "prompt": "p"}, {"id": "b", "prompt": "p", "expect": {"equals": "[/]"}}],
        model=script(tmp_path, "m", ANSWER, ANSWER),
    )
    err = Console(file=io.StringIO(), force_terminal=True, width=120, color_system="standard")
    out = Console(file=io.StringIO(), force_terminal=True, width=120)
    assert run_tasks(args_for(path, tmp_path / "o.jsonl"), stdout=out, stderr=err) == 1
    shown = err.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[" in shown  # styled, and the cursor moves: a live display
    assert "✓ a passed" in shown and "✗ b FAILED" in shown
    assert "1 passed, 1 failed" in out.file.getvalue()  # type: ignore[attr-defined]


def test_the_live_bar_shows_task_step_tokens_and_rate() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    reporter = make_reporter(console)
    assert isinstance(reporter, RichReporter)
    reporter.start(3, 1)

    class Plan:
        id = "solve"
        model = "m"

    reporter.task_started(Plan())  # type: ignore[arg-type]
    reporter.task_step("solve", 4, Usage(completion_tokens=120, decode_seconds=4.0))
    reporter.progress.refresh()
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "solve · step 4 · 120 tokens · 30.0 tok/s" in shown
    assert "tasks (1 already done)" in shown and "0/3" in shown
    reporter.task_finished(TaskResult("solve", True, "ok", "completed", steps=4))
    reporter.note("a note [/] \x1b[2J")
    reporter.stop()
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "✓ solve passed" in shown and "a note [/]" in shown and "\x1b[2J" not in shown


def test_plain_progress_when_not_a_terminal() -> None:
    console = Console(file=io.StringIO(), width=80)
    reporter = make_reporter(console)
    assert isinstance(reporter, PlainReporter)

    class Plan:
        id = "solve"
        model = "qwq-32b"

    reporter.start(1, 0)
    reporter.task_started(Plan())  # type: ignore[arg-type]
    reporter.task_step("solve", 2, Usage(completion_tokens=50, decode_seconds=2.0))
    hostile = TaskResult("solve", False, "", "error", error="bad \x1b[2J [/] " + "x" * 300)
    reporter.task_finished(hostile)
    reporter.stop()
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines[:3] == [
        "running 1 task",
        "[1/1] solve: started (qwq-32b)",
        "[1/1] solve: step 2, 50 tokens, 25.0 tok/s",
    ]
    assert lines[3].startswith("[1/1] solve: FAILED (0.0 s, 0 steps, 0 tokens): bad [/] xxx")
    assert lines[3].endswith("…") and "\x1b" not in console.file.getvalue()  # type: ignore[attr-defined]


def test_summary_table_lists_every_task() -> None:
    console = Console(file=io.StringIO(), width=120)
    results = {
        "a": TaskResult("a", True, "ok", "completed", steps=2, usage={"completion_tokens": 9}),
        "b": TaskResult(
            "b", False, "", "cancelled", error="interrupted by SIGINT", interrupted=True
        ),
        "c": TaskResult("c", False, "", "completed", error=None),
    }
    print_summary(console, ["a", "b", "c", "d"], results, earlier={"a"})
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "passed (earlier)" in shown and "interrupted by SIGINT" in shown
    assert "not run" in shown
    assert "1 passed, 1 failed, 1 interrupted, 1 not run" in shown


@pytest.mark.real_model
@requires_tiny_model
def test_the_demo_runs_on_the_tiny_real_model(tmp_path: Path) -> None:
    demo = REPO / "examples" / "tasks" / "demo.yaml"
    out = tmp_path / "demo.jsonl"
    assert main(["run", str(demo), "--model", "smollm2-135m", "--out", str(out)]) == 0
    results = read_results(out)[0]
    assert [r.id for r in results] == ["arithmetic", "greeting", "boxed"]
    assert all(r.finish_reason == "completed" and r.answer for r in results)


# -- crash safety, with real processes -------------------------------------------------------------


def spawn(tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    with (tmp_path / "stderr.log").open("ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", *args],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def slow_batch(tmp_path: Path) -> tuple[Path, Path]:
    model = script(tmp_path, "slow", *[ANSWER + " " * 30] * 4, delay=0.02)
    path = task_file(
        tmp_path,
        [{"id": i, "prompt": "p", "expect": {"contains": "ok"}} for i in "abc"],
        model=model,
    )
    return path, tmp_path / "out.jsonl"


def test_resume_after_sigkill_finishes_without_redoing_tasks(tmp_path: Path) -> None:
    path, out = slow_batch(tmp_path)
    transcripts = tmp_path / "out.transcripts"
    process = spawn(tmp_path, str(path), "--out", str(out))
    try:
        wait_for(lambda: out.exists() and out.read_text().count("\n") >= 1)
        wait_for(lambda: (transcripts / "b.jsonl").exists())
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    done = ids(out)
    assert done[0] == "a" and len(done) < 3
    with out.open("a", encoding="utf-8") as handle:  # as if killed in the middle of a line
        handle.write('{"id": "c", "ok": tr')
    partial = load_transcript(transcripts / "b.jsonl")
    if "b" not in done:  # killed while b ran, or after its transcript ended but before its
        assert partial.runs  # result was written (a race no wait can close): readable either way

    resumed = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", str(path), "--out", str(out), "--resume"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "dropped a torn last line" in resumed.stderr
    assert sorted(ids(out)) == ["a", "b", "c"] and ids(out).count("a") == 1
    assert all(r.ok for r in read_results(out)[0])
    assert read_results(out)[1] == 0  # the torn line is gone


def test_sigterm_ends_the_task_cleanly_and_exits_130(tmp_path: Path) -> None:
    path, out = slow_batch(tmp_path)
    process = spawn(tmp_path, str(path), "--out", str(out))
    try:
        wait_for(lambda: (tmp_path / "out.transcripts" / "a.jsonl").exists())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 130
    finally:
        process.kill()
        process.wait()
    (partial,) = read_results(out)[0]
    assert (partial.id, partial.interrupted, partial.ok) == ("a", True, False)
    assert partial.error == "interrupted by SIGTERM"
    assert (
        "interrupted by SIGTERM; run again with --resume" in (tmp_path / "stderr.log").read_text()
    )
    lines = [json.loads(x) for x in Path(partial.transcript_path or "").read_text().splitlines()]
    assert lines[-1]["kind"] == "messages"  # what Agent.resume reads comes last
    finished = lines[-2]
    assert finished == {
        "kind": "finished",
        "reason": "cancelled",
        "answer": "",
        "detail": finished["detail"],
        "duration": finished["duration"],
    }

    resumed = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", str(path), "--out", str(out), "--resume"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert ids(out) == ["a", "a", "b", "c"]  # the interrupted "a" ran again


def test_every_problem_of_the_file_is_printed_in_one_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not in rounds: a schema error does not hide a duplicate id or an unknown tool."""
    path = task_file(
        tmp_path,
        [
            {"id": "a", "prompt": "p", "max_steps": "many"},
            {"id": "a", "prompt": "p", "tools": ["shell"]},
        ],
    )
    assert main(["run", str(path), "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "tasks[0].max_steps" in err
    assert "tasks[1].id: the id 'a' is also the id of tasks[0]" in err
    assert "tasks[1].tools[0]: unknown tool 'shell'" in err
