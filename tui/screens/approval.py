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

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from agent.events import ToolCall
from tui import render

Decision = Literal["once", "always", "deny"]


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
                yield Button(Content("Allow once [y]"), id="once", variant="success")
                yield Button(Content(f"Always allow {name} [a]"), id="always", variant="primary")
                yield Button(Content("Deny [n/Esc]"), id="deny", variant="error")

    def on_mount(self) -> None:
        self.query_one("#deny", Button).focus()

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
