"""The TUI asks before a large model download (tui/screens/download.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import App

from agent import Agent
from models.base import Backend, BackendError
from models.progress import ProgressCallback
from models.scripted import ScriptedBackend
from tests.tui.helpers import run_to_end, send, wait_until
from tests.tui.test_model_switch import HELLO, notes
from tui.app import make_app
from tui.screens.download import DownloadScreen, ask_before_download

pytestmark = pytest.mark.anyio


class Host(App[None]):
    """The smallest app that loads a model the way the chat does: ask first, then load."""

    def __init__(self, spec: str) -> None:
        super().__init__()
        self.spec = spec
        self.asked: bool | None = None
        self.answers: list[bool] = []

    def on_mount(self) -> None:
        self.asked = ask_before_download(self, self.spec, self.answers.append)


@pytest.fixture(autouse=True)
def _empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))


@pytest.mark.parametrize(("keys", "answer"), [(["d"], True), (["escape"], False), (["n"], False)])
async def test_a_large_download_waits_for_the_person(keys: list[str], answer: bool) -> None:
    app = Host("qwq-32b")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.asked is True and isinstance(app.screen, DownloadScreen)
        shown = " ".join(str(s.render()) for s in app.screen.query("Static"))
        assert "qwq-32b" in shown and "19.9 GB" in shown
        assert "qwq-agent models pull qwq-32b" in shown
        assert app.answers == []  # nothing starts before the answer
        await pilot.press(*keys)
        await pilot.pause()
        assert app.answers == [answer] and not isinstance(app.screen, DownloadScreen)


async def test_enter_on_the_focused_button_cancels() -> None:
    app = Host("qwq-32b:Q8_0")
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert app.answers == [False]


@pytest.mark.parametrize("spec", ["smollm2-135m", "scripted:x.yaml", "qwq-32b:Q9_X"])
async def test_nothing_is_asked_when_nothing_large_is_downloaded(spec: str) -> None:
    app = Host(spec)
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.asked is False and not isinstance(app.screen, DownloadScreen)
        assert app.answers == []


class Unloadable(Agent):
    """An agent for a hub model (``qwq-32b``) whose load is recorded instead of run."""

    def __init__(self, workspace: Path) -> None:
        super().__init__("qwq-32b", workspace=workspace, transcript=False)
        self.loads = 0
        self.closed = False

    def load(self, progress: ProgressCallback | None = None) -> Backend:
        self.loads += 1
        raise BackendError("recorded instead of downloading")

    def close(self) -> None:
        self.closed = True
        super().close()


async def test_the_chat_asks_before_its_first_model_downloads(tmp_path: Path) -> None:
    agent = Unloadable(tmp_path)
    app = make_app(agent, model_label="qwq-32b", deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, DownloadScreen))
        assert agent.loads == 0 and not app.loading
        assert app.status.model == "qwq-32b (not loaded)"  # named while it asks
        await pilot.press("n")
        await wait_until(pilot, lambda: any("was not downloaded" in n for n in notes(app)))
        assert "qwq-agent models pull qwq-32b" in notes(app)[-1]
        assert agent.loads == 0 and app.status.model == "qwq-32b (not loaded)"


async def test_under_yes_the_chat_loads_without_asking(tmp_path: Path) -> None:
    agent = Unloadable(tmp_path)
    app = make_app(agent, model_label="qwq-32b", deterministic=True, confirm_downloads=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: agent.loads == 1 and not app.loading)
        assert not isinstance(app.screen, DownloadScreen)


async def test_a_declined_model_switch_keeps_the_working_model(tmp_path: Path) -> None:
    big = Unloadable(tmp_path)

    def factory(model: str | None) -> Agent:
        if model is None:
            return Agent(ScriptedBackend([HELLO] * 3, name="first"), workspace=tmp_path)
        return big

    app = make_app(factory, deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await run_to_end(pilot, "hi")
        first = app.agent
        await send(pilot, "/model qwq-32b")
        await wait_until(pilot, lambda: isinstance(app.screen, DownloadScreen))
        await pilot.press("escape")
        await wait_until(pilot, lambda: any("was not downloaded" in n for n in notes(app)))
        assert notes(app)[-1].endswith("Still using first.")
        assert big.loads == 0 and big.closed and app.agent is first
        await run_to_end(pilot, "still there?")
        assert app.turn is not None and app.turn.answer_text == "Hello!"
