"""The agent loop over the server backend: both placements, failures mid-run.

The first test runs over a real connection (the threaded :class:`FakeServer`): the loop closes
the stream at ``</tool_call>`` while the server is still sending. The others script the server
as an ``httpx.MockTransport`` (:class:`MockServer`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import Agent
from models.openai.backend import OpenAIBackend, RetryPolicy, ServerOptions
from models.scripted import call
from tests.conftest import add
from tests.server.fake_openai import FakeServer, Reply, chat_events, completion_events
from tests.server.mock_openai import MockServer

FAST = RetryPolicy(max_retries=1, backoff=0.01, max_backoff=0.02)


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    with FakeServer() as running:
        yield running


@pytest.fixture
def server() -> MockServer:
    return MockServer()


def test_interleaved_call_inside_thinking_over_completions(
    fake: FakeServer, tmp_path: Path
) -> None:
    # The model keeps writing after </tool_call>; the loop closes the stream right there.
    first = completion_events("I should add.\n", call("add", a=2, b=3), "\n<tool_response>FAKE")
    fake.push(
        Reply(events=first, event_delay=0.01),
        Reply(events=completion_events("So 5.\n</think>\n\nThe answer is 5.")),
    )
    agent = Agent(
        OpenAIBackend(fake.url, ServerOptions(retry=FAST)), tools=[add], workspace=tmp_path
    )
    result = agent.run("What is 2 + 3?")
    agent.close()
    assert result.ok and result.answer == "The answer is 5."
    assert [(c.name, c.output, c.placement) for c in result.tool_calls] == [
        ("add", "5", "thinking")
    ]
    prompts = [r.body["prompt"] for r in fake.requests]
    assert prompts[1] == (
        prompts[0]
        + "I should add.\n"
        + call("add", a=2, b=3)
        + "\n<tool_response>\n5\n</tool_response>\n"
    )
    assert "FAKE" not in prompts[1]


def test_template_placement_over_chat(server: MockServer, tmp_path: Path) -> None:
    tool_call = {
        "index": 0,
        "id": "x",
        "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
    }
    server.push(
        Reply(events=chat_events({"reasoning_content": "Add them."}, {"tool_calls": [tool_call]})),
        Reply(events=chat_events({"reasoning_content": "It is 5."}, {"content": "5"})),
    )
    backend = server.backend(mode="chat", retry=FAST)
    agent = Agent(backend, tools=[add], placement="template", workspace=tmp_path)
    result = agent.run("What is 2 + 3?")
    agent.close()
    assert result.ok and result.answer == "5"
    assert result.thinking.count("Add them.") == 1 and "It is 5." in result.thinking
    assert [(c.name, c.output, c.placement) for c in result.tool_calls] == [("add", "5", "answer")]
    second = server.requests[1].body
    assert second["tools"] == [add.spec()]
    assert second["messages"][-2]["tool_calls"][0]["function"] == {
        "name": "add",
        "arguments": json.dumps({"a": 2, "b": 3}),
    }
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": "5"}


def test_a_failing_server_ends_the_run_and_the_conversation_is_kept(
    server: MockServer, tmp_path: Path
) -> None:
    server.push(Reply(status=500, body="overloaded"), Reply(status=500, body="overloaded"))
    agent = Agent(server.backend(retry=FAST), tools=[add], workspace=tmp_path)
    failed = agent.run("What is 2 + 3?")
    assert failed.finish_reason == "error"
    assert "HTTP 500: overloaded" in failed.detail and "after 2 attempts" in failed.detail
    server.push(Reply(events=completion_events("Sure.\n</think>\n\n5")))
    again = agent.run("Please answer.")
    agent.close()
    assert again.ok and again.answer == "5"
    prompt = server.requests[-1].body["prompt"]
    assert prompt.index("What is 2 + 3?") < prompt.index("Please answer.")
