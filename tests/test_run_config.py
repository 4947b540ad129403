"""``qwq-agent run`` and the config file: the config is the layer between the built-in
defaults and the task file (built-in < config < task file < command line), its problems are
reported at its own path and key, and its ``[approvals]`` apply to a batch ("ask" denies)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cli.entry import main
from agent.config import load_config
from agent.settings import DEFAULTS
from agent.tasks.planning import plan_tasks
from agent.tasks.results import TaskResult, read_results
from agent.tasks.runner import batch_approval
from agent.tasks.taskfile import Settings, TaskPlan, load_task_file
from models.scripted import call

ANSWER = "Done.\n</think>\n\nok"
WRITE = call("write_file", path="note.txt", content="hi")


def script(folder: Path, name: str, *turns: str) -> str:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"turns": list(turns)}), encoding="utf-8")
    return f"scripted:{path}"


def task_file(folder: Path, tasks: list[dict[str, Any]], **defaults: Any) -> Path:
    path = folder / "tasks.yaml"
    data = {"workspace": ".", **defaults, "tasks": tasks}  # the test's folder, never the cwd
    data = {k: v for k, v in data.items() if v is not None}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def config_file(folder: Path, text: str) -> Path:
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def plans(folder: Path, tasks: list[dict[str, Any]], config: str | None = None, **kw: Any) -> list[TaskPlan]:  # fmt: skip
    loaded = load_config(config_file(folder, config)) if config is not None else None
    overrides = kw.pop("overrides", None)
    spec = load_task_file(task_file(folder, tasks, **kw))
    return plan_tasks(spec, overrides, cwd=folder, config=loaded)


def run(folder: Path, *argv: str) -> tuple[int, list[TaskResult]]:
    out = folder / "out.jsonl"
    code = main(["run", str(folder / "tasks.yaml"), "--out", str(out), *argv])
    return code, read_results(out)[0] if out.exists() else []


# -- layering ------------------------------------------------------------------------------------


CONFIG = """
workspace = "ws"
placement = "template"
tool_choice = "required"
temperature = 0.3
seed = 11
system = "CONFIG SYSTEM"
ctx = 4096
n_gpu_layers = 0
tools = ["calculator", "read_file"]

[limits]
max_steps = 4
max_tokens = 900
thinking_budget = 50
timeout = 60
max_repeated_calls = 2
tool_output_chars = 300

