"""Tool capabilities and the exfiltration gate, through the real parser and loop.

The attack (issue 11): ``read_file(".env")`` then ``web_search("<the secret>")``; both tools
are "safe", so before capabilities the secret left the machine even under ``approval="deny"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import Agent
from agent.approval import ApprovalPolicy, DataFlow
from agent.events import Approval, ToolCall
from models.scripted import ScriptedBackend, call
from tools import web_search as search_module
from tools.base import Tool, tool
from tools.capabilities import check_capabilities
from tools.registry import builtin

SECRET = "sk-live-0123456789abcdef"
DONE = "I see.\n</think>\n\nDone."
ATTACK = [call("read_file", path=".env"), call("web_search", query=SECRET), DONE]


class RecordingSearch:
    """A search client that records every query it is sent (what would leave the machine)."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def text(self, query: str, max_results: int = 5, **_: object) -> list[dict[str, str]]:
        self.queries.append(query)
        return [{"title": "hit", "href": "https://example.org/", "body": "a result"}]


@pytest.fixture
def searches() -> Iterator[RecordingSearch]:
    client = RecordingSearch()
    previous = search_module.set_search_client(lambda timeout: client)
    try:
        yield client
    finally:
        search_module.set_search_client(previous)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / ".env").write_text(f"API_KEY={SECRET}\n")
    return tmp_path


def make(workspace: Path, turns: list[str], **options: Any) -> tuple[Agent, ScriptedBackend]:
    backend = ScriptedBackend(turns)
    agent = Agent(
        backend,
        tools=["read_file", "web_search", "list_dir"],
        workspace=workspace,
        transcript=False,
        **options,
    )
    return agent, backend


def approvals(events: list[Any]) -> list[Approval]:
    return [e for e in events if isinstance(e, Approval)]


@pytest.mark.parametrize(
    "approval",
    ["deny", {"*": "deny", "read_file": "allow"}, {"read_file": "allow", "list_dir": "deny"}],
    ids=["deny", "allowlist-with-deny-default", "allowlist-with-ask-default"],
)
def test_search_after_private_read_is_not_run(
    workspace: Path, searches: RecordingSearch, approval: Any
) -> None:
    agent, backend = make(workspace, ATTACK, approval=approval)
    result = agent.run("what is in .env?")
    assert searches.queries == []
    assert SECRET in backend.observations[0]  # the read itself ran
    told = backend.observations[1]
    assert "denied" in told and "read private data" in told and "read_file '.env'" in told
    assert "sends data off the machine" in told
    (event,) = approvals(result.events)
    assert event.decision is False and event.call.name == "web_search"
    assert event.reason is not None and "read_file '.env'" in event.reason
    assert result.ok  # the model was told; the run went on


def test_under_ask_the_reason_reaches_the_callback(
    workspace: Path, searches: RecordingSearch
) -> None:
    asked: list[tuple[str, str | None]] = []

    def callback(call: ToolCall, reason: str | None = None) -> bool:
        asked.append((call.name, reason))
        return False

    agent, _ = make(workspace, ATTACK, approval="ask", approval_callback=callback)
    result = agent.run("go")
    assert searches.queries == []
    ((name, reason),) = asked
    assert name == "web_search"
    assert reason == (
        "this run has read private data (read_file '.env'); this call sends data off the machine"
    )
    (event,) = approvals(result.events)
    assert event.decided_by == "callback" and event.reason == reason


def test_a_callback_without_a_reason_parameter_is_still_asked(
    workspace: Path, searches: RecordingSearch
) -> None:
    asked: list[ToolCall] = []

    def callback(call: ToolCall) -> bool:
        asked.append(call)
        return True

    agent, _ = make(workspace, ATTACK, approval="ask", approval_callback=callback)
    agent.run("go")
    assert [c.name for c in asked] == ["web_search"]
    assert searches.queries == [SECRET]  # the person said yes


def test_under_ask_the_streamed_event_carries_the_reason(
    workspace: Path, searches: RecordingSearch
) -> None:
    agent, _ = make(workspace, ATTACK, approval="ask")
    seen: list[Approval] = []
    for event in agent.stream("go"):
        if isinstance(event, Approval):
            assert event.reason is not None and "read_file '.env'" in event.reason
            seen.append(event)
            event.approve()
    assert len(seen) == 1
    assert searches.queries == [SECRET]


def test_allow_is_not_a_yes_to_sending_private_data(
    workspace: Path, searches: RecordingSearch
) -> None:
    agent, backend = make(workspace, ATTACK, approval="allow")
    result = agent.run("go")
    assert searches.queries == []  # nobody answered the question: denied
    (event,) = approvals(result.events)
    assert event.decided_by == "default" and event.reason is not None
    assert "denied" in backend.observations[1]


def test_a_tool_named_in_the_allowlist_runs(workspace: Path, searches: RecordingSearch) -> None:
    agent, _ = make(workspace, ATTACK, approval={"*": "deny", "web_search": "allow"})
    result = agent.run("go")
    assert searches.queries == [SECRET]
    (event,) = approvals(result.events)  # recorded, with why it was held
    assert event.decision is True and event.decided_by == "policy" and event.reason


