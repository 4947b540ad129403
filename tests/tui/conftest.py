"""Fixtures for the TUI tests (helpers are in :mod:`tests.tui.helpers`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from agent import Agent
from models.scripted import GatedBackend, ScriptedBackend
from tests.tui.helpers import MakeApp
from tui.app import ChatApp, make_app


@pytest.fixture
def anyio_backend() -> str:
    """The async tests of this folder (``pytest.mark.anyio``) run on asyncio, as Textual does."""
    return "asyncio"


@pytest.fixture
def make_chat(tmp_path: Path) -> Iterator[MakeApp]:
    """``make_chat(backend, tools=[...], **agent_options) -> ChatApp`` (deterministic).

    Every gate of a :class:`GatedBackend` is opened when the test ends, so no thread is
    left waiting.
    """
    backends: list[GatedBackend | ScriptedBackend] = []

    def factory(
        backend: GatedBackend | ScriptedBackend, tools: Sequence[Any] = (), **options: Any
    ) -> ChatApp:
        backends.append(backend)
        options.setdefault("workspace", tmp_path)
        agent = Agent(backend, tools=list(tools), **options)
        app = make_app(agent, deterministic=True)
        if isinstance(backend, GatedBackend):
            backend.closing = lambda: app.approvals.closing
        return app

    yield factory
    for backend in backends:
        backend.close()
