"""Shared fixtures: a scripted agent factory and an isolated sessions folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from agent import Agent, tool
from models.scripted import ScriptedBackend


@pytest.fixture(autouse=True)
def _sessions_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Transcripts of every test go to a temporary folder, never the user's data dir."""
    folder = tmp_path_factory.mktemp("sessions")
    monkeypatch.setenv("QWQ_AGENT_SESSIONS", str(folder))
    yield folder


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


def call(name: str, **arguments: Any) -> str:
    """The text of a well-formed call block, as the model writes it."""
    import json

    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


HANG_BOUND = 15.0
"""Seconds after which a test that waits for a limit, a cancel or a kill calls it a hang.

Tests of timeouts assert that the guarded operation ended well before it would have on its
own (the slow thing they stop lasts longer than this, or forever), never how fast the
machine is: CI machines are shared and noisy. Speed is measured in ``benchmarks/``.
"""


MakeAgent = Callable[..., tuple[Agent, ScriptedBackend]]


@pytest.fixture
def make_agent(tmp_path: Path) -> MakeAgent:
    """``make_agent(turns, tools=[...], **agent_options) -> (agent, backend)``."""

    def factory(
        turns: Sequence[str], tools: Sequence[Any] = (add,), **options: Any
    ) -> tuple[Agent, ScriptedBackend]:
        backend = ScriptedBackend(turns)
        options.setdefault("workspace", tmp_path)
        return Agent(backend, tools=list(tools), **options), backend

    return factory
