"""Helpers for tests that read transcripts back."""

from __future__ import annotations

from collections.abc import Sequence

from agent.events import Event, Text, Thinking


def merged(events: Sequence[Event]) -> list[Event]:
    """``events`` with consecutive thinking (or answer) deltas joined into one, as the
    transcript stores them: two streams are the same run when their merged forms are equal,
    however the deltas were cut."""
    out: list[Event] = []
    for event in events:
        last = out[-1] if out else None
        if isinstance(event, Thinking) and isinstance(last, Thinking):
            out[-1] = Thinking(last.text + event.text)
        elif isinstance(event, Text) and isinstance(last, Text):
            out[-1] = Text(last.text + event.text)
        else:
            out.append(event)
    return out
