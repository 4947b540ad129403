"""Compaction: make a run's context fit again by dropping the reasoning of finished steps.

When the window is full (the context does not fit, or it fills up while the model writes),
the loop compacts instead of ending the run with ``context_overflow``: every model segment of
a *finished* step that began inside the thinking keeps only its tool calls (the
``<tool_call>`` blocks) and whatever it wrote after ``</think>``; its reasoning goes. The
prompt, the tool results, the calls, the answers and the step being generated (the current
thought, which is not in the context list yet) are kept. The chat template does the same to
earlier turns of a conversation. The loop then evaluates the compacted context once and goes
on; when nothing is left to drop, or the compacted context still does not fit, the run ends
with ``context_overflow`` as before.

The compacted text differs from what the backend has seen, so a backend with a KV cache keeps
the common prefix and evaluates the rest (counted in ``prompt_tokens_evaluated``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from models import Segment
from models.qwq.tags import CALL_CLOSE, CALL_OPEN, THINK_CLOSE

_CALL_BLOCK = re.compile(rf"{CALL_OPEN}.*?(?:{CALL_CLOSE}|$)", re.DOTALL)


def drop_reasoning(text: str) -> str:
    """``text`` (a model segment that began inside the thinking) without its reasoning: the
    ``<tool_call>`` blocks written while thinking, then everything from ``</think>`` on."""
    close = text.find(THINK_CLOSE)
    thinking, rest = (text, "") if close < 0 else (text[:close], text[close:])
    return "\n".join(m.group() for m in _CALL_BLOCK.finditer(thinking)) + rest


@dataclass(frozen=True, slots=True)
class Compaction:
    """What one compaction did."""

    segments: int
    """Model segments whose reasoning was dropped."""
    chars_before: int
    """Characters of the context before."""
    chars_after: int
    """Characters of the context after."""


class Compactor:
    """Compacts ``context`` (the loop's list, changed in place); see the module docstring.

    The loop calls :meth:`note` for each model segment it appends that began inside the
    thinking; only those lose text.
    """

    def __init__(self, context: list[Segment]) -> None:
        self.context = context
        self._thoughts: list[int] = []

    def note(self, index: int) -> None:
        """``context[index]`` is a model segment that began inside the thinking."""
        self._thoughts.append(index)

    def compact(self) -> Compaction | None:
        """Drop the reasoning of every noted segment; ``None`` when there was none to drop
        (the context is unchanged)."""
        context = self.context
        replace: dict[int, str] = {}
        for index in self._thoughts:
            kept = drop_reasoning(context[index].text)
            if kept != context[index].text:
                replace[index] = kept
        self._thoughts = []
        if not replace:
            return None
        before = sum(len(s.text) for s in context)
        context[:] = [
            Segment(replace[i], s.role) if i in replace else s
            for i, s in enumerate(context)
            if replace.get(i, s.text)
        ]
        after = sum(len(s.text) for s in context)
        return Compaction(len(replace), before, after)
