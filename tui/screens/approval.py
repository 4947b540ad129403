"""``ApprovalScreen``: a person decides whether a dangerous call may run.

The run's worker thread waits while this modal shows; it shows the tool, its risk and its
exact arguments, every control, bidi and zero-width character escaped
(:func:`tui.render.argument_lines`), never parsed as markup.

Contract: the screen is dismissed with one :data:`Decision`: ``"once"`` (y: allow this
call), ``"always"`` (a: allow every call to this tool for the rest of the session) or
``"deny"`` (n or Esc). The caller acts on it; the agent tells the model about a denial.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static
from textual.widgets.button import ButtonVariant

from agent import ToolCall
from tui import render

Decision = Literal["once", "always", "deny"]

NAME_CHARS = 24
"""A tool name longer than this is cut in the "Always allow" button (the title has it whole)."""
SHORT_ROWS = 24
"""A terminal with fewer rows gets a dialog with less padding."""
MIN_ARGUMENT_ROWS = 3
"""The arguments get at least this many rows (they scroll), however small the terminal."""


class ApprovalScreen(ModalScreen[Decision]):
    """Asks whether ``call`` may run."""

    CSS_PATH = "approval.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "decide('once')", "Allow once"),
        Binding("a", "decide('always')", "Always allow this tool"),
        Binding("n,escape", "decide('deny')", "Deny"),
    ]

    def __init__(self, call: ToolCall, risk: str = "dangerous", reason: str | None = None) -> None:
        super().__init__()
        self.call = call
        self.risk = risk
        self.reason = reason  # why it needs a yes beyond its risk (agent.events.Approval)

    def compose(self) -> ComposeResult:
        name = render.safe(self.call.name)
        with Vertical(id="approval-dialog"):
            yield Static(
                Content.assemble(
                    ("Allow this call?  ", "bold"),
                    (name, "bold $warning"),
                    (f"  ({render.safe(self.risk)} tool)", "$text-muted"),
                ),
                id="approval-title",
            )
            if self.reason:
                yield Static(Content(render.safe(self.reason)), id="approval-reason")
            with VerticalScroll(id="approval-arguments"):
                yield Static(Content(render.argument_lines(self.call.arguments)))
            with Horizontal(id="approval-buttons"):
                for label, choice, variant in self.buttons():
                    yield Button(Content(label), id=choice, variant=variant)

    def buttons(self) -> list[tuple[str, Decision, ButtonVariant]]:
        """The label, decision and look of each button, left to right."""
        name = render.safe(self.call.name)
        if len(name) > NAME_CHARS:
            name = name[: NAME_CHARS - 1] + "…"
        return [
            ("Allow once [y]", "once", "success"),
            (f"Always allow {name} [a]", "always", "primary"),
            ("Deny [n/Esc]", "deny", "error"),
        ]

    def on_mount(self) -> None:
        self.query_one("#deny", Button).focus()
        self.call_after_refresh(self.fit)

    def on_resize(self) -> None:
        self.fit()

    def fit(self) -> None:
        """Fit the dialog to the terminal: stack the buttons when they do not fit side by
        side (``-narrow``), thin the padding on a short terminal (``-short``), and give the
        arguments the rows the rest leaves, so every button shows and the arguments scroll
        to their last line, whatever the terminal's size."""
        dialog = self.query_one("#approval-dialog")
        width, height = self.size
        # Side by side, a button takes its label, 2 columns of border and 2 of margin.
        row = sum(cell_len(label) + 4 for label, _, _ in self.buttons())
        room = min(width * 4 // 5, 100) - 6  # 80% of the terminal, less border and padding
        narrow, short = row > room, height < SHORT_ROWS
        if (narrow, short) != (dialog.has_class("-narrow"), dialog.has_class("-short")):
            dialog.set_class(narrow, "-narrow")
            dialog.set_class(short, "-short")
            for button in self.query(Button):
                button.compact = narrow or short  # one row each, no border
            self.call_after_refresh(self.fit)  # measure again in the new layout
        arguments = self.query_one("#approval-arguments")
        others = dialog.styles.gutter.height + 2  # the dialog's border and padding; a margin
        for child in dialog.children:
            if child is not arguments and child.display:
                others += child.outer_size.height + child.styles.margin.height
        others += arguments.styles.margin.height + arguments.styles.gutter.height
        arguments.styles.max_height = max(MIN_ARGUMENT_ROWS, min(20, height - others))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        choice = event.button.id
        if choice in ("once", "always", "deny"):
            self.action_decide(choice)

    def action_decide(self, choice: str) -> None:
        decision: Decision = "deny"
        if choice == "once":
            decision = "once"
        elif choice == "always":
            decision = "always"
        self.dismiss(decision)
