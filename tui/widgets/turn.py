"""The conversation's pieces: a user's message, a note, and one assistant turn.

:class:`AssistantTurn` turns the events of one run (:mod:`agent.events`) into widgets, in
order: thinking blocks (:class:`~tui.widgets.thinking.ThinkingBlock`), tool cards where
the calls happened (inside the thinking for calls made while thinking, between blocks for
calls made after ``</think>``), the answer as streamed Markdown, and errors. The same code
renders a live run and a transcript read back from disk.

Contract of :meth:`AssistantTurn.apply`: events are applied in order; consecutive text
deltas may be merged by the caller first (:func:`coalesce`). Untrusted text is made safe
(:func:`tui.render.safe`) before it reaches a widget and is never parsed as markup.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import assert_never

from markdown_it import MarkdownIt
from textual.containers import Vertical
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Markdown, Static

from agent import (
    Approval,
    Compacted,
    Error,
    Event,
    Finished,
    Repetition,
    Text,
    Thinking,
    ThinkingClosed,
    ToolCallEvent,
    ToolResult,
    UsageEvent,
)
from tui import errors, render
from tui.widgets.thinking import ThinkingBlock
from tui.widgets.tool_card import ToolCard


def answer_parser() -> MarkdownIt:
    """Markdown for the model's answer, with raw HTML shown as text: the Markdown widget drops
    HTML blocks, so an answer in ``<pre>`` (or after an unclosed ``<!--``) would vanish."""
    return MarkdownIt("gfm-like").disable(["html_block", "html_inline"])


def coalesce(events: Iterable[Event]) -> list[Event]:
    """``events`` with runs of consecutive ``Thinking`` (or ``Text``) deltas merged into one."""
    merged: list[Event] = []
    for event in events:
        last = merged[-1] if merged else None
        if isinstance(event, Thinking) and isinstance(last, Thinking):
            merged[-1] = Thinking(last.text + event.text)
        elif isinstance(event, Text) and isinstance(last, Text):
            merged[-1] = Text(last.text + event.text)
        else:
            merged.append(event)
    return merged


class UserMessage(Static):
    """What the person asked."""

    def __init__(self, prompt: str) -> None:
        super().__init__(Content(render.safe(prompt)), classes="user-message")


class Note(Static):
    """A line from the app itself (help, command results, errors); ``kind`` styles it."""

    def __init__(self, text: str, kind: str = "info") -> None:
        super().__init__(Content(text), classes=f"note -{kind}")


class AssistantTurn(Vertical):
    """Everything the agent did for one prompt.

    Args:
        show_timings: show durations in thinking headers and tool cards.
        live: the events happen now; ``False`` for a transcript read back, whose thinking
            time is not known (tool durations are recorded, and still shown).
    """

    def __init__(self, *, show_timings: bool = True, live: bool = True) -> None:
        super().__init__(classes="assistant-turn")
        self.show_timings = show_timings
        self.live = live
        self.cards: dict[str, ToolCard] = {}
        self.thinking: ThinkingBlock | None = None
        """The thinking block still open (streaming), if any."""
        self.answer: Markdown | None = None
        self.answer_text = ""
        self.finished: Finished | None = None
        self._pending_space = ""
        self._errors: set[str] = set()
        """Fatal error messages shown, so ``Finished.detail`` does not repeat one."""

    async def apply(self, event: Event) -> None:
        """Show ``event``."""
        match event:
            case Thinking(text=text):
                if self.thinking is None:
                    self.thinking = ThinkingBlock(show_timings=self.show_timings and self.live)
                    await self._mount_here(self.thinking)
                await self.thinking.append(text)
            case Text(text=text):
                await self._answer(text)
            case ToolCallEvent(call=call):
                card = ToolCard(call, show_timings=self.show_timings)
                self.cards[call.id] = card
                if call.placement == "thinking" and self.thinking is not None:
                    await self.thinking.add_card(card)
                else:
                    self._close_thinking()
                    await self._mount_here(card)
            case Approval(call=call, decision=decision, decided_by=by):
                card_for = self.cards.get(call.id)
                if card_for is not None and decision is not None:
                    card_for.decided(decision, by)
            case ToolResult(call_id=call_id):
                card_for = self.cards.get(call_id)
                if card_for is not None:
                    card_for.finish(event)
            case Error(message=message, fatal=fatal):
                note = Note(render.truncate(errors.in_tui_terms(message)), "error")
                if fatal:
                    self._errors.add(message)
                if self.thinking is not None and not fatal:
                    await self.thinking.insert(note)
                else:
                    await self._mount_here(note)
            case Finished():
                await self._finish(event)
            case UsageEvent():
                pass
            case ThinkingClosed() | Repetition() | Compacted():
                note = Note(event.note(), "info")
                if self.thinking is not None:
                    await self.thinking.insert(note)
                else:
                    await self._mount_here(note)
            case _:
                assert_never(event)

    async def apply_all(self, events: Iterable[Event]) -> None:
        """Apply ``events`` in order, merging text deltas first."""
        for event in coalesce(events):
            await self.apply(event)

    def card(self, call_id: str) -> ToolCard | None:
        """The card of call ``call_id``, once its ``ToolCallEvent`` was applied."""
        return self.cards.get(call_id)

    async def _answer(self, text: str) -> None:
        if self.answer is None:
            self._pending_space += text
            if not self._pending_space.strip():
                return  # the blank line after </think> is not an answer yet
            text, self._pending_space = self._pending_space.lstrip(), ""
            self._close_thinking()
            self.answer = Markdown("", classes="answer", parser_factory=answer_parser)
            await self._mount_here(self.answer)
        text = render.safe(text)
        self.answer_text += text
        await self.answer.append(text)

    async def _mount_here(self, widget: Widget) -> None:
        """Mount at the turn's level; later answer text starts below it."""
        if widget is not self.answer:
            self.answer = None
        await self.mount(widget)

    def _close_thinking(self) -> None:
        if self.thinking is not None:
            self.thinking.close()
            self.thinking = None

    async def _finish(self, event: Finished) -> None:
        self.finished = event
        self._close_thinking()
        if self.answer is None and not self.answer_text and event.answer.strip():
            await self._answer(event.answer)
        if event.reason == "cancelled":
            await self.mount(Note("Cancelled.", "warning"))
        elif event.reason != "completed":
            detail = event.detail if event.detail not in self._errors else ""
            text = f"Stopped ({event.reason.replace('_', ' ')})" + (
                f": {detail}" if detail else "."
            )
            await self.mount(Note(render.truncate(errors.in_tui_terms(text)), "warning"))
        elif event.detail:
            await self.mount(Note(render.truncate(event.detail), "warning"))
