"""The thinking budget, on the scripted backend through the real parser and loop."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import Agent
from agent.events import Finished, ThinkingClosed, ToolCallEvent, UsageEvent
from agent.loop import Limits
from agent.thinking_budget import ThinkingBudget, closing_text
from models.base import Segment
from models.llama.backend import LlamaCppBackend
from models.qwq.chat_template import qwq_template
from models.scripted import ScriptedBackend, call
from tests.conftest import MakeAgent, add
from tests.real_model import open_tiny, requires_tiny_model, tiny_gguf

LONG_THOUGHT = "".join(f"Case {i}: {i} squared is {i * i}, so check it. " for i in range(30))
ANSWER = "The answer is 5."


def test_closing_text_is_qwens_recipe() -> None:
    text = closing_text()
    assert text.startswith("\n\nConsidering the limited time by the user")
    assert text.endswith(".\n</think>\n\n")


def test_a_budget_of_n_closes_the_thinking_at_n_tokens(make_agent: MakeAgent) -> None:
    agent, backend = make_agent([LONG_THOUGHT, ANSWER], thinking_budget=20)
    events = list(agent.stream("What is 2 + 3?"))
    closed = [e for e in events if isinstance(e, ThinkingClosed)]
    assert [(e.reason, e.tokens) for e in closed] == [("budget", 20)]
    assert backend.options[0].max_tokens == 20
    # The thinking streamed is the first 20 tokens (4 characters each) of what the model
    # wrote; then the inserted text, and the model answers right after it.
    thinking = "".join(e.text for e in events if e.kind == "thinking")
    assert LONG_THOUGHT.startswith(thinking) and (len(thinking) + 3) // 4 == 20
    assert backend.prompts[1] == backend.prompts[0] + thinking + closing_text()
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.reason == "completed"
    assert finished.answer == ANSWER
    assert agent.last_usage.completion_tokens == 20 + 4
    # one step: the answer continues the same turn
    assert [e.step for e in events if isinstance(e, UsageEvent)] == [1]
    # the conversation keeps the closing text in the assistant turn
    assert closing_text() in agent.history[-1]["content"]


def test_without_a_budget_the_thinking_is_not_capped(make_agent: MakeAgent) -> None:
    agent, backend = make_agent([LONG_THOUGHT + "</think>\n\n" + ANSWER])
    result = agent.run("q")
    assert result.ok and result.answer == ANSWER
    assert backend.options[0].max_tokens is None
    assert not [e for e in result.events if isinstance(e, ThinkingClosed)]


def test_calls_in_the_thinking_count_toward_the_budget(make_agent: MakeAgent) -> None:
    first = "I add.\n" + call("add", a=2, b=3)
    agent, backend = make_agent([first, LONG_THOUGHT, ANSWER], thinking_budget=60)
    result = agent.run("q")
    assert result.ok and result.answer == ANSWER
    assert [c.output for c in result.tool_calls] == ["5"]
    used_by_first = (len(first) + 3) // 4
    assert backend.options[1].max_tokens == 60 - used_by_first
    closed = [e for e in result.events if isinstance(e, ThinkingClosed)]
    assert [e.tokens for e in closed] == [60]


def test_a_call_cut_by_the_budget_is_dropped_and_not_run(make_agent: MakeAgent) -> None:
    before = "Short. "  # 7 chars; the budget runs out inside the call that follows
    turn = before + call("add", a=2, b=3)
    agent, backend = make_agent([turn, ANSWER], thinking_budget=6)
    result = agent.run("q")
    assert result.ok and result.answer == ANSWER
    assert not [e for e in result.events if isinstance(e, ToolCallEvent)]
    assert backend.prompts[1] == backend.prompts[0] + before + closing_text()


def test_an_answer_longer_than_the_budget_left_is_not_cut(make_agent: MakeAgent) -> None:
    # The thinking ends well within the budget; the generation, capped at the budget, stops
    # in the answer, and simply goes on (the script's next turn is what follows).
    turn = "Brief.\n</think>\n\nThe answer " + "is " * 100
    agent, backend = make_agent([turn, "five."], thinking_budget=10)
    result = agent.run("q")
    assert result.ok
    assert result.answer.startswith("The answer is is") and result.answer.endswith("five.")
    assert not [e for e in result.events if isinstance(e, ThinkingClosed)]
    assert backend.options[1].max_tokens is None  # the answer is not capped
    assert result.steps == 1


def test_template_placement_closes_each_new_thinking_once_spent(make_agent: MakeAgent) -> None:
    after = "</think>\n\n" + call("add", a=1, b=1)
    agent, backend = make_agent(
        [LONG_THOUGHT, after, ANSWER], placement="template", thinking_budget=10
    )
    result = agent.run("q")
    assert result.ok and result.answer == ANSWER
    assert [c.output for c in result.tool_calls] == ["2"]
    closed = [e for e in result.events if isinstance(e, ThinkingClosed)]
    assert len(closed) == 2
    # The turn after the tool results opens a thinking the spent budget closes at once.
    assert backend.prompts[2].endswith("<|im_start|>assistant\n<think>\n" + closing_text())


def test_the_transcript_says_the_budget_closed_the_thinking(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    backend = ScriptedBackend([LONG_THOUGHT, ANSWER])
    with Agent(backend, tools=[add], thinking_budget=8, transcript=path, workspace=tmp_path) as a:
        a.run("q")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    closed = [r for r in records if r.get("kind") == "thinking_closed"]
    assert [(r["reason"], r["tokens"]) for r in closed] == [("budget", 8)]


def test_budget_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="thinking_budget must be 0 or more"):
        Limits(thinking_budget=-1)
    with pytest.raises(ValueError, match="-3"):
        ThinkingBudget(-3)
    budget = ThinkingBudget(100)
    assert budget.cap(None) == (100, True)
    assert budget.cap(50) == (50, False)  # the run's budget is the smaller
    budget.account(40, "x" * 40, 10)  # a quarter of it was thinking
    assert budget.used == 10 and budget.remaining == 90


def test_a_zero_budget_closes_the_thinking_before_any_token(make_agent: MakeAgent) -> None:
    agent, backend = make_agent([ANSWER], thinking_budget=0)
    result = agent.run("q")
    assert result.ok and result.answer == ANSWER
    assert backend.prompts[0].endswith("<think>\n" + closing_text())


def test_task_files_the_command_line_and_the_config_set_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.cli.build import agent_from_args
    from agent.cli.entry import build_parser
    from agent.tasks.planning import plan_tasks
    from agent.tasks.taskfile import Settings, load_task_file

    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        "thinking_budget: 300\ntasks:\n  - {id: a, prompt: hi}\n"
        "  - {id: b, prompt: hi, thinking_budget: 0}\n",
        encoding="utf-8",
    )
    first, second = plan_tasks(load_task_file(tasks), cwd=tmp_path)
    assert (first.thinking_budget, second.thinking_budget) == (300, 0)
    (plan, _) = plan_tasks(load_task_file(tasks), Settings(thinking_budget=7), cwd=tmp_path)
    assert plan.thinking_budget == 7

    config = tmp_path / "config.toml"
    config.write_text("[limits]\nthinking_budget = 512\n", encoding="utf-8")
    script = tmp_path / "s.yaml"
    script.write_text("turns: ['</think>ok']\n", encoding="utf-8")
    common = ["ask", "q", "--model", f"scripted:{script}", "--config", str(config)]
    monkeypatch.chdir(tmp_path)
    from_file = agent_from_args(build_parser().parse_args(common))
    assert from_file.limits.thinking_budget == 512
    flag = agent_from_args(build_parser().parse_args([*common, "--thinking-budget", "64"]))
    assert flag.limits.thinking_budget == 64


@pytest.fixture(scope="module")
def thinking_tiny() -> Iterator[LlamaCppBackend]:
    """The tiny model behind QwQ's chat template, whose generation prompt opens the thinking."""
    gguf = tiny_gguf()
    assert gguf is not None
    backend = open_tiny(gguf, n_ctx=1024, chat_template=qwq_template())
    yield backend
    backend.close()


