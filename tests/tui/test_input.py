"""The prompt box (history, multi-line entry) and the slash commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import Agent
from models.scripted import ScriptedBackend
from tests.tui.helpers import MakeApp, run_to_end, send, wait_until
from tui import commands
from tui.app import make_app
from tui.widgets.turn import Note, UserMessage

pytestmark = pytest.mark.anyio

HELLO = "Greet.\n</think>\n\nHello!"


def notes(app: object) -> list[str]:
    from tui.app import ChatApp

    assert isinstance(app, ChatApp)
    return [str(n.content) for n in app.query(Note)]


async def test_history_walks_back_and_forth_and_keeps_the_draft(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend([]))
    async with app.run_test(size=(100, 30)) as pilot:
        box = app.prompt_input
        await send(pilot, "/help")
        await send(pilot, "/tools")
        box.insert("draft")
        await pilot.press("up")
        assert box.text == "/tools"
        await pilot.press("up")
        assert box.text == "/help"
        await pilot.press("up")  # the oldest stays
        assert box.text == "/help"
        await pilot.press("down")
        assert box.text == "/tools"
        await pilot.press("down")
        assert box.text == "draft"


async def test_multi_line_entry_is_sent_whole(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend([HELLO]))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: not app.loading)
        await pilot.press("l", "i", "n", "e", " ", "1", "ctrl+j", "l", "i", "n", "e", " ", "2")
        assert app.prompt_input.text == "line 1\nline 2"
        await pilot.press("up")  # inside a multi-line text, Up moves the cursor
        assert app.prompt_input.text == "line 1\nline 2"
        await pilot.press("enter")
        await wait_until(pilot, lambda: bool(app.query(UserMessage)) and not app.running)
        assert str(app.query_one(UserMessage).content) == "line 1\nline 2"
        assert app.prompt_input.text == ""


async def test_help_lists_every_command(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend([]))
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, "/help")
        shown = notes(app)[-1]
        for name in commands.COMMANDS:
            assert f"/{name}" in shown
        assert "Ctrl+T" in shown and "Esc" in shown


async def test_tools_placement_and_unknown_commands(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend([]), tools=["calculator"])
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, "/tools")
        assert "calculator" in notes(app)[-1] and "safe" in notes(app)[-1]
        await send(pilot, "/placement")
        assert notes(app)[-1].startswith("Placement: interleaved")
        await send(pilot, "/placement template")
        assert app.agent.placement == "template" and app.status.placement == "template"
        await send(pilot, "/placement sideways")
        assert "must be one of interleaved, template" in notes(app)[-1]
        assert app.agent.placement == "template"
        await send(pilot, "/frobnicate now")
        assert "unknown command '/frobnicate'" in notes(app)[-1]
        assert not app.query(UserMessage)  # nothing was sent to the model


async def test_double_slash_sends_a_message_that_starts_with_a_slash(make_chat: MakeApp) -> None:
    backend = ScriptedBackend([HELLO])
    app = make_chat(backend)
    async with app.run_test(size=(100, 30)) as pilot:
        await run_to_end(pilot, "//etc/hosts is a file")
        assert str(app.query_one(UserMessage).content) == "/etc/hosts is a file"
        assert "/etc/hosts is a file" in backend.prompts[0]


async def test_clear_new_and_save(make_chat: MakeApp, tmp_path: Path) -> None:
    app = make_chat(ScriptedBackend([HELLO, HELLO]))
    async with app.run_test(size=(100, 30)) as pilot:
        await run_to_end(pilot, "say hello")
        await send(pilot, "/clear")
        assert not app.query(UserMessage)
        assert app.agent.history  # the conversation goes on
        target = tmp_path / "out.md"
        await send(pilot, f"/save {target}")
        saved = target.read_text(encoding="utf-8")
        assert "## You\n\nsay hello" in saved and "Hello!" in saved
        await send(pilot, "/new")
        assert not app.agent.history and notes(app) == ["New conversation."]


async def test_save_before_any_task_says_so(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend([]))
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "/save")
        assert "Nothing to save yet" in notes(app)[-1]


async def test_conversation_commands_wait_for_the_run(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend(["x " * 3_000], delay=0.005))
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "think")
        await wait_until(pilot, lambda: app.running)
        await send(pilot, "/new")
        assert "must wait for the run" in notes(app)[-1]
        app.prompt_input.clear()  # /new came back to the box
        await send(pilot, "another task")
        assert "A run is in progress" in notes(app)[-1]
        await pilot.press("escape")
        await wait_until(pilot, lambda: not app.running)


async def test_text_sent_during_a_run_stays_in_the_box(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend(["x " * 3_000, HELLO], delay=0.005))
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "think")
        await wait_until(pilot, lambda: app.running)
        await send(pilot, "the next task")
        assert "A run is in progress" in notes(app)[-1]
        assert app.prompt_input.text == "the next task"  # not lost: sent again after the run
        app.prompt_input.clear()
        await send(pilot, "/new")
        assert "must wait for the run" in notes(app)[-1]
        assert app.prompt_input.text == "/new"
        await pilot.press("escape")
        await wait_until(pilot, lambda: not app.running)
        await pilot.press("enter")  # /new, now that the run is over
        assert notes(app) == ["New conversation."] and app.prompt_input.text == ""


async def test_a_mistyped_command_stays_in_the_box_to_fix(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend([]))
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "/placment template")
        assert "unknown command '/placment'" in notes(app)[-1]
        assert app.prompt_input.text == "/placment template"


async def test_new_clears_the_last_runs_figures(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend([HELLO]))
    async with app.run_test(size=(100, 30)) as pilot:
        await run_to_end(pilot, "say hello")
        assert app.status.step == 1 and app.status.activity == "done"
        assert "step 1" in status_line(app)
        await send(pilot, "/new")
        shown = status_line(app)
        assert "│ idle │" in shown and "step 0" in shown and "ctx 0/" in shown
        assert "cached 0" in shown and "done" not in shown


def status_line(app: object) -> str:
    from textual.widgets import Static

    from tui.app import ChatApp

    assert isinstance(app, ChatApp)
    return str(app.status.query_one("#status-text", Static).content)


async def test_model_switches_through_the_factory(tmp_path: Path) -> None:
    made: list[tuple[str | None, Agent]] = []

    def factory(model: str | None) -> Agent:
        name = model or "first"
        agent = Agent(ScriptedBackend([HELLO], name=name), workspace=tmp_path)
        made.append((model, agent))
        return agent

    app = make_app(factory, deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.status.model == "first")
        await send(pilot, "/model")
        assert notes(app)[-1].startswith("Model: first, context 32,768 tokens")
        await send(pilot, "/model second")
        await wait_until(pilot, lambda: app.status.model == "second")
        assert [m for m, _ in made] == [None, "second"]
        assert app.agent is made[1][1]
        first_backend = made[0][1].backend
        assert isinstance(first_backend, ScriptedBackend) and first_backend.closed
        await run_to_end(pilot, "hi")
        assert app.turn is not None and app.turn.answer_text == "Hello!"
        assert app.status.usage is not None and app.status.step == 1
        await send(pilot, "/model third")
        await wait_until(pilot, lambda: app.status.model == "third")
        # the status bar does not show the previous model's last run as this one's
        assert app.status.usage is None and app.status.step == 0 and app.status._elapsed == 0


async def test_a_model_that_cannot_work_keeps_the_current_one(tmp_path: Path) -> None:
    def factory(model: str | None) -> Agent:
        if model is None:
            return Agent(ScriptedBackend([HELLO], name="first"), workspace=tmp_path)
        return Agent(model, workspace=tmp_path)  # by name: checked before the switch

    app = make_app(factory, deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.status.model == "first")
        first = app.agent
        for bad, why in [
            ("nonexistent-model", "unknown model"),
            ("qwq-32b:Q9_Z", "no quantization"),
            (str(tmp_path / "missing.gguf"), "no model file at"),
        ]:
            await send(pilot, f"/model {bad}")
            assert why in notes(app)[-1] and "Still using first" in notes(app)[-1]
            assert app.agent is first and app.status.model == "first"
        await run_to_end(pilot, "hi")
        assert app.turn is not None and app.turn.answer_text == "Hello!"


async def test_model_without_a_factory_is_refused(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend([]))
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "/model other")
        assert "cannot switch models" in notes(app)[-1]


def test_run_chat_refuses_bad_options_before_opening_the_app(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from agent.cli.chat import run_chat
    from agent.cli.entry import build_parser

    args = build_parser().parse_args(["chat", "--tools", "no_such_tool"])
    assert run_chat(args) == 2
    assert "unknown tool 'no_such_tool'" in capsys.readouterr().err
