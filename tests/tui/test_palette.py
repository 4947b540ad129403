"""The command palette (Ctrl+P) lists and runs the slash commands (issue 12, item 10)."""

from __future__ import annotations

import pytest
from textual.command import CommandList, CommandPalette

from models.scripted import ScriptedBackend
from tests.tui.helpers import MakeApp, wait_until
from tui import commands
from tui.app import ChatApp
from tui.widgets.turn import Note

pytestmark = pytest.mark.anyio


def prompts(app: ChatApp) -> list[str]:
    options = app.screen.query_one(CommandList)
    return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]


async def test_the_palette_lists_every_slash_command(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend([]))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        wanted = [f"/{c.name} {c.usage.strip('[]')}".strip() for c in commands.COMMANDS.values()]
        assert "/model NAME" in wanted
        await wait_until(
            pilot,
            lambda: all(any(w in p for p in prompts(app)) for w in wanted),
            what=f"{wanted} in the palette",
        )
        assert any("Theme" in p for p in prompts(app))  # Textual's own commands stay


async def test_choosing_a_command_runs_it(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend([]))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press(*"/tools")
        await wait_until(pilot, lambda: "/tools" in " ".join(prompts(app)), what="a hit")
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: "No tools" in str(app.query(Note).last().content), what="the list"
        )


async def test_a_command_with_an_argument_is_started_in_the_prompt_box(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend([]))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press(*"placement")
        await wait_until(pilot, lambda: "/placement NAME" in prompts(app)[0], what="a hit")
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.prompt_input.text == "/placement ", what="the box")
        assert app.prompt_input.has_focus
        await pilot.press(*"template", "enter")
        assert app.agent.placement == "template"
