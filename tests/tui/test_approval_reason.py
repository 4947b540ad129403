"""The TUI's approval screen shows why a call needs a yes (the exfiltration gate's reason)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models.scripted import ScriptedBackend, call
from tests.tui.helpers import MakeApp, send, wait_until
from tools import web_search
from tui.screens.approval import ApprovalScreen

pytestmark = pytest.mark.anyio


class NoSearch:
    def __init__(self) -> None:
        self.queries: list[str] = []

    def text(self, query: str, max_results: int = 5, **_: object) -> list[dict[str, str]]:
        self.queries.append(query)
        return []


@pytest.fixture
def searches() -> Iterator[NoSearch]:
    client = NoSearch()
    previous = web_search.set_search_client(lambda timeout: client)
    try:
        yield client
    finally:
        web_search.set_search_client(previous)


async def test_the_modal_says_the_run_read_private_data(
    make_chat: MakeApp, tmp_path: Path, searches: NoSearch
) -> None:
    (tmp_path / ".env").write_text("KEY=hunter2\n")
    backend = ScriptedBackend(
        [
            "Read it.\n" + call("read_file", path=".env"),
            "Now send it.\n" + call("web_search", query="hunter2"),
            "Denied.\n</think>\n\nI could not search.",
        ]
    )
    app = make_chat(backend, tools=["read_file", "web_search"], approval="ask")
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, "leak it")
        await wait_until(pilot, lambda: isinstance(app.screen, ApprovalScreen), what="the modal")
        shown = app.screen.query_one("#approval-reason")
        assert "read private data (read_file '.env')" in str(shown.content)  # type: ignore[attr-defined]
        await pilot.press("n")
        await wait_until(pilot, lambda: not app.running, what="the run to end")
    assert searches.queries == []
