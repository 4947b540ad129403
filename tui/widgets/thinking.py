"""``ThinkingBlock``: the model's reasoning, streamed, with tool cards where they happened.

The block's body is a sequence of text segments and :class:`~tui.widgets.tool_card.ToolCard`
s in the order the model produced them: a call made in the middle of a thought splits the
thought around its card. Text is appended to the last segment (a plain ``Content``
``Static``, never markup); past :data:`SEGMENT_CHARS` it continues in a new segment at a
line break, so each refresh re-wraps a bounded amount of text however long the thought.

Contract: expanded while it streams; :meth:`ThinkingBlock.close` marks it done and
collapses it (the answer has started, or the run ended). The header says whether the
model is still thinking, which tools it called (:func:`tool_summary`: ``list_dir,
calculator ×2``), and (when timings are shown) for how long.
"""

from __future__ import annotations

import time

from textual.content import Content
from textual.widget import Widget
from textual.widgets import Static

from tui import render
from tui.widgets.fold import Fold
from tui.widgets.tool_card import ToolCard

SEGMENT_CHARS = 4_000
"""A text segment longer than this continues in a new widget at the next line break."""
SUMMARY_TOOLS = 3
"""How many distinct tool names a thinking header lists before ``+N more``."""
NAME_CHARS = 24
"""A tool name longer than this is cut in a thinking header."""


class ThinkingSegment(Static):
    """A stretch of thinking text between two tool cards."""

    def __init__(self) -> None:
        super().__init__("", markup=False, classes="thinking-text")
        self.parts: list[str] = []
        self.size_chars = 0
        self.display = False

    def append(self, text: str) -> None:
        """Add ``text`` (already made safe) and re-render."""
        self.parts.append(text)
        self.size_chars += len(text)
        shown = "".join(self.parts).strip("\n")
        self.display = bool(shown)
        self.update(Content(shown))

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def ends_line(self) -> bool:
        """Whether the text so far ends with a line break (or is empty)."""
        return not self.parts or self.parts[-1].endswith("\n")


class ThinkingBlock(Fold):
    """One stretch of the model's thinking (a turn of the model), with its tool cards.

    Args:
        show_timings: show how long the model thought once it is done.
    """

    def __init__(self, *, show_timings: bool = True) -> None:
        super().__init__(classes="thinking")
        self.show_timings = show_timings
        self.streaming = True
        self.cards: list[ToolCard] = []
        self._segment: ThinkingSegment | None = None
        self._started = time.monotonic()
        self._elapsed = 0.0
        self._paused_at: float | None = None
        self._paused = 0.0
        """Seconds spent waiting for a person (an approval), not thinking."""

    async def append(self, text: str) -> None:
        """Stream more thinking ``text`` (untrusted; made safe here)."""
        text = render.safe(text)
        while text:
            segment = self._segment
            if segment is None:
                segment = self._segment = ThinkingSegment()
                await self.body.mount(segment)
            room = SEGMENT_CHARS - segment.size_chars
            if len(text) <= room or "\n" not in text:
                segment.append(text)
                return
            # Fill this segment up to a line break, and go on in a new one. A segment is
            # only ever cut after a line break, so a line is never split across two.
            cut = text.rfind("\n", 0, max(room, 0))
            if cut < 0 and segment.parts and segment.ends_line:
                self._segment = None
                continue
            if cut < 0:
                cut = text.find("\n")
            segment.append(text[: cut + 1])
            text = text[cut + 1 :]
            self._segment = None

    async def add_card(self, card: ToolCard) -> None:
        """Place ``card`` here, after the text so far; later text goes below it."""
        self.cards.append(card)
        await self.insert(card)
        self.refresh_header()

    async def insert(self, widget: Widget) -> None:
        """Place ``widget`` after the text so far; later text goes below it."""
        self._segment = None
        await self.body.mount(widget)

    @property
    def text(self) -> str:
        """All the thinking text shown in this block (made safe)."""
        return "".join(w.text for w in self.body.query(ThinkingSegment))

    def pause_clock(self) -> None:
        """Stop counting "Thought for" time (a person is being asked something)."""
        if self._paused_at is None:
            self._paused_at = time.monotonic()

    def resume_clock(self) -> None:
        if self._paused_at is not None:
            self._paused += time.monotonic() - self._paused_at
            self._paused_at = None

    def close(self) -> None:
        """The thought is over: stop streaming and collapse."""
        if not self.streaming:
            return
        self.resume_clock()
        self.streaming = False
        self._elapsed = time.monotonic() - self._started - self._paused
        self.collapsed = True
        self.set_class(True, "-done")
        self.refresh_header()

    def header_content(self) -> Content:
        # Each space ends a span and none starts one: SVG renderers drop a span's leading
        # space, which made the screenshots read "Thought· 1 tool call".
        names = tool_summary([card.call.name for card in self.cards])
        detail = f"· {names}" if names else ""
        if self.streaming:
            head = "Thinking… " if detail else "Thinking…"
            return Content.assemble((head, "bold $accent"), (detail, "$text-muted"))
        took = f"for {render.duration(self._elapsed)} " if self.show_timings else ""
        rest = (took + detail).rstrip()
        head = "Thought " if rest else "Thought"
        return Content.assemble((head, "bold $text-muted"), (rest, "$text-muted"))


def tool_summary(names: list[str], shown: int = SUMMARY_TOOLS, width: int = NAME_CHARS) -> str:
    """The tools called, for a folded thinking's header: ``list_dir, calculator ×2``.

    Each name once, in the order of its first call, with ``×N`` when it was called N > 1
    times; at most ``shown`` names (then ``+K more``), each made safe and cut at ``width``
    characters (names come from the model). Empty when ``names`` is.
    """
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    parts: list[str] = []
    for name, count in list(counts.items())[:shown]:
        clean = " ".join(render.safe(name).split()) or "?"
        if len(clean) > width:
            clean = clean[: width - 1] + "…"
        parts.append(f"{clean} ×{count}" if count > 1 else clean)
    hidden = len(counts) - shown
    if hidden > 0:
        parts.append(f"+{hidden} more")
    return ", ".join(parts)