[tool_settings.python]
cpu_seconds = 3
"""


def test_a_config_value_applies_to_a_task_that_does_not_set_it(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()  # the config's paths are relative to the current folder
    (plan,) = plans(tmp_path, [{"id": "a", "prompt": "p"}], CONFIG, workspace=None)
    assert (plan.n_ctx, plan.n_gpu_layers, plan.tools) == (4096, 0, ("calculator", "read_file"))
    assert plan.sampling == {"temperature": 0.3, "seed": 11}
    layered = plan.settings()
    s = layered.settings
    assert (s.placement, s.tool_choice, s.system) == ("template", "required", "CONFIG SYSTEM")
    assert (s.max_steps, s.max_tokens, s.thinking_budget, s.timeout) == (4, 900, 50, 60)
    assert (s.max_repeated_calls, s.tool_output_chars) == (2, 300)
    assert s.tool_settings == {"python": {"cpu_seconds": 3}}
    assert {layered.sources[k] for k in ("placement", "max_steps", "tool_output_chars")} == {"file"}
    assert layered.sources["workspace"] == "file" and s.workspace == tmp_path / "ws"


def test_the_task_file_beats_the_config(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    a, b = plans(
        tmp_path,
        [
            {"id": "a", "prompt": "p", "max_steps": 9, "temperature": 0.9},
            {"id": "b", "prompt": "p"},
        ],
        CONFIG,
        placement="interleaved",
        tools=["calculator"],
        ctx=2048,
        system="FILE SYSTEM",
    )
    s = a.settings().settings
    assert (s.max_steps, s.placement, s.system, s.max_tokens) == (
        9,
        "interleaved",
        "FILE SYSTEM",
        900,
    )
    assert a.sampling == {"temperature": 0.9, "seed": 11}
    assert (a.tools, a.n_ctx) == (("calculator",), 2048)
    assert a.settings().sources["max_steps"] == "task file" and s.workspace == tmp_path
    assert b.settings().settings.max_steps == 4  # b does not set it: the config's
    assert b.settings().sources["max_tokens"] == "file"


def test_the_command_line_beats_both(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    (plan,) = plans(
        tmp_path,
        [{"id": "a", "prompt": "p", "max_steps": 9}],
        CONFIG,
        overrides=Settings(max_steps=2, placement="interleaved", temperature=0.1, ctx=1024),
    )
    layered = plan.settings()
    assert (layered.settings.max_steps, layered.settings.placement) == (2, "interleaved")
    assert layered.sources["max_steps"] == "command line"
    assert (plan.sampling["temperature"], plan.n_ctx) == (0.1, 1024)


def test_the_config_limits_and_model_run_a_batch_end_to_end(tmp_path: Path) -> None:
    """The config names the model and max_steps = 1: task a (no max_steps) stops after its
    first step; task b sets max_steps: 3 (the task file wins) and completes; with --max-steps 1
    on the command line b stops too."""
    add = call("calculator", expression="1+1")
    model = script(tmp_path, "m", add, add, ANSWER)
    config = config_file(tmp_path, f'model = "{model}"\n[limits]\nmax_steps = 1\n')
    task_file(tmp_path, [{"id": "a", "prompt": "p"}, {"id": "b", "prompt": "p", "max_steps": 3}])
    code, (a, b) = run(tmp_path, "--config", str(config))
    assert code == 1
    assert (a.finish_reason, a.model) == ("max_steps", model)
    assert b.ok and b.finish_reason == "completed"
    script(tmp_path, "m", add, add)  # the same script again, for a second batch
    code, results = run(tmp_path, "--config", str(config), "--max-steps", "1")
    assert code == 1 and [r.finish_reason for r in results] == ["max_steps", "max_steps"]


def test_the_config_tool_output_cap_reaches_the_tools(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("x" * 5000, encoding="utf-8")
    model = script(tmp_path, "m", call("read_file", path="big.txt"), ANSWER)
    config = config_file(tmp_path, "[limits]\ntool_output_chars = 200\n")
    task_file(tmp_path, [{"id": "a", "prompt": "p"}], model=model, tools=["read_file"])
    code, (a,) = run(tmp_path, "--config", str(config))
    assert code == 0
    transcript = Path(a.transcript_path or "").read_text(encoding="utf-8")
    assert "x" * 200 in transcript and "x" * 1000 not in transcript


# -- problems of config values -------------------------------------------------------------------


def test_a_config_only_model_problem_names_the_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, '# models\nmodel = "scripted:missing.yaml"\n')
    task_file(tmp_path, [{"id": "a", "prompt": "p"}])
    code, _ = run(tmp_path, "--config", str(config))
    err = capsys.readouterr().err
    assert code == 2
    assert f"{config}:2:1: model: no script at" in " ".join(err.split())
    assert "command line" not in err and "tasks.yaml" not in err


def test_a_config_only_tool_problem_names_the_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, 'tools = ["calculator", "pythn"]\n')
    task_file(tmp_path, [{"id": "a", "prompt": "p"}])
    code, _ = run(tmp_path, "--config", str(config))
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and f"{config}:1:1: tools[1]: unknown tool 'pythn'" in err


def test_an_expected_tool_the_config_does_not_enable_says_so(tmp_path: Path) -> None:
    from agent.tasks.taskfile import TaskFileError

    with pytest.raises(TaskFileError) as caught:
        plans(
            tmp_path,
            [{"id": "a", "prompt": "p", "expect": {"tool_called": "read_file"}}],
            'tools = ["calculator"]\n',
        )
    assert f"(from the config file {tmp_path / 'config.toml'})" in str(caught.value)


def test_an_approve_list_is_not_broken_by_the_config_tools(tmp_path: Path) -> None:
    """A task file approving a tool its default tools would not enable is an error, but not
    when the tools come from the user's config (which the task file cannot know)."""
    from agent.tasks.taskfile import TaskFileError

    tasks = [{"id": "a", "prompt": "p"}]
    with pytest.raises(TaskFileError, match="'write_file' is approved but not enabled"):
        plans(tmp_path, tasks, approve=["write_file"])
    (plan,) = plans(tmp_path, tasks, 'tools = ["write_file"]\n', approve=["write_file"])
    assert plan.tools == ("write_file",) and plan.approve == ("write_file",)


