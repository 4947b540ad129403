"""Helpers for the TUI tests: scripted sessions that can be held at any point.

Tests import these from ``tests.tui.helpers`` (one module, so ``isinstance`` holds);
the fixtures are in ``conftest.py``.

* :class:`GatedBackend` streams a script like :class:`models.scripted.ScriptedBackend`,
  but stops at each :data:`PAUSE` mark until the test opens its gate: the app can be
  looked at (or photographed) in the middle of a thought.
* :func:`gated_tool` is a safe tool that runs until its gate opens: a card stays "running".
* :func:`wait_until` polls a condition through the Pilot, so tests never sleep blindly.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Generator, Sequence
from typing import Any

from textual.pilot import Pilot

from agent import Tool, tool
from models.base import BackendInfo, GenerateOptions, Segment, StopReason, Usage
from models.scripted import ScriptedBackend
from tools.base import Risk
from tui.app import ChatApp
from tui.widgets.turn import AssistantTurn

PAUSE = "\u23f8"
"""In a turn of a :class:`GatedBackend`, where streaming waits for the gate."""


def call(name: str, **arguments: Any) -> str:
    """A well-formed call block, as the model writes it."""
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


class GatedBackend:
    """A scripted backend that waits at each :data:`PAUSE` until :attr:`gate` is set.

    Like a real backend between two tokens, a held stream also lets go when the app closes
    (``closing()`` becomes true), so quitting never waits for the gate.
    """

    def __init__(self, turns: Sequence[str], **options: Any) -> None:
        self.inner = ScriptedBackend(turns, **options)
        self.gate = threading.Event()
        self.paused = threading.Event()
        """Set while the stream is held at a mark."""
        self.closing: Callable[[], bool] = lambda: False

    @property
    def info(self) -> BackendInfo:
        return self.inner.info

    @property
    def usage(self) -> Usage:
        return self.inner.usage

    def generate(
        self, context: Sequence[Segment], options: GenerateOptions
    ) -> Generator[str, None, StopReason]:
        return self._hold(self.inner.generate(context, options))

    def _hold(self, inner: Generator[str, None, StopReason]) -> Generator[str, None, StopReason]:
        try:
            while True:
                try:
                    chunk = next(inner)
                except StopIteration as stop:
                    reason: StopReason = stop.value
                    return reason
                if PAUSE in chunk:
                    before, _, chunk = chunk.partition(PAUSE)
                    if before:
                        yield before
                    self.paused.set()
                    while not self.gate.wait(timeout=0.02) and not self.closing():
                        pass
                    self.paused.clear()
                if chunk:
                    yield chunk
        finally:
            inner.close()

    def close(self) -> None:
        self.gate.set()
        self.inner.close()


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