@pytest.mark.real_model
@requires_tiny_model
@pytest.mark.parametrize("budget", [5, 24])
def test_a_budget_of_n_ends_the_thinking_of_a_real_model_at_n(
    thinking_tiny: LlamaCppBackend, budget: int, tmp_path: Path
) -> None:
    thinking_tiny.reset()
    assert thinking_tiny.info.opens_thinking
    agent = Agent(
        thinking_tiny,
        tools=[],
        temperature=0,
        thinking_budget=budget,
        max_tokens=budget + 12,
        transcript=False,
        workspace=tmp_path,
    )
    events = list(agent.stream("Write a long story about a cat who learns to sail."))
    closed = [e for e in events if isinstance(e, ThinkingClosed)]
    assert [e.tokens for e in closed] == [budget]
    # What the model generated before the closing text is exactly the budget, in tokens.
    context = thinking_tiny.context_tokens
    inserted = thinking_tiny.tokenize(Segment(closing_text(), "template"))
    opening = thinking_tiny.tokenize(Segment("<|im_start|>assistant\n<think>\n", "template"))
    at = _find(context, inserted)
    assert at - (_find(context, opening) + len(opening)) == budget
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.reason in ("completed", "max_tokens")


def _find(tokens: list[int], part: list[int]) -> int:
    for i in range(len(tokens) - len(part) + 1):
        if tokens[i : i + len(part)] == part:
            return i
    raise AssertionError(f"{part!r} is not in the context")


def test_the_server_backend_in_completions_mode_appends_and_continues(tmp_path: Path) -> None:
    from tests.server.fake_openai import Reply, completion_events
    from tests.server.mock_openai import MockServer

    server = MockServer()
    thought = ["Case 1 is easy. ", "Case 2 needs ", "more work: "]
    usage = {"usage": {"prompt_tokens": 50, "completion_tokens": 8}}
    server.push(
        Reply(events=completion_events(*thought, finish="length", **usage)),
        Reply(events=completion_events(ANSWER)),
    )
    with Agent(server.backend(), tools=[], thinking_budget=8, transcript=False) as agent:
        result = agent.run("q")
    assert result.ok and result.answer == ANSWER
    first, second = server.requests
    assert first.body["max_tokens"] == 8
    assert second.body["prompt"] == first.body["prompt"] + "".join(thought) + closing_text()
    assert second.body["max_tokens"] is None
    closed = [e for e in result.events if isinstance(e, ThinkingClosed)]
    assert [e.tokens for e in closed] == [8]


def test_a_chat_only_server_ends_the_run_when_the_budget_is_spent(tmp_path: Path) -> None:
    from tests.server.fake_openai import Reply, chat_events
    from tests.server.mock_openai import MockServer

    server = MockServer()
    server.push(
        Reply(
            events=chat_events(
                {"reasoning_content": "Thinking hard about it"},
                finish="length",
                usage={"prompt_tokens": 50, "completion_tokens": 8},
            )
        )
    )
    backend = server.backend(mode="chat")
    with Agent(backend, tools=[], thinking_budget=8, transcript=False) as agent:
        result = agent.run("q")
    assert result.finish_reason == "max_tokens"
    assert "cannot close the thinking inside its turn" in result.detail
    assert server.requests[0].body["max_tokens"] == 8
