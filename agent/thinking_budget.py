"""The thinking budget: at most N tokens of thinking per run, then the thinking is closed.

Qwen's documented way to bound a reasoning model's thinking: once the budget is spent, stop
generating, insert a short sentence saying time is up followed by ``</think>``, and let the
model continue, which then writes its answer (``prompts/thinking_budget.md.j2`` holds the
sentence). The loop caps each generation that starts inside the thinking at the tokens left
(:attr:`GenerateOptions.max_tokens`), so every backend stops exactly at the budget without a
per-token check; when a cap was the reason a generation stopped, the loop either closes the
thinking (still inside it) or simply continues (the thinking ended before the cap).

Counting: every token generated while the model thinks counts, tool calls written inside the
thinking included, across all the steps of a run (a tool result is inserted text, not
generated, so it does not count). A generation in which the thinking ended counts the part
before ``</think>``, in proportion to its characters (no tokenizer is needed in the loop).
"""

from __future__ import annotations

from dataclasses import dataclass

import prompts
from models.qwq.tags import THINK_CLOSE


def closing_text() -> str:
    """The text inserted where the budget closes the thinking: a blank line, the sentence of
    ``prompts/thinking_budget.md.j2``, ``</think>`` and a blank line (Qwen's recipe)."""
    return f"\n\n{prompts.render('thinking_budget')}\n{THINK_CLOSE}\n\n"


@dataclass(slots=True)
class ThinkingBudget:
    """The thinking tokens of one run, against a budget (``None``: unlimited).

    Raises:
        ValueError: ``limit`` is negative.
    """

    limit: int | None
    used: int = 0
    """Thinking tokens generated so far in the run."""

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 0:
            raise ValueError(
                f"thinking_budget must be 0 or more tokens (or None), got {self.limit!r}"
            )

    @property
    def remaining(self) -> int | None:
        """Thinking tokens left (0 once spent); ``None`` without a budget."""
        return None if self.limit is None else max(0, self.limit - self.used)

    @property
    def spent(self) -> bool:
        """Whether the thinking must be closed now (a budget is set and nothing is left)."""
        return self.limit is not None and self.used >= self.limit

    def cap(self, run_remaining: int | None) -> tuple[int | None, bool]:
        """The ``max_tokens`` of a generation that starts inside the thinking, and whether the
        thinking budget (rather than the run's token budget ``run_remaining``) sets it."""
        left = self.remaining
        if left is None or (run_remaining is not None and run_remaining <= left):
            return run_remaining, False
        return left, True

    def account(self, tokens: int, text: str, thinking_chars: int) -> None:
        """Count a generation of ``tokens`` tokens whose ``text`` began inside the thinking and
        stayed in it for its first ``thinking_chars`` characters (all of it: ``len(text)``)."""
        if tokens <= 0:
            return
        if thinking_chars >= len(text):
            self.used += tokens
        elif text:
            self.used += round(tokens * thinking_chars / len(text))
