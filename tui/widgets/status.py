"""``StatusBar``: what the agent is, and what the current run costs.

Shows the model, the placement, the activity (idle, loading, running, with a spinner),
the elapsed time of the run, decode speed in tokens/s, context used / context size, tokens
of thinking, prompt tokens reused from the cache and the step count. While a model loads,
an indeterminate progress bar runs beside it.

Contract: the bar only displays what it is told (:meth:`StatusBar.set_model`,
:meth:`StatusBar.start_run`, :meth:`StatusBar.update_usage` after each step,
:meth:`StatusBar.update_live` several times a second while the model generates …); with
``show_timings`` off it shows neither speed nor elapsed time, so a screenshot of it is
deterministic. An estimated token count (the backend has not counted the text yet) is
marked ``~``.
"""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.timer import Timer
from textual.widgets import ProgressBar, Static

from agent import LoadProgress, Usage
from tui import render
from tui.live_usage import LiveFigures
from tui.widgets.tool_card import SPINNER


class StatusBar(Horizontal):
    """One line of status at the bottom of the chat.

    Args:
        show_timings: show tokens/s and elapsed time.
    """

    def __init__(self, *, show_timings: bool = True, id: str | None = None) -> None:
        super().__init__(id=id)
        self.show_timings = show_timings
        self.model = "no model"
        self.placement = ""
        self.context_size = 0
        self.usage: Usage | None = None
        self.live: LiveFigures | None = None
        """The run's figures while it generates (:mod:`tui.live_usage`)."""
        self.step = 0
        self.activity = "idle"
        self._started: float | None = None
        self._elapsed = 0.0
        self._frame = 0
        self._ticker: Timer | None = None
        self._content = Content("")
        self._text = Static("", markup=False, id="status-text")
        self._progress = ProgressBar(total=None, show_eta=False, show_percentage=False)
        self._progress.display = False

    def compose(self) -> ComposeResult:
        yield self._text
        yield self._progress

    def on_mount(self) -> None:
        self.refresh_status()

    def set_model(self, name: str, context_size: int) -> None:
        self.model, self.context_size = name, context_size
        self.refresh_status()

    def set_placement(self, placement: str) -> None:
        self.placement = placement
        self.refresh_status()

    def show_loading(self, label: str | None) -> None:
        """Show ``label`` with a progress bar while a model loads; ``None`` when done."""
        self._progress.display = label is not None
        if label is None:
            self._progress.update(total=None, progress=0)
        self._set_activity(label or "idle", running=label is not None)

    def show_load_progress(self, progress: LoadProgress) -> None:
        """Show how a download or load goes: a bar that fills while bytes arrive, an
        indeterminate one while llama.cpp loads (it reports no progress)."""
        self._progress.display = True
        if progress.phase == "download" and progress.total:
            self._progress.update(total=progress.total, progress=progress.done)
        else:
            self._progress.update(total=None, progress=0)
        self._set_activity(progress.describe(), running=True)

    def start_run(self) -> None:
        self.clear_run()
        self._started = time.monotonic()
        self._set_activity("running", running=True)

    def clear_run(self) -> None:
        """Forget the last run's figures and outcome (``/new``; a new model has nothing to
        show yet). What the agent is doing now (loading, running) stays."""
        self.usage, self.live, self.step = None, None, 0
        self._started, self._elapsed = None, 0.0
        if self._ticker is None:
            self.activity = "idle"
        self.refresh_status()

    def end_run(self, outcome: str = "idle") -> None:
        if self._started is not None:
            self._elapsed = time.monotonic() - self._started
        self._started = None
        self._set_activity(outcome, running=False)

    def update_usage(self, usage: Usage, step: int) -> None:
        self.usage, self.step = usage, step
        self.refresh_status()

    def update_live(self, figures: LiveFigures) -> None:
        """Show ``figures`` of the run in progress (speed, context, thinking tokens)."""
        self.live = figures
        self.refresh_status()

    def set_activity(self, label: str) -> None:
        """Change what the bar says the agent is doing (``cancelling`` …)."""
        self.activity = label
        self.refresh_status()

    def _set_activity(self, activity: str, *, running: bool) -> None:
        self.activity = activity
        if running and self._ticker is None and self.is_mounted:
            self._ticker = self.set_interval(0.25, self._tick)
        elif not running and self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        self.refresh_status()

    def _tick(self) -> None:
        if self.app.animation_level != "none":
            self._frame = (self._frame + 1) % len(SPINNER)
        self.refresh_status()

    def refresh_status(self) -> None:
        # Each separator is "│ " after a value that ends with a space: no span starts with
        # a space (SVG renderers drop it, which misplaced the separators in screenshots).
        busy = self._ticker is not None
        usage = self.usage
        parts: list[str | tuple[str, str]] = [
            (" ", ""),
            (f"{render.safe(self.model)} ", "bold"),
            ("│ ", "$text-muted"),
            (f"{self.placement} ", ""),
            ("│ ", "$text-muted"),
            (f"{SPINNER[self._frame]} " if busy else "", "$accent"),
            (f"{self.activity} ", "bold $accent" if busy else "$text-muted"),
        ]
        if self.show_timings and (self._started is not None or self._elapsed):
            # beside the activity: on a narrow terminal the right end is cut, not the time
            elapsed = time.monotonic() - self._started if self._started else self._elapsed
            parts += [(f"{render.duration(elapsed)} ", "$text-muted")]
        live, speed, context = self.live, None, 0  # live figures are the newest
        if live is not None:
            speed, context = live.tokens_per_second, live.context_tokens
        elif usage is not None:
            speed, context = usage.decode_tokens_per_second, usage.context_tokens
        about = "~" if live is not None and live.estimated else ""
        if self.show_timings and speed is not None:
            parts += [("│ ", "$text-muted"), (f"{about}{speed:.1f} tok/s ", "")]
        size = f"{self.context_size:,}" if self.context_size else "?"
        cached = usage.prompt_tokens_cached if usage is not None else 0
        parts += [("│ ", "$text-muted"), (f"ctx {about}{context:,}/{size} ", "")]
        if live is not None and live.thinking_tokens:
            parts += [("│ ", "$text-muted"), (f"think {about}{live.thinking_tokens:,} ", "")]
        parts += [
            ("│ ", "$text-muted"),
            (f"cached {cached:,} ", ""),
            ("│ ", "$text-muted"),
            (f"step {self.step}", ""),
        ]
        self._content = Content.assemble(*parts)
        self._text.update(self._content)

    @property
    def text(self) -> str:
        """What the bar shows now, as plain text."""
        return self._content.plain
