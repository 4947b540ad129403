"""Helpers for the TUI tests: scripted sessions that can be held at any point.

Tests import these from ``tests.tui.helpers`` (one module, so ``isinstance`` holds);
the fixtures are in ``conftest.py``.

* :class:`models.scripted.GatedBackend` (imported from there) streams a script but stops
  at each :data:`~models.scripted.PAUSE` mark until the test opens its gate: the app can be
  looked at (or photographed) in the middle of a thought.
* :func:`gated_tool` is a safe tool that runs until its gate opens: a card stays "running".
* :func:`wait_until` polls a condition through the Pilot, so tests never sleep blindly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot

from agent import Tool, tool
from tools.base import Risk
from tui.app import ChatApp
from tui.widgets.turn import AssistantTurn


def gated_tool(gate: threading.Event, *, risk: Risk = "safe") -> Tool:
    """A tool ``lookup(query)`` that answers once ``gate`` is set (or after 20 s)."""

    def lookup(query: str) -> str:
        """Look something up.

        Args:
            query: What to look up.
        """
        gate.wait(timeout=20)
        return f"found {query}"

    return tool(risk=risk)(lookup)


@tool(risk="dangerous")
def shell(command: str) -> str:
    """Run a shell command (in these tests: only echo it back).

    Args:
        command: The command line.
    """
    return f"ran {command}"


async def wait_until(
    pilot: Pilot[Any], condition: Callable[[], bool], timeout: float = 10.0, what: str = ""
) -> None:
    """Let the app run until ``condition()`` holds; fail after ``timeout`` seconds."""
    steps = int(timeout / 0.02)
    for _ in range(steps):
        if condition():
            await pilot.pause()
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what or condition}")


async def send(pilot: Pilot[Any], text: str) -> None:
    """Type ``text`` in the prompt box and press Enter."""
    app = pilot.app
    assert isinstance(app, ChatApp)
    app.prompt_input.focus()
    app.prompt_input.insert(text)
    await pilot.press("enter")


async def run_to_end(pilot: Pilot[Any], text: str) -> None:
    """Send ``text`` and wait until its run has ended."""
    app = pilot.app
    assert isinstance(app, ChatApp)
    await wait_until(pilot, lambda: not app.loading, what="the model to load")
    turns = len(app.query(AssistantTurn))
    await send(pilot, text)
    await wait_until(
        pilot,
        lambda: len(app.query(AssistantTurn)) > turns and not app.running,
        what="the run to end",
    )


MakeApp = Callable[..., ChatApp]
"""``make_chat(backend, tools=[...], **agent_options) -> ChatApp`` (the fixture's type)."""
