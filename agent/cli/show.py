"""How ``qwq-agent ask`` shows a run on the terminal, event by event.

Thinking is printed dimmed (or not at all with ``--hide-thinking``), each tool call and its
result on lines of their own, and the answer as Markdown rendered by Rich when stdout is a
terminal, plain text when it is piped (so ``| head`` or a file gets exactly what the model
wrote). The answer's leading blank lines (the ``\\n\\n`` after ``</think>``) are never printed,
whether or not the thinking was shown. Every piece of model and tool text goes through
:func:`agent.terminal.clean_for_terminal` first, and none of it is read as Rich markup.

The rendered answer is redrawn in place while it streams, at most
:data:`REDRAW_SECONDS` apart (re-parsing the whole answer for every token would make a long
answer quadratic); the final redraw always shows all of it.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from agent.terminal import clean_for_terminal

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.markdown import Markdown

    from agent.events import Event

REDRAW_SECONDS = 0.1
RESULT_CHARS = 2000
"""A tool result is shown up to this many characters (the model gets it all)."""


class EventPrinter:
    """Prints the events of one run to ``out`` (and fatal errors to ``err``).

    Args:
        out: the console of the run's output.
        err: the console of error lines.
        hide_thinking: do not print thinking text.
        markdown: render the answer as Markdown; ``None`` decides by whether ``out`` is a
            terminal.
    """

    def __init__(
        self, out: Console, err: Console, *, hide_thinking: bool, markdown: bool | None = None
    ) -> None:
        self.out, self.err = out, err
        self.hide_thinking = hide_thinking
        self.markdown = out.is_terminal if markdown is None else markdown
        self._mid_line = False  # the cursor follows text that did not end its line
        self._answer = ""  # the answer text since the last other event (one segment)
        self._live: Live | None = None
        self._drawn_at = 0.0

    def show(self, event: Event) -> None:
        """Print one event."""
        from rich.text import Text

        from agent.events import (
            Approval,
            Compacted,
            Error,
            Repetition,
            Thinking,
            ThinkingClosed,
            ToolCallEvent,
            ToolResult,
        )
        from agent.events import Text as AnswerText

        match event:
            case Thinking(text=text) if not self.hide_thinking:
                self._end_answer()
                shown = clean_for_terminal(text)
                self.out.print(Text(shown, style="dim"), end="")
                if shown:
                    self._mid_line = not shown.endswith("\n")
            case AnswerText(text=text):
                self._add_answer(clean_for_terminal(text))
            case ToolCallEvent(call=call):
                self._end_answer()
                self._end_line()
                arguments = clean_for_terminal(json.dumps(call.arguments, ensure_ascii=False))
                self.out.print(Text(f"→ {call.name}({arguments})", style="cyan"))
            case ToolResult(output=output, error=error):
                self._end_answer()
                self._end_line()
                body = output if error is None else f"error: {error}"
                shown = clean_for_terminal(body or "")
                if len(shown) > RESULT_CHARS:
                    more = len(shown) - RESULT_CHARS
                    shown = shown[:RESULT_CHARS] + f" … ({more} more characters)"
                self.out.print(Text(f"← {shown}", style="green" if error is None else "red"))
            case Approval(decision=False, call=call):
                self._end_answer()
                self._end_line()
                self.out.print(Text(f"✗ {call.name} denied (use --yes to allow)", style="yellow"))
            case ThinkingClosed() | Repetition() | Compacted():
                self._end_answer()
                self._end_line()
                self.out.print(Text(f"· {event.note()}", style="dim italic"))
            case Error(fatal=True, message=message):
                self._end_answer()
                self._end_line()
                self.err.print(Text(f"qwq-agent: {clean_for_terminal(message)}", style="bold red"))

    def close(self) -> None:
        """End the output: the last answer is drawn whole and the cursor is on a new line."""
        self._end_answer()
        self._end_line()

    def _add_answer(self, text: str) -> None:
        from rich.text import Text

        if not self._answer:
            text = text.lstrip("\n")  # the blank line after </think> is not part of the answer
            if not text:
                return
            self._end_line()
        self._answer += text
        if not self.markdown:
            self.out.print(Text(text), end="")
            self._mid_line = not self._answer.endswith("\n")
            return
        if self._live is None:
            from rich.live import Live

            self._live = Live(
                self._rendered(), console=self.out, auto_refresh=False, vertical_overflow="visible"
            )
            self._live.start()
            self._drawn_at = time.monotonic()
        elif time.monotonic() - self._drawn_at >= REDRAW_SECONDS:
            self._live.update(self._rendered(), refresh=True)
            self._drawn_at = time.monotonic()

    def _rendered(self) -> Markdown:
        from rich.markdown import Markdown

        return Markdown(self._answer)

    def _end_answer(self) -> None:
        if self._live is not None:
            self._live.update(self._rendered(), refresh=True)
            self._live.stop()
            self._live = None
            self._mid_line = False
        self._answer = ""

    def _end_line(self) -> None:
        if self._mid_line:
            self.out.print()
            self._mid_line = False
