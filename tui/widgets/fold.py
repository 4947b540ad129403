"""``Fold``: a collapsible block whose header is built from plain ``Content``.

Textual's ``Collapsible`` takes its title as a markup string; the headers here carry
untrusted text (tool names and arguments chosen by the model), so this widget takes a
:class:`textual.content.Content` instead and never parses markup. Subclasses override
:meth:`Fold.header_content` and call :meth:`Fold.refresh_header` when it changes.

Contract: clicking the header, or pressing Enter or Space while it is focused, toggles
``collapsed``; the body (``self.body``) is hidden through the ``-collapsed`` class. Toggle
messages stop at the nearest fold, so folds nest.
"""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static

EXPANDED, COLLAPSED = "▼", "▶"


class FoldHeader(Static, can_focus=True):
    """The one-line, focusable header of a :class:`Fold`."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,space", "toggle_fold", "Toggle", show=False)
    ]

    class Toggle(Message):
        """The header asks its fold to toggle."""

    def __init__(self) -> None:
        super().__init__(markup=False)

    async def _on_click(self, event: events.Click) -> None:
        event.stop()
        self.post_message(self.Toggle())

    def action_toggle_fold(self) -> None:
        self.post_message(self.Toggle())


class Fold(Vertical):
    """A header and a body that can be hidden."""

    # Only the mechanics live here (a reusable widget); the look is in tui/app.tcss.
    DEFAULT_CSS = """
    Fold {
        height: auto;
    }
    Fold > FoldHeader {
        width: 1fr;
        height: auto;
    }
    Fold > .fold-body {
        height: auto;
    }
    Fold.-collapsed > .fold-body {
        display: none;
    }
    """

    collapsed: reactive[bool] = reactive(False, init=False)

    def __init__(
        self,
        *children: Widget,
        collapsed: bool = False,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.header = FoldHeader()
        self.body = Vertical(*children, classes="fold-body")
        self.set_reactive(Fold.collapsed, collapsed)

    def compose(self) -> ComposeResult:
        yield self.header
        yield self.body

    def on_mount(self) -> None:
        self.set_class(self.collapsed, "-collapsed")
        self.refresh_header()

    def on_fold_header_toggle(self, event: FoldHeader.Toggle) -> None:
        event.stop()
        self.collapsed = not self.collapsed

    def watch_collapsed(self, collapsed: bool) -> None:
        self.set_class(collapsed, "-collapsed")
        self.refresh_header()

    def symbol(self) -> str:
        """The expand/collapse marker for the header."""
        return COLLAPSED if self.collapsed else EXPANDED

    def header_content(self) -> Content:
        """What the header shows after the marker; subclasses override."""
        return Content("")

    def refresh_header(self) -> None:
        """Re-render the header (call after anything it shows has changed)."""
        self.header.update(Content.assemble(self.symbol(), " ", self.header_content()))
