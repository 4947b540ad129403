"""Snapshots of the main states (pytest-textual-snapshot): idle, thinking, a tool card
running, the approval modal, the answer done.

The app is built with ``deterministic=True`` (no clocks, durations or speeds shown, no
spinner motion, no cursor blink, animations off) and held still at each state by gates,
so each frame depends only on the script. Update after an intended change with
``pytest tests/tui --snapshot-update`` and look at the SVGs in ``__snapshots__/``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot

from models.scripted import PAUSE, GatedBackend, ScriptedBackend, call
from tests.tui.helpers import MakeApp, gated_tool, run_to_end, send, shell, wait_until
from tests.tui.test_session import add
from tui.screens.approval import ApprovalScreen
from tui.widgets.thinking import ThinkingBlock
from tui.widgets.tool_card import ToolCard

SIZE = (100, 32)
THOUGHT = (
    "The user wants 17 * 23. In my head: 17 * 20 = 340 and 17 * 3 = 51, so 391. "
    "Better to check with a tool.\n"
)
SnapCompare = Callable[..., bool]


def test_idle(snap_compare: SnapCompare, make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend([]))
    assert snap_compare(app, terminal_size=SIZE)


def test_thinking_streams(snap_compare: SnapCompare, make_chat: MakeApp) -> None:
    backend = GatedBackend([THOUGHT + "Let me also think about" + PAUSE + " more."])
    app = make_chat(backend)

    async def run_before(pilot: Pilot[Any]) -> None:
        await send(pilot, "What is 17 * 23?")
        await wait_until(pilot, backend.paused.is_set)
        await wait_until(pilot, lambda: app.query_one(ThinkingBlock).text.endswith("about"))

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_tool_card_running(snap_compare: SnapCompare, make_chat: MakeApp) -> None:
    gate = threading.Event()
    backend = ScriptedBackend([THOUGHT + call("lookup", query="17 * 23")])
    app = make_chat(backend, tools=[gated_tool(gate)])

    async def run_before(pilot: Pilot[Any]) -> None:
        await send(pilot, "What is 17 * 23?")
        await wait_until(pilot, lambda: bool(app.query(ToolCard)))

    try:
        assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
    finally:
        gate.set()


def test_approval_modal(snap_compare: SnapCompare, make_chat: MakeApp) -> None:
    command = "ls -la\nrm -rf ./build \u202e[/]"
    backend = ScriptedBackend(["I will clean the build.\n" + call("shell", command=command)])
    app = make_chat(backend, tools=[shell])

    async def run_before(pilot: Pilot[Any]) -> None:
        await send(pilot, "Clean the build folder")
        await wait_until(pilot, lambda: isinstance(app.screen, ApprovalScreen))

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_answer_done(snap_compare: SnapCompare, make_chat: MakeApp) -> None:
    turns = [
        THOUGHT + call("add", a=17 * 20, b=17 * 3),
        "The tool confirms 391.\n</think>\n\n17 * 23 = **391** (340 + 51).",
    ]
    app = make_chat(ScriptedBackend(turns), tools=[add])

    async def run_before(pilot: Pilot[Any]) -> None:
        await run_to_end(pilot, "What is 17 * 23?")

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
