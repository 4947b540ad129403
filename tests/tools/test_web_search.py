"""web_search through a fake client; rate limits become a tool error after bounded retries."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

import tools.web_search as web
from tests.conftest import HANG_BOUND
from tools.base import ToolCancelledError, ToolContext, ToolError
from tools.registry import builtin
from tools.web_search import SearchError, set_search_client, web_search

RESULTS = [
    {"title": "Qwen / QwQ-32B", "href": "https://example.org/qwq", "body": "A  reasoning\nmodel."},
    {"title": "llama.cpp", "href": "https://example.org/llama", "body": "Inference in C/C++."},
    {"title": "Textual", "href": "https://example.org/textual", "body": "TUI framework."},
]


class FakeClient:
    """Queued outcomes (a list of results, or an exception to raise); calls are recorded."""

    def __init__(self, outcomes: list[Any]) -> None:
        self.outcomes = outcomes
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def text(self, query: str, **kwargs: Any) -> list[dict[str, Any]]:
        self.calls.append((query, kwargs))
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return list(outcome)


@pytest.fixture
def fake() -> Iterator[FakeClient]:
    client = FakeClient([RESULTS])
    timeouts: list[int] = []

    def factory(timeout: int) -> FakeClient:
        timeouts.append(timeout)
        return client

    previous = set_search_client(factory)
    try:
        yield client
    finally:
        set_search_client(previous)
    assert all(t == timeouts[0] for t in timeouts)


def search(query: str, max_results: int | None = None, **settings: Any) -> str:
    args: dict[str, Any] = {"query": query}
    if max_results is not None:
        args["max_results"] = max_results
    ctx = ToolContext(settings={"web_search": {"backoff_seconds": 0, **settings}})
    return str(web_search.invoke(web_search.validate(args), ctx))


def test_results_show_title_url_and_snippet(fake: FakeClient) -> None:
    text = search("qwq 32b", 2)
    assert text == (
        "1. Qwen / QwQ-32B\n   https://example.org/qwq\n   A reasoning model.\n\n"
        "2. llama.cpp\n   https://example.org/llama\n   Inference in C/C++."
    )
    assert fake.calls == [("qwq 32b", {"max_results": 2})]


def test_count_is_bounded_and_defaults_to_five(fake: FakeClient) -> None:
    search("x")
    search("x", 500)
    search("x", 0)
    assert [kwargs["max_results"] for _, kwargs in fake.calls] == [5, 20, 1]
    assert web_search.parameters["properties"]["max_results"]["default"] == 5
    assert builtin("web_search") is web_search and web_search.risk == "safe"


def test_rate_limit_is_retried_then_succeeds(fake: FakeClient) -> None:
    fake.outcomes = [RatelimitException("202 Ratelimit"), TimeoutException("timed out"), RESULTS]
    assert search("q").startswith("1. Qwen / QwQ-32B")
    assert len(fake.calls) == 3


def test_persistent_rate_limit_becomes_a_tool_error(fake: FakeClient) -> None:
    fake.outcomes = [RatelimitException("202 Ratelimit")]
    with pytest.raises(SearchError, match=r"rate-limiting.*gave up after 3 attempts") as caught:
        search("q")
    assert isinstance(caught.value, ToolError)
    assert len(fake.calls) == 3
    fake.calls.clear()
    with pytest.raises(SearchError, match="timed out; gave up after 1 attempt\\."):
        fake.outcomes = [TimeoutException("timed out")]
        search("q", retries=0)
    assert len(fake.calls) == 1


def test_backoff_grows_exponentially(fake: FakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    fake.outcomes = [RatelimitException("slow down")]
    with pytest.raises(SearchError):
        web.search("q", retries=3, backoff_seconds=0.5)
    assert waits == [0.5, 1.0, 2.0]


def test_no_results_and_bad_queries(fake: FakeClient) -> None:
    fake.outcomes = [DDGSException("No results found.")]
    assert search("zzzz") == "No results for 'zzzz'."
    assert len(fake.calls) == 1  # not retried
    fake.outcomes = [[]]
    assert search("zzzz") == "No results for 'zzzz'."
    with pytest.raises(SearchError, match="query is empty"):
        search("   ")


def test_unexpected_client_errors_are_not_retried(fake: FakeClient) -> None:
    fake.outcomes = [ValueError("bug in the client")]
    with pytest.raises(SearchError, match="ValueError: bug in the client"):
        search("q")
    assert len(fake.calls) == 1


def test_cancel_interrupts_the_backoff(fake: FakeClient) -> None:
    fake.outcomes = [RatelimitException("slow down")]
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(ToolCancelledError):
        web.search("q", retries=5, backoff_seconds=4 * HANG_BOUND, cancel_event=cancel)
    assert time.monotonic() - started < HANG_BOUND


def _online() -> bool:
    try:
        socket.create_connection(("duckduckgo.com", 443), timeout=3).close()
    except OSError:
        return False
    return True


@pytest.mark.slow
def test_real_search_engine() -> None:
    if not _online():
        pytest.skip("no network: the real search engine cannot be reached")
    text = search("Python programming language", 3, retries=1)
    assert text.startswith("1. ") and "http" in text
