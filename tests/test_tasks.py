"""The task file: schema, safe YAML loading with located errors, and planning."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from agent.tasks import safe_yaml
from agent.tasks.planning import plan_tasks
from agent.tasks.taskfile import Settings, TaskFileError, load_task_file, read_task_file
from models.llama.options import LlamaOptions
from models.options import BackendOptions

SCRIPT = 'turns:\n  - "</think>\\n\\nok"\n'


def write(folder: Path, text: str, name: str = "tasks.yaml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(TaskFileError) as info:
        plan_tasks(read_task_file(path), cwd=path.parent)
    return [str(p) for p in info.value.problems]


def one_problem(path: Path) -> str:
    found = problems(path)
    assert len(found) == 1, found
    return found[0]


# -- every field, merged and resolved ----------------------------------------------------------


def test_every_field_is_planned(tmp_path: Path) -> None:
    write(tmp_path, SCRIPT, "models/one.yaml")
    write(tmp_path, SCRIPT, "models/two.yaml")
    write(tmp_path, "Be terse.\n", "prompts/system.md")
    write(tmp_path, "Task file says: {{ word }}!\n", "prompts/task.md.j2")
    (tmp_path / "ws").mkdir()
    (tmp_path / "other-ws").mkdir()
    path = write(
        tmp_path,
        """\
        model: scripted:models/one.yaml
        ctx: 4096
        n_gpu_layers: -1
        temperature: 0.5
        top_p: 0.9
        top_k: 20
        min_p: 0.05
        presence_penalty: 1.5
        seed: 7
        tools: [calculator, write_file]
        approve: [write_file]
        placement: template
        tool_choice: required
        workspace: ws
        max_steps: 5
        max_tokens: 300
        timeout_s: 30
        system_file: prompts/system.md
        tasks:
          - id: defaults
            prompt: "Keep {% raw %}{{ literal }}{% endraw %} braces: no inputs, still rendered."
          - id: overrides
            model: scripted:models/two.yaml
            ctx: 2048
            n_gpu_layers: 0
            temperature: 1
            top_p: 1.0
            top_k: 0
            min_p: 0.0
            presence_penalty: 0
            seed: 8
            tools: [calculator, read_file, read_file]
            approve: []
            placement: interleaved
            tool_choice: auto
            workspace: other-ws
            max_steps: 2
            max_tokens: 50
            timeout_s: 1.5
            system: Inline system.
            prompt_file: prompts/task.md.j2
            inputs: {word: hello}
            expect:
              equals: ok
        """,
    )
    first, second = plan_tasks(load_task_file(path), cwd=tmp_path)
    assert first.model == f"scripted:{tmp_path / 'models/one.yaml'}"
    assert (first.n_ctx, first.n_gpu_layers) == (4096, -1)
    assert first.backend_options().llama == LlamaOptions(n_ctx=4096, n_gpu_layers=-1)
    assert first.backend_options() == BackendOptions.from_mapping(
        {"n_ctx": 4096, "n_gpu_layers": -1}
    )
    assert dict(first.sampling) == {
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 20,
        "min_p": 0.05,
        "presence_penalty": 1.5,
        "seed": 7,
    }
    assert (first.tools, first.approve) == (("calculator", "write_file"), ("write_file",))
    assert (first.placement, first.tool_choice) == ("template", "required")
    assert first.workspace == tmp_path / "ws"
    assert (first.max_steps, first.max_tokens, first.timeout_s) == (5, 300, 30)
    assert first.system == "Be terse.\n"
    assert first.prompt == "Keep {{ literal }} braces: no inputs, still rendered."
    assert first.expect is None

    assert second.model == f"scripted:{tmp_path / 'models/two.yaml'}"
    assert second.model_key != first.model_key
    assert second.backend_options().llama == LlamaOptions(n_ctx=2048, n_gpu_layers=0)
    assert second.sampling["temperature"] == 1 and second.sampling["top_k"] == 0
    assert second.tools == ("calculator", "read_file") and second.approve == ()
    assert (second.placement, second.tool_choice) == ("interleaved", "auto")
    assert second.workspace == tmp_path / "other-ws"
    assert (second.max_steps, second.max_tokens, second.timeout_s) == (2, 50, 1.5)
    assert second.system == "Inline system."
    assert second.prompt == "Task file says: hello!\n"
    assert second.expect is not None and second.expect.equals == "ok"


def test_built_in_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "tasks:\n  - {id: a, prompt: hi}\n")
    (plan,) = plan_tasks(load_task_file(path), cwd=tmp_path)
    assert plan.model == "qwq-32b" and plan.tools == ("calculator",) and plan.approve == ()
    assert (plan.placement, plan.tool_choice, plan.max_steps) == ("interleaved", "auto", 20)
    assert plan.max_tokens is None and plan.timeout_s is None and plan.system is None
    assert plan.workspace == tmp_path and dict(plan.sampling) == {}


def test_command_line_beats_task_and_file(tmp_path: Path) -> None:
    write(tmp_path, SCRIPT, "file.yaml")
    write(tmp_path, SCRIPT, "cli.yaml")
    (tmp_path / "cli-ws").mkdir()
    path = write(
        tmp_path / "sub",
        """\
        model: scripted:../file.yaml
        max_steps: 3
        system: from the file
        tasks:
          - {id: a, prompt: hi, max_steps: 4, temperature: 0.1, system_file: nowhere.md}
        """,
    )
    overrides = Settings(
        model="scripted:cli.yaml",
        max_steps=9,
        temperature=0.9,
        system="from the command line",
        workspace="cli-ws",
        tools=[],
    )
    (plan,) = plan_tasks(load_task_file(path), overrides, cwd=tmp_path)
    # Command-line paths are relative to the current directory, file paths to the file.
    assert plan.model == f"scripted:{tmp_path / 'cli.yaml'}"
    assert plan.workspace == tmp_path / "cli-ws"
    assert plan.max_steps == 9 and plan.sampling["temperature"] == 0.9
    assert plan.system == "from the command line" and plan.tools == ()


# -- schema errors, located ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("model: yes\ntasks: [{id: a, prompt: p}]\n", ":1:8:", ["boolean true", 'quotes: "yes"']),
        (
            "tasks:\n  - id: a\n    prompt: p\n    expect: {equals: 1.10}\n",
            ":4:22:",
            ["YAML read 1.10 as the number 1.1", 'quotes: "1.10"'],
        ),
        ("placement: off\ntasks: [{id: a, prompt: p}]\n", ":1:12:", ["boolean false", "quotes"]),
        ("tasks:\n  - id: 2024-01-01\n    prompt: p\n", ":2:9:", ["the date 2024-01-01"]),
        ("tasks:\n  - id: 7\n    prompt: p\n", ":2:9:", ["the number 7", 'quotes: "7"']),
        ("tasks: [{id: a, prompt: p, promt: q}]\n", ":1:28:", ["unknown key 'promt'"]),
        ("modle: x\ntasks: [{id: a, prompt: p}]\n", ":1:1:", ["did you mean 'model'"]),
        (
            "tasks: [{id: a, prompt: p, expect: {contain: x}}]\n",
            ":1:37:",
            ["did you mean 'contains'"],
        ),
        ("model: x\n", ":1:1:", ["'tasks' is required"]),
        ("tasks: []\n", ":1:8:", ["at least 1 item"]),
        ("tasks: [{prompt: p}]\n", ":1:9:", ["'id' is required"]),
        ("tasks: [{id: a}]\n", ":1:9:", ["exactly one of prompt or prompt_file"]),
        ("tasks: [{id: a, prompt: p, prompt_file: f}]\n", ":1:9:", ["exactly one of prompt"]),
        ("system: s\nsystem_file: f\ntasks: [{id: a, prompt: p}]\n", ":1:1:", ["not both"]),
        (
            "tasks: [{id: a, prompt: p}, {id: a, prompt: q}]\n",
            ":1:34:",
            ["also the id of tasks[0]"],
        ),
        ("tasks: [{id: 'a b', prompt: p}]\n", ":1:14:", ["an id is 1-100 letters"]),
        ("max_steps: 0\ntasks: [{id: a, prompt: p}]\n", ":1:12:", ["greater than or equal to 1"]),
        (
            "max_steps: 2.5\ntasks: [{id: a, prompt: p}]\n",
            ":1:12:",
            ["expected a whole number", "2.5"],
        ),
        ("temperature: '0.5'\ntasks: [{id: a, prompt: p}]\n", ":1:14:", ["valid number"]),
        ("tools: calculator\ntasks: [{id: a, prompt: p}]\n", ":1:8:", ["valid list"]),
        ("tasks: [{id: a, prompt: p, expect: {}}]\n", ":1:36:", ["expect: has no check"]),
        ("tasks: [{id: a, prompt: p, expect: {regex: '('}}]\n", ":1:44:", ["does not compile"]),
        (
            "tasks: [{id: a, prompt: p, expect: {json_schema: {type: 5}}}]\n",
            ":1:50:",
            ["not a valid JSON Schema"],
        ),
        ("tasks: [{id: a, prompt: p, expect: {contains: []}}]\n", ":1:47:", ["at least one"]),
        (
            "tasks: [{id: a, prompt: p, inputs: {d: 2024-01-01}}]\n",
            ":1:40:",
            ["the date 2024-01-01", "not JSON"],
        ),
        ("- just\n- a list\n", "", ["a mapping with a tasks: list, not a list"]),
    ],
)
def test_schema_errors_say_where_and_what(
    tmp_path: Path, text: str, where: str, words: list[str]
) -> None:
    message = one_problem(write(tmp_path, text))
    assert message.startswith(str(tmp_path / "tasks.yaml") + where)
    for word in words:
        assert word in message


def test_all_problems_are_reported_in_file_order(tmp_path: Path) -> None:
    path = write(tmp_path, "top_k: -1\ntasks:\n  - {id: a, prompt: p, seed: x}\nfoo: 1\n")
    found = problems(path)
    assert [p.split(": ")[0].rsplit(":", 2)[1] for p in found] == ["1", "3", "4"]


# -- the YAML traps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "where", "words"),
    [
        (b"model: a\nmodel: b\ntasks: [{id: a, prompt: p}]\n", ":2:1:", ["'model' appears twice"]),
        (
            b"tasks:\n  - id: a\n    id: b\n",
            ":3:5:",
            ["key 'id' appears twice in this mapping (first on line 2)"],
        ),
        (b"tasks:\n\t- {id: a, prompt: p}\n", ":2:1:", ["tab character", "spaces"]),
        (b"on: 1\ntasks: [{id: a, prompt: p}]\n", ":1:1:", ["boolean", 'quotes: "on"']),
        (b"1.10: x\n", ":1:1:", ["float", 'quotes: "1.10"']),
        (b"? [a]\n: x\n", ":1:3:", ["a mapping key must be plain text"]),
        (b"", "", ["empty"]),
        (b"# only a comment\n\n", "", ["empty"]),
        (b"model: caf\xe9\n", ":1:11:", ["not valid UTF-8 (byte 0xe9)", "UTF-8"]),
        (b"a: 1\nb: \xff\xfe\n", ":2:4:", ["not valid UTF-8"]),
        (b"model: a\x01b\n", ":1:9:", ["#x0001 is not allowed"]),
        (b"x: !!python/object/apply:os.system [echo hi]\n", ":1:4:", ["tag", "not allowed"]),
        (b"x: !!python/name:os.system ''\n", ":1:4:", ["not allowed"]),
        (b"x: !custom {a: 1}\n", ":1:4:", ["not allowed"]),
        (b"x: !!set {a}\n", ":1:4:", ["not allowed"]),
        (b"a: 1\n---\nb: 2\n", ":2:1:", ["expected a single document"]),
        (b"a: [1, 2\n", "", ["expected ',' or ']'"]),
        (b"x: *nowhere\n", ":1:4:", ["undefined alias"]),
    ],
)
def test_yaml_traps(tmp_path: Path, data: bytes, where: str, words: list[str]) -> None:
    path = tmp_path / "tasks.yaml"
    path.write_bytes(data)
    message = one_problem(path)
    assert message.startswith(str(path) + where), message
    for word in words:
        assert word in message


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    for text in (
        "x: " + "[" * 100 + "]" * 100,
        "x:\n" + "".join("  " * i + "- \n" for i in range(60)),
    ):
        path = write(tmp_path, text)
        assert "nested more than 40 levels deep" in one_problem(path)


def test_billion_laughs_is_refused(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol"]']
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, 40)]
    message = one_problem(write(tmp_path, "\n".join(lines) + "\n"))
    assert "aliases expand the document past 100000 values" in message


def test_too_many_aliases_are_refused(tmp_path: Path) -> None:
    text = "a: &x 1\nb: [" + ", ".join(["*x"] * 101) + "]\n"
    assert "more than 100 aliases" in one_problem(write(tmp_path, text))


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    assert "nested more than" in one_problem(write(tmp_path, "a: &x [*x]\n"))


def test_anchors_aliases_and_merge_keys_work_within_limits(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        tasks:
          - &base {id: a, prompt: shared, max_steps: 3, expect: &ok {contains: ok}}
          - <<: *base
            id: b
            expect: *ok
          - <<: [*base, {temperature: 0.2}]
            id: c
            max_steps: 4
        """,
    )
    plans = plan_tasks(load_task_file(path), cwd=tmp_path)
    assert [(p.id, p.prompt, p.max_steps) for p in plans] == [
        ("a", "shared", 3),
        ("b", "shared", 3),
        ("c", "shared", 4),
    ]
    assert plans[2].sampling == {"temperature": 0.2}
    assert plans[1].expect == plans[0].expect


