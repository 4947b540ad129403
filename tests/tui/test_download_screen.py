"""The TUI asks before a large model download (tui/screens/download.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import App

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