def test_a_load_error_from_a_config_ctx_points_at_the_config(tmp_path: Path) -> None:
    from agent.tasks.runner import explain_load_error

    (plan,) = plans(tmp_path, [{"id": "a", "prompt": "p"}], "\nctx = 65536\n")
    message = explain_load_error(plan, "the model does not fit; use --ctx 8192 or less")
    assert (
        message
        == f"{tmp_path / 'config.toml'}:2:1: ctx: the model does not fit; use ctx: 8192 or less"
    )


# -- approvals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("approvals", "approve", "yes", "expected"),
    [
        ({}, [], False, {"*": "deny"}),
        ({"write_file": "allow"}, [], False, {"*": "deny", "write_file": "allow"}),
        ({"write_file": "ask", "*": "ask"}, [], False, {"*": "deny", "write_file": "deny"}),
        ({"write_file": "deny"}, ["write_file"], False, {"*": "deny", "write_file": "allow"}),
        ({"*": "allow"}, [], False, {"*": "allow"}),
        ({"write_file": "deny"}, [], True, {"*": "allow"}),
    ],
)
def test_batch_approval_layers_the_config_under_the_task_and_yes(
    tmp_path: Path, approvals: dict[str, str], approve: list[str], yes: bool, expected: Any
) -> None:
    section = "".join(f'"{k}" = "{v}"\n' for k, v in approvals.items())
    task: dict[str, Any] = {"id": "a", "prompt": "p", "tools": ["write_file"]}
    if approve:
        task["approve"] = approve
    (plan,) = plans(tmp_path, [task], "[approvals]\n" + section)
    assert batch_approval(plan, approve_all=yes) == expected


@pytest.mark.parametrize(("word", "written"), [("allow", True), ("ask", False), ("deny", False)])
def test_config_approvals_in_a_batch(tmp_path: Path, word: str, written: bool) -> None:
    model = script(tmp_path, "m", WRITE, ANSWER)
    config = config_file(tmp_path, f'[approvals]\nwrite_file = "{word}"\n')
    task_file(tmp_path, [{"id": "a", "prompt": "p"}], model=model, tools=["write_file"])
    code, (a,) = run(tmp_path, "--config", str(config))
    assert code == 0  # the task completes either way; the model is told when it is denied
    assert a.tool_calls[0]["approved"] is written
    assert (tmp_path / "note.txt").exists() is written


# -- no config file ------------------------------------------------------------------------------


def test_run_without_a_config_file_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QWQ_AGENT_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config-here"))
    model = script(tmp_path, "m", WRITE, ANSWER)
    task_file(tmp_path, [{"id": "a", "prompt": "p"}], model=model, tools=["write_file"])
    (plan,) = plan_tasks(load_task_file(tmp_path / "tasks.yaml"), cwd=tmp_path)
    assert (plan.file_settings, plan.approvals) == ({}, {})
    layered = plan.settings()
    assert layered.settings == DEFAULTS.replace(workspace=tmp_path)
    given = {name: source for name, source in layered.sources.items() if source != "default"}
    assert given == {"workspace": "task file"}
    code, (a,) = run(tmp_path)
    assert code == 0 and a.tool_calls[0]["approved"] is False  # denied, as before


def test_run_help_says_where_settings_come_from(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "else the config file (--config" in text and "ask deny" in text
    assert "(default: the task file's, else the config file's)" in text
