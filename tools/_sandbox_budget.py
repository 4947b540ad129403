"""A budget across calls: how many sandboxes run at once, and how much memory they hold.

One model step may ask for up to 16 calls (``max_calls_per_step``); at 512 MiB of address
space each that would be 8 GiB. Every sandbox run holds a slot of the process-wide
:data:`BUDGET` for its lifetime: it enters when fewer than ``max_sandboxes`` run and the
memory limits of those running, plus its own, stay within ``total_memory_mb``. Otherwise it
waits, in arrival order, until its own deadline or cancel, then fails clearly. A run whose
own memory limit exceeds the total could never enter and is refused at once.

Both numbers come from each call's settings (the python tool's ``max_sandboxes``, default 4,
and ``total_memory_mb``, default 2048), so a call is judged by the budget it was given.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_TICK = 0.05


class BudgetError(Exception):
    """The run could not enter the budget; ``waited`` says for how many seconds it tried."""

    def __init__(self, message: str, waited: float = 0.0) -> None:
        super().__init__(message)
        self.waited = waited


class BudgetCancelled(BudgetError):
    """The run was cancelled while it waited for a slot."""


class SandboxBudget:
    """Counts the sandboxes running in this process and their memory limits."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.running = 0
        self.memory_mb = 0.0
        self._queue: list[object] = []

    @contextmanager
    def slot(
        self,
        memory_mb: float,
        *,
        max_sandboxes: int,
        total_memory_mb: float,
        wait_seconds: float,
        cancel_event: threading.Event | None = None,
    ) -> Iterator[None]:
        """Hold a slot while the body runs; see the module docstring.

        Raises:
            BudgetError: no slot within ``wait_seconds``, or ``memory_mb`` over the total.
            BudgetCancelled: ``cancel_event`` was set while waiting.
        """
        if memory_mb > total_memory_mb:
            raise BudgetError(
                f"one sandbox may use {memory_mb:g} MiB, more than the total of "
                f"{total_memory_mb:g} MiB all sandboxes may use together; raise the python "
                "setting total_memory_mb or lower memory_mb"
            )
        started = time.monotonic()
        deadline = started + wait_seconds
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                while not (
                    self._queue[0] is ticket
                    and self.running < max_sandboxes
                    and self.memory_mb + memory_mb <= total_memory_mb
                ):
                    now = time.monotonic()
                    if cancel_event is not None and cancel_event.is_set():
                        raise BudgetCancelled("cancelled while waiting", now - started)
                    if now >= deadline:
                        raise BudgetError(
                            f"{self.running} sandboxes were running ({self.memory_mb:g} MiB "
                            f"of {total_memory_mb:g} MiB, at most {max_sandboxes} at once) "
                            f"for {now - started:.1f} s, the whole wait this call allows; "
                            "make fewer python calls at once, or raise the python settings "
                            "max_sandboxes / total_memory_mb",
                            now - started,
                        )
                    self._cond.wait(min(_TICK, deadline - now))
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()
            self.running += 1
            self.memory_mb += memory_mb
        try:
            yield
        finally:
            with self._cond:
                self.running -= 1
                self.memory_mb -= memory_mb
                self._cond.notify_all()


BUDGET = SandboxBudget()
"""The budget every python tool call in this process shares."""
