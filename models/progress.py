"""Progress of getting a model ready: downloading its file, then loading it.

Callers that draw their own progress (the TUI's status bar) pass a :data:`ProgressCallback`
to :func:`models.catalog.open_backend` (or :meth:`agent.Agent.load`); without one, a download
shows huggingface_hub's usual terminal progress bar. The callback is called from the thread
doing the work, at most about ten times a second while bytes arrive, and once more at each
phase's end; it must be quick and must not raise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Phase = Literal["download", "load"]


@dataclass(frozen=True)
class LoadProgress:
    """Where getting a model ready stands.

    ``done`` and ``total`` count bytes while downloading; while loading, ``total`` is the
    file's size and ``done`` is 0, then the size once the model is loaded (llama.cpp reports
    no progress in between through llama-cpp-python).
    """

    phase: Phase
    what: str
    """The file (its name) being downloaded or loaded."""
    done: int = 0
    total: int | None = None

    @property
    def fraction(self) -> float | None:
        """``done / total`` in [0, 1], or ``None`` when the total is unknown."""
        if not self.total:
            return None
        return min(1.0, max(0.0, self.done / self.total))

    def describe(self) -> str:
        """A short line for a status bar: ``downloading x.gguf 1.2 / 19.9 GB``."""
        if self.phase == "load":
            size = f" ({human_bytes(self.total)})" if self.total else ""
            return f"loading {self.what}{size}"
        if self.total:
            return f"downloading {self.what} {human_bytes(self.done)} / {human_bytes(self.total)}"
        return f"downloading {self.what} {human_bytes(self.done)}"


ProgressCallback = Callable[[LoadProgress], None]


def human_bytes(count: int | None) -> str:
    """``1234567`` → ``"1.2 MB"`` (decimal units, as download sizes are usually given)."""
    value = float(count or 0)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


class _Sink:
    """A file that drops what tqdm writes (the callback is the only output)."""

    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        pass


def forwarding_tqdm(callback: ProgressCallback, what: str, *, interval: float = 0.1) -> type:
    """A tqdm class for huggingface_hub's ``tqdm_class`` that draws nothing and reports to
    ``callback`` instead: at most once per ``interval`` seconds, and when a bar closes.

    It has ``update_transfer``, so a Xet download uses one bar for both of its counters
    (bytes received, bytes written) and only the bytes written are reported.
    """
    from tqdm.std import tqdm

    class Forwarding(tqdm):  # type: ignore[misc, type-arg]
        monitor_interval = 0  # no monitor thread

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["file"] = _Sink()
            kwargs["disable"] = False
            self._last_report = -math.inf  # the first update is reported (monotonic() may be small)
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            now = time.monotonic()
            if now - self._last_report >= interval or (self.total and self.n >= self.total):
                self._last_report = now
                self._report()
            return shown

        def update_transfer(self, n: float | None = 1) -> None:
            """Bytes received but not yet written (Xet): not reported."""

        def set_transfer_postfix_str(self, *args: Any, **kwargs: Any) -> None:
            pass

        def close(self) -> None:
            if not self.disable:
                self._report()
            super().close()

        def _report(self) -> None:
            total = int(self.total) if self.total else None
            callback(LoadProgress("download", what, int(self.n), total))

    return Forwarding