def test_oversized_and_unreadable_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "tasks: [{id: a, prompt: p}]\n")
    monkeypatch.setattr(safe_yaml, "MAX_BYTES", 10)
    assert "the limit is 10" in one_problem(path)
    missing = tmp_path / "missing.yaml"
    assert "cannot read the file" in one_problem(missing)


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "tasks.yaml"
    path.write_bytes(b"\xef\xbb\xbftasks: [{id: a, prompt: p}]\n")
    assert [p.id for p in plan_tasks(load_task_file(path), cwd=tmp_path)] == ["a"]


# -- planning errors --------------------------------------------------------------------------------


def test_planning_errors_are_located(tmp_path: Path) -> None:
    write(tmp_path, "{% if %}", "bad.j2")
    write(tmp_path, b"\xff".decode("latin-1"), "latin.md")
    (tmp_path / "latin.md").write_bytes(b"caf\xe9")
    path = write(
        tmp_path,
        """\
        model: scripted:missing.yaml
        tools: [calculator, shell]
        approve: [rm]
        workspace: nowhere
        tasks:
          - {id: a, prompt: "Hi {{ name }}", inputs: {nam: x}}
          - {id: b, prompt_file: bad.j2, inputs: {}}
          - {id: c, prompt_file: missing.md}
          - {id: d, prompt: p, system_file: latin.md}
          - {id: e, prompt: p, model: no-such-model}
          - {id: f, prompt: p, model: missing.gguf}
          - {id: g, prompt: "{{ ''.__class__ }}", inputs: {}}
          - {id: h, prompt: "   {{ x }}", inputs: {x: ""}}
        """,
    )
    found = problems(path)
    expected = [
        ":1:8: model: no script at",
        ":2:21: tools[1]: unknown tool 'shell'; the built-in tools are: calculator",
        ":3:11: approve[0]: unknown tool 'rm'",
        ":4:12: workspace: the folder",
        ":6:21: tasks[0].prompt: the prompt cannot be rendered: 'name' is undefined",
        ":7:26: tasks[1].prompt_file: line 1 of bad.j2 is not a valid Jinja2 template",
        ":8:26: tasks[2].prompt_file: ",
        ":9:37: tasks[3].system_file: ",
        ":10:31: tasks[4].model: unknown model 'no-such-model'",
        ":11:31: tasks[5].model: no model file at",
        ":12:21: tasks[6].prompt: the prompt cannot be rendered",
        ":13:21: tasks[7].prompt: the prompt is empty",
    ]
    assert len(found) == len(expected), found
    for message, start in zip(found, expected, strict=True):
        assert message.startswith(str(path) + start), (message, start)
    assert "missing.md: cannot read the file" in found[6]
    assert "not valid UTF-8" in found[7]


