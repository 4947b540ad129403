"""``PromptInput``: where the person types, with history and multi-line entry.

Keys: Enter sends; Shift+Enter, Alt+Enter or Ctrl+J insert a line break (terminals differ
in which of these they can tell apart from Enter; Ctrl+J works everywhere); a pasted
multi-line text stays as it is. Up on the first line and Down on the last line walk the
history of what was sent (oldest to newest); the text being written is kept and comes
back after the newest entry.

Contract: on Enter the widget posts :class:`PromptInput.Submitted` with the text (not
stripped) and clears itself; an empty or blank text posts nothing. A receiver that cannot
take the text (a run is in progress, a command is mistyped) gives it back with
:meth:`PromptInput.restore`, so nothing typed is lost.
"""

from __future__ import annotations

from textual import events
from textual.message import Message
from textual.widgets import TextArea

NEWLINE_KEYS = frozenset({"shift+enter", "alt+enter", "ctrl+j"})


class PromptInput(TextArea):
    """A multi-line prompt box with a history.

    Args:
        history: earlier entries, oldest first.
        placeholder: shown while the box is empty.
    """

    class Submitted(Message):
        """The person sent ``text``."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(
        self, *, history: list[str] | None = None, placeholder: str = "", id: str | None = None
    ) -> None:
        super().__init__(
            "",
            id=id,
            soft_wrap=True,
            tab_behavior="focus",
            show_line_numbers=False,
            highlight_cursor_line=False,
            compact=True,
            placeholder=placeholder,
        )
        self.entries: list[str] = list(history or [])
        """What was sent, oldest first."""
        self._index: int | None = None
        """Position in ``history`` while walking it; ``None`` when editing a new entry."""
        self._draft = ""

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.submit()
        elif event.key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            start, end = self.selection
            self.replace("\n", start, end, maintain_selection_offset=False)

    def submit(self) -> None:
        """Send the text (if not blank), remember it, and clear the box."""
        text = self.text
        if not text.strip():
            return
        if not self.entries or self.entries[-1] != text:
            self.entries.append(text)
        self._index, self._draft = None, ""
        self.clear()
        self.post_message(self.Submitted(text))

    def restore(self, text: str) -> None:
        """Put back ``text``, which was sent but not taken, with the cursor at its end;
        nothing happens when something new has been typed since (it is not overwritten)."""
        if self.text:
            return
        self._index, self._draft = None, ""
        self._show(text)

    def action_cursor_up(self, select: bool = False) -> None:
        if select or not self.navigator.is_first_wrapped_line(self.cursor_location):
            super().action_cursor_up(select)
            return
        if not self.entries or self._index == 0:
            return
        if self._index is None:
            self._draft = self.text
            self._index = len(self.entries) - 1
        else:
            self._index -= 1
        self._show(self.entries[self._index])

    def action_cursor_down(self, select: bool = False) -> None:
        if select or not self.navigator.is_last_wrapped_line(self.cursor_location):
            super().action_cursor_down(select)
            return
        if self._index is None:
            return
        if self._index < len(self.entries) - 1:
            self._index += 1
            self._show(self.entries[self._index])
        else:
            self._index = None
            self._show(self._draft)

    def _show(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)
