"""``Conversation``: the scrolling column of messages, notes and assistant turns.

It starts at the top like a page; once its content is taller than the view it anchors to
the end, so streaming text stays in sight, until the person scrolls up (Textual releases
the anchor then, and restores it when they scroll back to the end).
"""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.widget import Widget


class Conversation(VerticalScroll):
    """The chat's scrolling view."""

    async def add(self, *widgets: Widget) -> None:
        """Append ``widgets`` at the end."""
        await self.mount(*widgets)
        self.call_after_refresh(self.follow)

    def follow(self) -> None:
        """Anchor to the end once the content overflows (call after content grew)."""
        if not self.is_anchored and self.max_scroll_y > 0:
            self.anchor()

    async def clear(self) -> None:
        """Remove everything; the view starts at the top again."""
        await self.remove_children()
        self.anchor(False)