def test_command_line_problems_name_the_option(tmp_path: Path) -> None:
    path = write(tmp_path, "tasks: [{id: a, prompt: p}]\n")
    overrides = Settings(model="nope", tools=["shell"], workspace="missing", timeout_s=3)
    with pytest.raises(TaskFileError) as info:
        plan_tasks(load_task_file(path), overrides, cwd=tmp_path)
    messages = [str(p) for p in info.value.problems]
    assert messages[0].startswith("command line: --model: unknown model 'nope'")
    assert messages[1].startswith("command line: --tools: unknown tool 'shell'")
    assert messages[2].startswith("command line: --workspace: the folder")


# -- every prompt is a template -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "rendered"),
    [
        ("plain text, {braces} and \\boxed{} stay", "plain text, {braces} and \\boxed{} stay"),
        ("{% raw %}{{ kept }}{% endraw %}", "{{ kept }}"),
        ("{{ '{{' }} kept }}", "{{ kept }}"),
        ("{{ 'shout' | upper }}", "SHOUT"),
    ],
)
def test_a_prompt_without_inputs_is_rendered_too(
    tmp_path: Path, prompt: str, rendered: str
) -> None:
    path = write(tmp_path, f"tasks:\n  - id: a\n    prompt: {json.dumps(prompt)}\n")
    (plan,) = plan_tasks(load_task_file(path), cwd=tmp_path)
    assert plan.prompt == rendered


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        (
            "tasks:\n  - id: a\n    prompt: Hello {{ name }}\n",
            ":3:13: tasks[0].prompt:",
            ["'name' is undefined (line 1 of the prompt)", "inputs: (given: none)", "{% raw %}"],
        ),
        (
            "tasks:\n  - id: a\n    prompt: hi {{ name \n",
            ":3:13: tasks[0].prompt:",
            ["line 1 of the prompt is not a valid Jinja2 template", "{% raw %}"],
        ),
        (
            "tasks:\n  - id: a\n    prompt: |\n      one\n      two {{ x }}\n    inputs: {y: 1}\n",
            ":3:13: tasks[0].prompt:",
            ["'x' is undefined (line 2 of the prompt)", "(given: y)"],
        ),
        (
            "tasks:\n  - id: a\n    prompt_file: p.md\n",
            ":3:18: tasks[0].prompt_file:",
            ["'who' is undefined (line 2 of p.md)"],
        ),
        (
            "tasks:\n  - id: a\n    prompt: '{# not closed'\n",
            ":3:13: tasks[0].prompt:",
            ["Missing end of comment tag"],
        ),
    ],
)
def test_a_prompt_that_does_not_render_is_a_located_error_without_inputs_too(
    tmp_path: Path, text: str, where: str, words: list[str]
) -> None:
    write(tmp_path, "Hello,\n{{ who }}!\n", "p.md")
    path = write(tmp_path, text)
    message = one_problem(path)
    assert message.startswith(str(path) + where), message
    for word in words:
        assert word in message