def test_without_a_private_read_search_needs_no_approval(
    workspace: Path, searches: RecordingSearch
) -> None:
    turns = [call("web_search", query="qwq"), call("web_search", query="qwq 32b"), DONE]
    agent, _ = make(workspace, turns, approval="deny")
    result = agent.run("go")
    assert searches.queries == ["qwq", "qwq 32b"]
    assert approvals(result.events) == []


def test_a_private_read_in_an_earlier_turn_counts(
    workspace: Path, searches: RecordingSearch
) -> None:
    turns = [call("read_file", path=".env"), DONE, call("web_search", query=SECRET), DONE]
    agent, backend = make(workspace, turns, approval="deny")
    agent.run("read it")
    agent.run("now search it")
    assert searches.queries == []
    assert "read_file '.env' in an earlier turn" in backend.observations[-1]
    agent.reset()  # a new conversation no longer holds the data


def test_a_read_inside_the_thinking_of_an_earlier_turn_counts() -> None:
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Let me look.\n" + call("list_dir", path="secrets")},
    ]
    flow = DataFlow()
    flow.note_history(history, [builtin("list_dir"), builtin("web_search")])
    assert flow.private_reads == ["list_dir 'secrets' in an earlier turn"]
    assert flow.gate(builtin("web_search")) is not None
    assert flow.gate(builtin("calculator")) is None


def test_always_allow_does_not_lift_the_gate() -> None:
    policy = ApprovalPolicy("allow")
    policy.allow_always("web_search")
    search = builtin("web_search")
    request = ToolCall("call_1", "web_search", {"query": "x"}, "answer")
    assert policy.decide(request, search) == "allow"
    assert policy.decide(request, search, gate="held") == "ask"
    assert ApprovalPolicy(lambda c: True).decide(request, search, gate="held") == "allow"


def test_builtin_declarations() -> None:
    assert builtin("read_file").can("reads_private")
    assert builtin("list_dir").can("reads_private")
    for name in ("web_search", "fetch_url"):
        found = builtin(name)
        assert found.can("sends_out") and found.can("untrusted_content")
        assert not found.can("reads_private")
    for name in ("write_file", "python", "calculator"):
        assert builtin(name).capabilities == frozenset()


def test_user_tool_defaults_and_declarations() -> None:
    @tool
    def double(x: int) -> int:
        """Double it.

        Args:
            x: a number.
        """
        return 2 * x

    @tool(risk="dangerous")
    def post(text: str) -> str:
        """Post somewhere.

        Args:
            text: what to post.
        """
        return text

    @tool(capabilities={"reads_private"})
    def secrets(name: str) -> str:
        """Read a secret.

        Args:
            name: which.
        """
        return name

    assert double.capabilities == frozenset()
    assert post.capabilities == frozenset({"sends_out"})
    assert secrets.can("reads_private") and not secrets.can("sends_out")
    hand_made = Tool("t", "d", {"type": "object"}, fn=lambda: None, capabilities=["sends_out"])
    assert hand_made.capabilities == frozenset({"sends_out"})


def test_unknown_capabilities_are_refused() -> None:
    with pytest.raises(ValueError, match=r"'send_out'.*known: reads_private, sends_out"):
        check_capabilities({"send_out"}, "safe")
    with pytest.raises(TypeError, match=r"capabilities=\{'sends_out'\}"):
        check_capabilities("sends_out", "safe")


def test_the_ask_prompt_shows_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli.ask import _ask_person

    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    request = ToolCall("c1", "web_search", {"query": SECRET}, "answer")
    assert _ask_person(request, reason="this run has read private data (read_file '.env')") is False
    assert "Why you are asked: this run has read private data (read_file '.env')" in (
        capsys.readouterr().err
    )


def test_a_long_search_query_is_refused_before_it_is_sent(
    workspace: Path, searches: RecordingSearch
) -> None:
    turns = [call("web_search", query="x" * 501), call("web_search", query="y" * 500), DONE]
    agent, backend = make(workspace, turns, approval="deny")
    agent.run("go")
    assert searches.queries == ["y" * 500]
    assert "the query is 501 characters long; the limit is 500" in backend.observations[0]


def test_the_query_cap_is_a_setting(workspace: Path, searches: RecordingSearch) -> None:
    turns = [call("web_search", query="z" * 800), call("web_search", query="w" * 801), DONE]
    settings = {"web_search": {"max_query_chars": 800}}
    agent, backend = make(workspace, turns, approval="deny", tool_settings=settings)
    agent.run("go")
    assert searches.queries == ["z" * 800]
    assert "the limit is 800" in backend.observations[1]
    with pytest.raises(ValueError, match="max_query_chars must be a number >= 0, got -1"):
        make(workspace, [], tool_settings={"web_search": {"max_query_chars": -1}})
