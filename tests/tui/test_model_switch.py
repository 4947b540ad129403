"""``/model`` loads the new model beside the working one and keeps the working one when the
load fails; load and run errors read as a person's message, in TUI terms (issue 12, items
3 and 10)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from agent import Agent
from models.base import Backend, BackendError
from models.progress import ProgressCallback
from models.scripted import ScriptedBackend
from tests.tui.helpers import run_to_end, send, wait_until
from tui.app import ChatApp, make_app
from tui.errors import describe, in_tui_terms
from tui.widgets.turn import Note, UserMessage

pytestmark = pytest.mark.anyio

HELLO = "Greet.\n</think>\n\nHello!"
HUB_ERROR = (
    "could not reach the Hugging Face Hub to download big.gguf. Download it yourself from "
    "https://example.org/big.gguf and run with --model /path/to/that.gguf"
)


class HeldAgent(Agent):
    """An agent whose model load waits for ``gate``, then fails with ``error`` (or loads)."""

    def __init__(self, gate: threading.Event, error: str | None, **options: Any) -> None:
        super().__init__(ScriptedBackend([HELLO, HELLO], name="second"), **options)
        self.gate, self.error = gate, error
        self.closed = False

    def load(self, progress: ProgressCallback | None = None) -> Backend:
        self.gate.wait(timeout=20)
        if self.error is not None:
            raise BackendError(self.error)
        return super().load(progress)

    def close(self) -> None:
        self.closed = True
        super().close()


def notes(app: ChatApp) -> list[str]:
    return [str(n.content) for n in app.query(Note)]


def switching_app(tmp_path: Path, gate: threading.Event, error: str | None) -> tuple[ChatApp, Any]:
    made: dict[str, Agent] = {}

    def factory(model: str | None) -> Agent:
        agent: Agent
        if model is None:
            agent = Agent(ScriptedBackend([HELLO] * 3, name="first"), workspace=tmp_path)
        else:
            agent = HeldAgent(gate, error, workspace=tmp_path)
        made[model or "first"] = agent
        return agent

    return make_app(factory, deterministic=True), made


async def test_a_failed_load_keeps_the_working_model_and_its_conversation(tmp_path: Path) -> None:
    gate = threading.Event()
    app, made = switching_app(tmp_path, gate, HUB_ERROR)
    async with app.run_test(size=(100, 30)) as pilot:
        await run_to_end(pilot, "hi")
        first = app.agent
        assert first.history

        await send(pilot, "/model big")
        await wait_until(pilot, lambda: app.loading, what="the new model to start loading")
        # While the new model loads, the working one is still the app's, loaded and whole.
        assert app.agent is first and app.status.model == "first"
        assert app.status.activity == "loading big"
        await send(pilot, "a task sent during the load")
        assert "starts when it is ready" in notes(app)[-1]

        gate.set()
        await wait_until(pilot, lambda: not app.loading, what="the load to fail")
        said = notes(app)[-1]
        assert said.startswith("Cannot load big: could not reach the Hugging Face Hub")
        assert "load it with /model /path/to/that.gguf" in said
        assert "Still using first; the conversation goes on." in said
        assert "BackendError" not in said and "--model" not in said
        assert app.agent is first and first.history and made["big"].closed
        assert app.status.model == "first" and app.status.activity == "idle"
        assert app.prompt_input.text == "a task sent during the load"  # not lost

        app.prompt_input.clear()
        await run_to_end(pilot, "still there?")
        assert app.turn is not None and app.turn.answer_text == "Hello!"


async def test_the_new_model_replaces_the_old_one_once_it_has_loaded(tmp_path: Path) -> None:
    gate = threading.Event()
    app, made = switching_app(tmp_path, gate, None)
    async with app.run_test(size=(100, 30)) as pilot:
        await run_to_end(pilot, "hi")
        first = app.agent
        await send(pilot, "/model big")
        await wait_until(pilot, lambda: app.loading, what="the new model to start loading")
        assert "first stays until it is ready" in notes(app)[-1]
        await send(pilot, "for the new model")
        backend = first.backend
        assert isinstance(backend, ScriptedBackend) and not backend.closed
        gate.set()
        await wait_until(pilot, lambda: app.turn is not None and app.agent is made["big"])
        await wait_until(pilot, lambda: not app.running, what="the waiting task to run")
        assert backend.closed and app.status.model == "second"
        assert [str(m.content) for m in app.query(UserMessage)][-1] == "for the new model"
        assert app.agent.history  # the task ran on the new model


async def test_the_first_model_failing_says_what_to_do_in_tui_terms(tmp_path: Path) -> None:
    agent = Agent(str(tmp_path / "missing.gguf"), workspace=tmp_path)
    app = make_app(agent, model_label="missing.gguf", deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: not app.loading)
        said = notes(app)[-1]
        assert said.startswith("The model could not be loaded: ")
        assert said.endswith("/model NAME loads another.")
        assert "Error:" not in said  # no class name
        await send(pilot, "try anyway")
        await wait_until(pilot, lambda: app.turn is not None and not app.running)
        failed = [n for n in notes(app) if "the run failed" in n]
        assert failed and "Error:" not in failed[0], failed


def test_describe_drops_the_class_of_expected_failures_only() -> None:
    assert describe(BackendError("no such model; run with --model X")) == (
        "no such model; load it with /model X"
    )
    assert describe(FileNotFoundError(2, "No such file or directory")) == (
        "[Errno 2] No such file or directory"
    )
    assert describe(ValueError("")) == "ValueError"
    bug = describe(KeyError("n_ctx"))
    assert bug.startswith("KeyError: 'n_ctx'") and "this is a bug" in bug
    assert describe(TypeError("x")).startswith("TypeError: x (this is a bug")


def test_in_tui_terms_rewrites_only_hints_that_have_a_command() -> None:
    assert in_tui_terms("(e.g. --model qwq-32b:Q4_K_M)") == "(e.g. /model qwq-32b:Q4_K_M)"
    assert in_tui_terms("point --model at a .gguf model file") == (
        "point /model at a .gguf model file"
    )
    # No chat command sets these: they stay as they are (restart with them).
    assert in_tui_terms("pass --model-name NAME or --ctx 8192") == (
        "pass --model-name NAME or --ctx 8192"
    )