# -- approve: only enabled tools ------------------------------------------------------------------


def test_approving_a_tool_that_is_not_enabled_is_a_located_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        approve: [python]
        tasks:
          - {id: a, prompt: p}
          - {id: b, prompt: p, tools: [calculator, write_file], approve: [write_file, python]}
          - {id: c, prompt: p, tools: [], approve: [read_file]}
        """,
    )
    found = problems(path)
    assert len(found) == 3, found
    assert found[0].startswith(f"{path}:1:11: approve[0]: 'python' is approved but not enabled")
    assert "the enabled tools are: calculator (the default: tools: is not set)" in found[0]
    assert "Add 'python' to tools: or remove it from approve:" in found[0]
    assert found[1].startswith(f"{path}:4:79: tasks[1].approve[1]: 'python' is approved")
    assert "the enabled tools are: calculator, write_file." in found[1]
    assert found[2].startswith(f"{path}:5:45: tasks[2].approve[0]: 'read_file' is approved")
    assert "the enabled tools are: none (tools: is empty)" in found[2]


def test_approve_is_checked_where_it_applies(tmp_path: Path) -> None:
    # The file's list applies to the tasks without their own: one of them enables each tool.
    # A task that narrows its tools does not make the file's list wrong, nor does --tools.
    path = write(
        tmp_path,
        """\
        tools: [calculator, write_file]
        approve: [write_file, python]
        tasks:
          - {id: a, prompt: p, tools: [python]}
          - {id: b, prompt: p}
          - {id: c, prompt: p, tools: [calculator]}
          - {id: d, prompt: p, tools: [calculator], approve: []}
        """,
    )
    plans = plan_tasks(load_task_file(path), Settings(tools=["calculator"]), cwd=tmp_path)
    assert [p.approve for p in plans] == [("write_file", "python")] * 3 + [()]
    assert all(p.tools == ("calculator",) for p in plans)


def test_approve_is_not_checked_against_tools_when_mcp_servers_may_bring_them(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "mcp: ['python server.py']\ntools: []\napprove: [python, add]\n"
        "tasks: [{id: a, prompt: p}]\n",
    )
    (plan,) = plan_tasks(load_task_file(path), cwd=tmp_path)
    assert plan.approve == ("python", "add")


def test_load_options_remember_where_the_file_sets_them(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ctx: 100000\ntasks:\n  - {id: a, prompt: p}\n  - {id: b, prompt: p, n_gpu_layers: 0}\n",
    )
    first, second = plan_tasks(load_task_file(path), cwd=tmp_path)
    assert first.load_options_at == {"ctx": f"{path}:1:6"}
    assert second.load_options_at == {"ctx": f"{path}:1:6", "n_gpu_layers": f"{path}:4:38"}
    (from_flag,) = plan_tasks(load_task_file(path), Settings(ctx=4096), cwd=tmp_path)[:1]
    assert from_flag.load_options_at == {}


# -- every problem in one pass --------------------------------------------------------------------


def test_every_kind_of_problem_is_reported_in_one_pass(tmp_path: Path) -> None:
    """Schema errors, duplicate ids and planning problems come together, not in rounds."""
    path = write(
        tmp_path,
        """\
        max_steps: 0
        tools: [calculator, shell]
        tasks:
          - {id: a, prompt: p, seed: x}
          - {id: a, prompt: p}
          - {id: b, prompt: "Hi {{ name }}"}
          - {id: c, prompt: p, workspace: nowhere, tempreature: 1}
          - {id: 'bad id', prompt: p}
          - {id: d, prompt: p, expect: {tool_called: python}}
        """,
    )
    found = problems(path)
    expected = [
        ":1:12: max_steps: ",
        ":2:21: tools[1]: unknown tool 'shell'",
        ":4:30: tasks[0].seed: ",
        ":5:10: tasks[1].id: the id 'a' is also the id of tasks[0]",
        ":6:21: tasks[2].prompt: the prompt cannot be rendered: 'name' is undefined",
        ":7:35: tasks[3].workspace: the folder",
        ":7:44: tasks[3].tempreature: unknown key 'tempreature'; did you mean 'temperature'?",
        ":8:10: tasks[4].id: an id is 1-100 letters",
        ":9:46: tasks[5].expect.tool_called: 'python' is expected to be called but is not",
    ]
    assert len(found) == len(expected), found
    for message, start in zip(found, expected, strict=True):
        assert message.startswith(str(path) + start), (message, start)
    assert "the enabled tools are: calculator. Add 'python'" in found[-1]  # not 'shell'


def test_a_wrong_tools_list_does_not_make_up_approval_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "tools: python\napprove: [python]\ntasks: [{id: a, prompt: p}]\n")
    (found,) = problems(path)
    assert ":1:8: tools: " in found


def test_load_task_file_still_refuses_a_file_that_breaks_the_schema(tmp_path: Path) -> None:
    path = write(tmp_path, "tasks:\n  - {id: a, prompt: p}\n  - {id: a, prompt: q}\n")
    with pytest.raises(TaskFileError) as info:
        load_task_file(path)
    assert "ids must be unique" in str(info.value)


@pytest.mark.parametrize(
    ("text", "where", "enabled"),
    [
        (
            "tasks: [{id: a, prompt: p, expect: {tool_called: python}}]\n",
            ":1:50: tasks[0].expect.tool_called:",
            "calculator (the default: tools: is not set)",
        ),
        (
            "tools: [calculator, read_file]\n"
            "tasks: [{id: a, prompt: p, expect: {tool_called: [read_file, python]}}]\n",
            ":2:62: tasks[0].expect.tool_called[1]:",
            "calculator, read_file.",
        ),
    ],
)
def test_tool_called_must_name_an_enabled_tool(
    tmp_path: Path, text: str, where: str, enabled: str
) -> None:
    message = one_problem(write(tmp_path, text))
    assert message.startswith(str(tmp_path / "tasks.yaml") + where), message
    assert "'python' is expected to be called but is not enabled" in message
    assert f"the enabled tools are: {enabled}" in message


def test_tool_called_is_checked_against_the_tools_of_the_command_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tools: [python]\ntasks: [{id: a, prompt: p, expect: {tool_called: python}}]\n",
    )
    assert plan_tasks(load_task_file(path), cwd=tmp_path)  # enabled by the file
    with pytest.raises(TaskFileError) as info:
        plan_tasks(load_task_file(path), Settings(tools=["calculator"]), cwd=tmp_path)
    assert "the enabled tools are: calculator (from --tools)" in str(info.value)


def test_tool_called_is_not_checked_when_mcp_servers_may_bring_the_tool(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "mcp: [some-server]\ntasks: [{id: a, prompt: p, expect: {tool_called: get_time}}]\n",
    )
    (plan,) = plan_tasks(load_task_file(path), cwd=tmp_path)
    assert plan.mcp == ("some-server",)
