"""``ToolCard``: one tool call, from the moment the model makes it to its result.

A card shows the tool's name and (escaped, shortened) arguments in its header, a spinner
while the call runs, then its output or error (shortened: :data:`tui.render.OUTPUT_CHARS`)
and, unless timings are hidden, its duration. It is a :class:`~tui.widgets.fold.Fold`, so
the body folds away. The card is driven by the run's events: :meth:`ToolCard.awaiting`
when a person is asked, :meth:`ToolCard.decided` on the ``Approval`` event,
:meth:`ToolCard.finish` on the ``ToolResult``.
"""

from __future__ import annotations

import time
from typing import Literal

from textual.content import Content
from textual.timer import Timer
from textual.widgets import Static

from agent import ToolCall, ToolResult
from tui import render
from tui.widgets.fold import Fold

CardState = Literal["running", "approval", "done", "error", "denied", "cancelled"]

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_ICONS: dict[CardState, tuple[str, str]] = {
    "approval": ("?", "bold $warning"),
    "done": ("✓", "bold $success"),
    "error": ("✗", "bold $error"),
    "denied": ("⊘", "bold $error"),
    "cancelled": ("■", "bold $warning"),
}
_LABELS: dict[CardState, str] = {
    "running": "running",
    "approval": "waiting for approval",
    "done": "",
    "error": "error",
    "denied": "denied",
    "cancelled": "cancelled",
}


class ToolCard(Fold):
    """A tool call and its outcome.

    Args:
        call: the call as the model made it.
        show_timings: show the duration once the call is done.
    """

    def __init__(self, call: ToolCall, *, show_timings: bool = True) -> None:
        arguments, cut = render.compact_arguments(call.arguments)
        # The full arguments only when the header could not show them all.
        details = Static(
            Content(render.argument_lines(call.arguments) if cut else ""), classes="tool-arguments"
        )
        details.display = cut
        output = Static("", markup=False, classes="tool-output")
        output.display = False
        super().__init__(details, output, classes="tool-card -running")
        self._arguments, self._details, self._output = arguments, details, output
        self.call = call
        self.state: CardState = "running"
        self.result: ToolResult | None = None
        self.show_timings = show_timings
        self.auto_approved = False
        self._frame = 0
        self._spinner: Timer | None = None
        self._started = time.monotonic()

    def on_mount(self) -> None:
        super().on_mount()
        if self.state == "running" and self.app.animation_level != "none":
            self._spinner = self.set_interval(0.1, self._spin)

    def _spin(self) -> None:
        self._frame = (self._frame + 1) % len(SPINNER)
        self.refresh_header()

    def header_content(self) -> Content:
        if self.state == "running":
            icon, style = SPINNER[self._frame], "bold $accent"
        else:
            icon, style = _ICONS[self.state]
        label = _LABELS[self.state]
        if self.auto_approved and self.state == "running":
            label = "running (approved by policy)"
        if self.state == "done" and self.result is not None and self.show_timings:
            label = render.duration(self.result.duration)
        return Content.assemble(
            (icon, style),
            " ",
            (render.safe(self.call.name), "bold"),
            ("(", "dim"),
            (self._arguments, "$text-muted"),
            (")", "dim"),
            "  ",
            (label, "italic $text-muted"),
        )

    def _set_state(self, state: CardState) -> None:
        self.state = state
        for name in ("running", "approval", "done", "error", "denied", "cancelled"):
            self.set_class(name == state, f"-{name}")
        if state != "running" and self._spinner is not None:
            self._spinner.stop()
            self._spinner = None
        self.refresh_header()

    def awaiting(self) -> None:
        """A person is being asked whether this call may run."""
        self._set_state("approval")

    def decided(self, allowed: bool, decided_by: str | None) -> None:
        """The approval is decided (by a person, a callback or the policy)."""
        self.auto_approved = allowed and decided_by == "policy"
        self._set_state("running" if allowed else "denied")
        animate = self.is_mounted and self.app.animation_level != "none"
        if allowed and self._spinner is None and animate:
            self._spinner = self.set_interval(0.1, self._spin)

    def finish(self, result: ToolResult) -> None:
        """Show the result (or error) of the call."""
        self.result = result
        if result.error is not None:
            state: CardState = "error"
            if result.error_type == "denied":
                state = "denied"
            elif result.error_type == "cancelled":
                state = "cancelled"
            self._output.update(Content(render.truncate(result.error)))
            self._output.set_class(True, "-error")
        else:
            state = "done"
            self._output.update(Content(render.truncate(result.output or "(no output)")))
        self._output.display = True
        self._set_state(state)
