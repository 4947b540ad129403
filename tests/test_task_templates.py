"""Task prompts are Jinja2 templates rendered before any task runs: work and size are bounded,
and every failure is a located problem of the task file (never an uncaught error or a hang)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from agent.tasks.planning import plan_tasks
from agent.tasks.taskfile import TaskFileError, load_task_file
from agent.tasks.templates import MAX_CHARS, BoundedEnvironment
from tests.conftest import HANG_BOUND


def plan_problem(tmp_path: Path, prompt: str) -> str:
    path = tmp_path / "tasks.yaml"
    path.write_text(f"tasks:\n  - id: a\n    prompt: {json.dumps(prompt)}\n", encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(TaskFileError) as info:
        plan_tasks(load_task_file(path), cwd=tmp_path)
    assert time.monotonic() - started < HANG_BOUND
    (problem,) = info.value.problems
    message = str(problem)
    assert message.startswith(f"{path}:3:13: tasks[0].prompt: the prompt cannot be rendered")
    return message


@pytest.mark.parametrize(
    ("prompt", "words"),
    [
        ("{{ range(10**9)|list|length }}", "larger than 1,000,000"),
        ("{{ range(50000)|list|length }}", "more than 10,000"),
        ("{% for i in range(10**6) %}{% endfor %}", "more than 10,000"),
        (
            "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
            "rendering took more than",
        ),
        (
            "{% for i in range(10000) %}{% for j in 'ab' * 5000 %}{% endfor %}{% endfor %}",
            "rendering took more than",
        ),
        ("{{ 'x' * 10**10 }}", "makes more than"),
        ("{{ (range(1000)|list) * 10**6 }}", "makes more than"),
        ("{{ 2 ** (10**7) }}", "bits"),
        ("{{ 'a'|center(10**9) }}", "larger than 1,000,000"),
        ("{{ 'a'|indent(10**9) }}", "larger than 1,000,000"),
        ("{{ '%999999999d' % 1 }}", "wide"),
        ("{{ '%999999999d'|format(1) }}", "wide"),
        ("{{ '{:999999999}'.format(1) }}", "wide"),
        ("{{ '{:999999999}'['format'](1) }}", "wide"),
        ("{{ ('{:999999999}'|attr('format'))(1) }}", "wide"),
        (
            "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
            "was built",
        ),
        ("{% for i in range(5000) %}{{ 'x' * 500 }}{% endfor %}", "longer than 1,000,000"),
        ("{% include 'other.txt' %}", "{% include %} is not available in task prompts"),
        ("{% import 'm.j2' as m %}", "{% import %} is not available"),
        ("{% from 'm.j2' import f %}", "{% import %} is not available"),
        ("{% extends 'base.j2' %}", "{% extends %} is not available"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "RecursionError"),
    ],
)
def test_a_prompt_that_would_hang_or_blow_up_is_a_located_problem(
    tmp_path: Path, prompt: str, words: str
) -> None:
    assert words in plan_problem(tmp_path, prompt)


def test_ordinary_templates_still_render(tmp_path: Path) -> None:
    path = tmp_path / "tasks.yaml"
    prompt = (
        "{% set ns = namespace(total=0) %}{% for i in range(1, 5) %}{% set ns.total = "
        "ns.total + i %}{% endfor %}{{ '%03d' % ns.total }} {{ 'ab' * 3 }} {{ 2 ** 10 }} "
        "{{ '{:>4}'.format(7) }} {{ 'x'|center(5) }}|"
    )
    path.write_text(f"tasks:\n  - id: a\n    prompt: {json.dumps(prompt)}\n", encoding="utf-8")
    (plan,) = plan_tasks(load_task_file(path), cwd=tmp_path)
    assert plan.prompt == "010 ababab 1024    7   x  |"


def test_the_tracer_is_removed_after_rendering() -> None:
    before = sys.gettrace()
    environment = BoundedEnvironment()
    assert environment.render_bounded("{% for i in range(3) %}{{ i }}{% endfor %}", {}) == "012"
    assert sys.gettrace() is before
    with pytest.raises(Exception, match="longer than"):
        environment.render_bounded("{{ 'x' * n }}{{ 'y' * n }}", {"n": MAX_CHARS})
    assert sys.gettrace() is before
