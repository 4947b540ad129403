"""Opening a saved session from its transcript, and the model's loading state."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.widgets import ProgressBar

from agent import Agent
from agent.transcript import load_transcript
from models.base import Backend
from models.progress import LoadProgress, ProgressCallback
from models.scripted import ScriptedBackend, call
from tests.tui.helpers import MakeApp, run_to_end, send, wait_until
from tests.tui.test_session import ANSWER, add
from tui.app import make_app
from tui.export import transcript_markdown
from tui.screens.sessions import SessionsScreen, describe
from tui.widgets.thinking import ThinkingBlock, ThinkingSegment
from tui.widgets.tool_card import ToolCard
from tui.widgets.turn import AssistantTurn, Note, UserMessage

pytestmark = pytest.mark.anyio


async def test_open_a_saved_session_shows_it_as_it_happened(
    make_chat: MakeApp, _sessions_dir: Path
) -> None:
    turns = ["Add.\n" + call("add", a=2, b=3), ANSWER, "Easy.\n</think>\n\nBye."]
    app = make_chat(ScriptedBackend(turns), tools=[add])
    async with app.run_test(size=(100, 40)) as pilot:
        await run_to_end(pilot, "What is 2 + 3?")
        await run_to_end(pilot, "Thanks")
        saved = app.agent.transcript_path
        assert saved is not None and saved.parent == _sessions_dir
        await send(pilot, "/new")
        assert not app.query(UserMessage)

        await send(pilot, "/sessions")
        await wait_until(pilot, lambda: isinstance(app.screen, SessionsScreen), what="picker")
        assert isinstance(app.screen, SessionsScreen) and app.screen.paths == [saved]
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(app.query(AssistantTurn)) == 2, what="the replay")

        prompts = [str(m.content) for m in app.query(UserMessage)]
        assert prompts == ["What is 2 + 3?", "Thanks"]
        first, second = app.query(AssistantTurn)
        block = first.query_one(ThinkingBlock)
        kinds = [type(w) for w in block.body.children]
        assert kinds == [ThinkingSegment, ToolCard, ThinkingSegment]
        assert block.query_one(ToolCard).state == "done"
        assert first.answer_text == "The answer is **5**."
        assert second.answer_text == "Bye."
        assert "read back from its transcript" in str(app.query(Note).first().content)
        # The conversation goes on where it stopped, in the same transcript file.
        assert [m["role"] for m in app.agent.history if m["role"] == "user"] == ["user", "user"]
        assert app.agent.history[0]["content"] == "What is 2 + 3?"
        assert app.agent.transcript_path == saved


async def test_sessions_picker_with_no_sessions_and_esc(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend([]))
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "/sessions")
        await wait_until(pilot, lambda: isinstance(app.screen, SessionsScreen))
        assert app.screen.query("#sessions-empty")
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, SessionsScreen))


def test_describe_reads_only_the_first_line(tmp_path: Path) -> None:
    path = tmp_path / "20260101-120000-abcdef.jsonl"
    path.write_text(
        '{"kind": "run_started", "prompt": "hello\\n[/] \\u001b[2Jworld", "time": 0}\nnot json\n',
        encoding="utf-8",
    )
    line = describe(path)
    assert line.endswith("hello [/] world") and "\x1b" not in line
    (tmp_path / "bad.jsonl").write_text("{torn", encoding="utf-8")
    assert describe(tmp_path / "bad.jsonl").endswith("(unreadable)")


class SlowAgent(Agent):
    """An agent whose model takes until ``ready`` is set to load."""

    def __init__(self, backend: Backend, ready: threading.Event, **options: object) -> None:
        super().__init__(backend, **options)  # type: ignore[arg-type]
        self.ready = ready
        self.downloading = threading.Event()

    def load(self, progress: ProgressCallback | None = None) -> Backend:
        if not self.ready.wait(timeout=0.5) and progress is not None:
            progress(LoadProgress("download", "big.gguf", 500_000, 2_000_000))
            self.downloading.set()
        self.ready.wait(timeout=20)
        if progress is not None:
            progress(LoadProgress("load", "big.gguf", 0, 2_000_000))
        return super().load()


async def test_a_task_sent_while_the_model_loads_starts_when_it_is_ready(tmp_path: Path) -> None:
    ready = threading.Event()
    agent = SlowAgent(ScriptedBackend(["Ok.\n</think>\n\nDone."]), ready, workspace=tmp_path)
    app = make_app(agent, model_label="big-model", deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.loading and app.status.activity == "loading big-model"
        bar = app.status.query_one(ProgressBar)
        assert bar.display and bar.total is None
        await wait_until(pilot, agent.downloading.is_set, what="the download to start")
        await wait_until(pilot, lambda: bar.total is not None, what="the download's progress")
        assert app.status.activity == "downloading big.gguf 500.0 kB / 2.0 MB"
        assert (bar.progress, bar.total) == (500_000, 2_000_000)
        await send(pilot, "early task")
        assert "starts when it is ready" in str(app.query(Note).last().content)
        ready.set()
        await wait_until(pilot, lambda: app.turn is not None and not app.running)
        assert not bar.display
        assert app.status.model == "scripted"
        assert [str(m.content) for m in app.query(UserMessage)] == ["early task"]
        assert app.turn is not None and app.turn.answer_text == "Done."


async def test_a_model_that_cannot_load_is_reported(tmp_path: Path) -> None:
    agent = Agent("/nonexistent/model.gguf", workspace=tmp_path)
    app = make_app(agent, model_label="model.gguf", deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: not app.loading)
        assert "could not be loaded" in str(app.query(Note).last().content)
        assert app.status.model == "model.gguf (not loaded)"


def test_markdown_export_keeps_the_order_of_what_happened(make_agent_run: Path) -> None:
    markdown = transcript_markdown(load_transcript(make_agent_run))
    you = markdown.index("## You\n\nWhat is 2 + 3?")
    thought = markdown.index("> Add.")
    tool_call = markdown.index("**Tool call** `add`")
    result = markdown.index("**Result**")
    answer = markdown.index("### Answer\n\nThe answer is **5**.")
    assert you < thought < tool_call < result < answer
    assert '"a": 2' in markdown and "```\n5\n```" in markdown


@pytest.fixture
def make_agent_run(tmp_path: Path) -> Path:
    """The transcript of one scripted run with a call inside the thinking."""
    agent = Agent(
        ScriptedBackend(["Add.\n" + call("add", a=2, b=3), ANSWER]), tools=[add], workspace=tmp_path
    )
    agent.run("What is 2 + 3?")
    assert agent.transcript_path is not None
    return agent.transcript_path
