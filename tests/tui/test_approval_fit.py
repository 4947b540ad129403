"""The approval dialog fits any terminal: every button shows, and the arguments scroll to
their last line (issue 12, item 5: at 60x20 "Deny" was off screen; long arguments hid
every button at any size)."""

from __future__ import annotations

from typing import Any

import pytest
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import Button

from models.scripted import ScriptedBackend, call
from tests.tui.helpers import MakeApp, send, shell, wait_until
from tests.tui.test_snapshots import SnapCompare
from tui.screens.approval import ApprovalScreen

pytestmark = pytest.mark.anyio

SHORT = "ls -la\nrm -rf ./build"
LONG = "\n".join(f"echo line {i}" for i in range(40))


def shown(screen: ApprovalScreen, widget: Widget) -> bool:
    """Whether ``widget`` is wholly on screen and is what the person sees at its corners."""
    region = widget.region
    if not region or not Region(0, 0, *screen.size).contains_region(region):
        return False
    corners = [(region.x, region.y), (region.right - 1, region.bottom - 1)]
    return all(screen.get_widget_at(x, y)[0] is widget for x, y in corners)


@pytest.mark.parametrize("size", [(60, 20), (40, 14), (80, 24), (100, 32)])
@pytest.mark.parametrize("command", [SHORT, LONG], ids=["short", "long"])
async def test_every_button_and_the_last_argument_line_show(
    make_chat: MakeApp, size: tuple[int, int], command: str
) -> None:
    backend = ScriptedBackend(["Clean.\n" + call("shell", command=command)])
    app = make_chat(backend, tools=[shell])
    async with app.run_test(size=size) as pilot:
        await send(pilot, "Clean the build folder")
        await wait_until(pilot, lambda: isinstance(app.screen, ApprovalScreen), what="the modal")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ApprovalScreen)
        buttons = list(screen.query(Button))
        assert [b.id for b in buttons] == ["once", "always", "deny"]
        for button in buttons:
            assert shown(screen, button), f"{button.id} is hidden at {size}"
        arguments = screen.query_one("#approval-arguments")
        arguments.scroll_end(animate=False)
        await pilot.pause()
        assert arguments.scroll_y == arguments.max_scroll_y
        # The scrolled arguments end above the buttons: their last line can be read.
        assert arguments.region.bottom <= screen.query_one("#approval-buttons").region.y
        assert shown(screen, arguments)
        await pilot.press("n")
        await wait_until(pilot, lambda: not app.running, what="the run to end")


def test_approval_modal_on_a_small_terminal(snap_compare: SnapCompare, make_chat: MakeApp) -> None:
    backend = ScriptedBackend(["I will clean the build.\n" + call("shell", command=SHORT)])
    app = make_chat(backend, tools=[shell])

    async def run_before(pilot: Any) -> None:
        await send(pilot, "Clean the build folder")
        await wait_until(pilot, lambda: isinstance(app.screen, ApprovalScreen))

    assert snap_compare(app, terminal_size=(60, 20), run_before=run_before)
