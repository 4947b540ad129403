"""The ``web_search`` tool: top web results (title, URL, snippet) through the ``ddgs`` library.

The search client is a seam: anything with ``text(query, max_results=N) -> list[dict]`` (the
shape of ``ddgs.DDGS``). :func:`set_search_client` installs a factory for it, so tests run a
fake and never touch the network; by default a new ``DDGS`` is made per call.

Rate limits, timeouts and other search failures are retried a bounded number of times with
exponential backoff (``retries`` extra attempts, waiting ``backoff_seconds``, then twice that,
…), then become a :class:`SearchError` the model can read. Settings
(``ctx.settings_for("web_search")``): ``retries`` (2), ``backoff_seconds`` (1.0),
``timeout`` (10 s, per attempt, passed to ``DDGS``), ``max_query_chars`` (500: a longer query
is refused before anything is sent; a search needs a few words, and a cap bounds what one
call can carry off the machine).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from tools.base import ToolCancelledError, ToolContext, ToolError, tool

MAX_RESULTS = 20
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF_SECONDS = 1.0
DEFAULT_TIMEOUT = 10
DEFAULT_MAX_QUERY_CHARS = 500


class SearchClient(Protocol):
    """What ``web_search`` needs from a search library (``ddgs.DDGS`` fits)."""

    def text(self, query: str, **kwargs: Any) -> list[dict[str, Any]]: ...


ClientFactory = Callable[[int], SearchClient]
"""Makes a client, given the per-attempt timeout in seconds."""


class SearchError(ToolError):
    """The search failed after its retries, or the query was unusable."""


def _ddgs_client(timeout: int) -> SearchClient:
    from ddgs import DDGS

    client: SearchClient = DDGS(timeout=timeout)
    return client


_factory: ClientFactory = _ddgs_client
_factory_lock = threading.Lock()


def set_search_client(factory: ClientFactory | None) -> ClientFactory:
    """Install the client factory (``None``: the real ``ddgs``); return the previous one."""
    global _factory
    with _factory_lock:
        previous, _factory = _factory, factory or _ddgs_client
    return previous


def _is_retryable(exc: Exception) -> bool:
    """Rate limits, timeouts and search-library errors are worth another try; bugs are not."""
    from ddgs.exceptions import DDGSException

    return isinstance(exc, DDGSException | TimeoutError | ConnectionError | OSError)


def _is_no_results(exc: Exception) -> bool:
    """ddgs reports an empty result list as an exception ("No results found.")."""
    return type(exc).__name__ == "DDGSException" and "no results" in str(exc).lower()


def _describe(exc: Exception) -> str:
    name = type(exc).__name__
    if "ratelimit" in name.lower():
        return "the search engine is rate-limiting requests"
    if "timeout" in name.lower():
        return "the search timed out"
    return f"the search failed ({name}: {str(exc)[:200]})"


def _format(results: list[dict[str, Any]], query: str) -> str:
    if not results:
        return f"No results for {query!r}."
    blocks = []
    for number, item in enumerate(results, 1):
        title = " ".join(str(item.get("title") or "(no title)").split())
        url = str(item.get("href") or item.get("url") or "")
        snippet = " ".join(str(item.get("body") or item.get("snippet") or "").split())
        blocks.append(f"{number}. {title}\n   {url}\n   {snippet}".rstrip())
    return "\n\n".join(blocks)


def search(
    query: str,
    max_results: int = 5,
    *,
    retries: int = DEFAULT_RETRIES,
    backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
    timeout: int = DEFAULT_TIMEOUT,
    cancel_event: threading.Event | None = None,
    max_query_chars: int = DEFAULT_MAX_QUERY_CHARS,
) -> list[dict[str, Any]]:
    """Run the search with bounded retries; return the raw result dicts (at most ``max_results``).

    Raises:
        SearchError: an empty query, one longer than ``max_query_chars`` (nothing is sent),
            or every attempt failed (the message says how).
    """
    query = query.strip()
    if not query:
        raise SearchError("the query is empty; say what to search for")
    if len(query) > max_query_chars:
        raise SearchError(
            f"the query is {len(query)} characters long; the limit is {max_query_chars}. "
            "Search for a few key words instead"
        )
    count = max(1, min(int(max_results), MAX_RESULTS))
    last: Exception | None = None
    for attempt in range(retries + 1):
        if cancel_event is not None and cancel_event.is_set():
            raise ToolCancelledError("the search was cancelled")
        try:
            results = _factory(timeout).text(query, max_results=count)
        except Exception as exc:
            if _is_no_results(exc):
                return []
            if not _is_retryable(exc):
                raise SearchError(_describe(exc)) from exc
            last = exc
            if attempt < retries:
                wait = backoff_seconds * (2**attempt)
                if cancel_event is not None:
                    cancel_event.wait(wait)
                else:
                    time.sleep(wait)
            continue
        if not isinstance(results, list):
            raise SearchError(f"the search client returned {type(results).__name__}, not a list")
        return [r for r in results if isinstance(r, dict)][:count]
    assert last is not None
    raise SearchError(
        f"{_describe(last)}; gave up after {retries + 1} attempt{'s' if retries else ''}. "
        "Try again later or "
        "rephrase the query"
    )


@tool(capabilities={"sends_out", "untrusted_content"})
def web_search(query: str, max_results: int = 5, *, ctx: ToolContext) -> str:
    """Search the web and return the top results, each with title, URL and snippet.

    Args:
        query: What to search for.
        max_results: How many results to return (1 to 20).
    """
    settings = ctx.settings_for("web_search")
    results = search(
        query,
        max_results,
        retries=int(settings.get("retries", DEFAULT_RETRIES)),
        backoff_seconds=float(settings.get("backoff_seconds", DEFAULT_BACKOFF_SECONDS)),
        timeout=int(settings.get("timeout", DEFAULT_TIMEOUT)),
        cancel_event=ctx.cancel_event,
        max_query_chars=int(settings.get("max_query_chars", DEFAULT_MAX_QUERY_CHARS)),
    )
    return _format(results, query.strip())
