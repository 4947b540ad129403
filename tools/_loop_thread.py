"""A background thread running an asyncio event loop, for synchronous callers of async code.

:class:`LoopThread` starts a daemon thread whose loop runs until :meth:`LoopThread.stop`;
coroutines are submitted with :meth:`LoopThread.submit` (``asyncio.run_coroutine_threadsafe``)
and their results waited for with :func:`wait_result`, which also gives up when a
cancellation event is set. Stopping cancels what is still pending and closes the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any


class LoopThread:
    """A daemon thread running an asyncio event loop until stopped."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self.loop.is_closed()

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Schedule ``coroutine`` on the loop; its future."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop (pending tasks are cancelled) and wait for the thread. Idempotent."""
        if self.alive:
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


def wait_result(
    future: concurrent.futures.Future[Any], timeout: float, cancel: threading.Event
) -> Any:
    """``future.result(timeout)``, giving up early (and cancelling) when ``cancel`` is set."""
    waited = 0.0
    while waited < timeout:
        step = min(0.1, timeout - waited)
        try:
            return future.result(timeout=step)
        except concurrent.futures.TimeoutError:
            waited += step
            if cancel.is_set():
                future.cancel()
                raise concurrent.futures.CancelledError() from None
    raise concurrent.futures.TimeoutError()
