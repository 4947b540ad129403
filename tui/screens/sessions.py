"""``SessionsScreen``: pick an earlier session (a JSONL transcript) to open.

Lists the newest :data:`MAX_SESSIONS` files of the sessions folder
(:func:`agent.transcript.list_sessions`), each with its date and first prompt, read from
the file's first line only, so the list opens fast however many or large the files are.

Contract: dismissed with the chosen file's path, or ``None`` (Esc).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from agent import list_sessions
from tui import render

MAX_SESSIONS = 200
FIRST_LINE_BYTES = 64 * 1024


def describe(path: Path) -> str:
    """``2026-01-31 14:05  What is 2 + 3?`` for a session file (safe text, one line)."""
    prompt = ""
    stamp = ""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            record = json.loads(handle.readline(FIRST_LINE_BYTES))
        if isinstance(record, dict):
            prompt = str(record.get("prompt", ""))
            when = record.get("time")
            if isinstance(when, int | float):
                stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(when))
    except (OSError, ValueError):
        prompt = "(unreadable)"
    if not stamp:
        stamp = path.stem[:15]
    line = render.safe(" ".join(prompt.split()))
    if len(line) > 70:
        line = line[:69] + "…"
    return f"{stamp}  {line or '(empty)'}"


class SessionsScreen(ModalScreen[Path | None]):
    """A list of earlier sessions; Enter opens one, Esc goes back."""

    CSS_PATH = "sessions.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Back")]

    def __init__(self, folder: Path | None = None) -> None:
        super().__init__()
        self.paths = list_sessions(folder)[:MAX_SESSIONS]

    def compose(self) -> ComposeResult:
        with Vertical(id="sessions-dialog"):
            yield Static(
                Content.assemble(
                    ("Open a session", "bold"), ("  Enter: open · Esc: back", "$text-muted")
                ),
                id="sessions-title",
            )
            if self.paths:
                yield OptionList(
                    *(Option(Content(describe(p)), id=str(i)) for i, p in enumerate(self.paths)),
                    id="sessions-list",
                )
            else:
                yield Static(Content("No saved sessions yet."), id="sessions-empty")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        index = int(event.option.id or 0)
        self.dismiss(self.paths[index])

    def action_close(self) -> None:
        self.dismiss(None)
