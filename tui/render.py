"""Turning untrusted text (model output, tool arguments and results) into display text.

Every string from the model or a tool passes through here before it reaches a widget:

* :func:`safe` strips terminal escape sequences and control characters
  (:func:`agent.terminal.clean_for_terminal`); widgets then show it as plain
  ``Content``, never as Rich or Textual markup, so ``[/]`` is shown as it is.
* :func:`truncate` bounds what is shown: a 10 MB line is cut *before* any other work, so
  the cost of showing a result does not grow with its size.
* :func:`compact_arguments` and :func:`argument_lines` show arguments with every control,
  bidi and zero-width character escaped (:func:`tools.display.escape_for_display`), so a
  person approves exactly what will run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agent import clean_for_terminal, escape_for_display

OUTPUT_CHARS = 2_000
"""Characters of a tool result shown in a card (the full result is in the transcript)."""
OUTPUT_LINES = 40
"""Lines of a tool result shown in a card."""
ARGUMENT_CHARS = 50_000
"""Characters of arguments shown in the approval dialog before it says how many are hidden."""


def safe(text: str) -> str:
    """``text`` without escape sequences or control characters (newline and tab kept)."""
    return clean_for_terminal(text)


def truncate(text: str, chars: int = OUTPUT_CHARS, lines: int = OUTPUT_LINES) -> str:
    """At most ``chars`` characters and ``lines`` lines of ``text``, made :func:`safe`,
    followed by a note that says how much was left out (nothing when all of it fits)."""
    head = text[:chars]
    cut_lines = head.split("\n", lines)
    if len(cut_lines) > lines:
        head = "\n".join(cut_lines[:lines])
    hidden = len(text) - len(head)
    shown = safe(head)
    if hidden > 0:
        shown += f"\n… {hidden:,} more characters not shown (the transcript has all of it)"
    return shown


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def compact_arguments(arguments: Mapping[str, Any], limit: int = 60) -> tuple[str, bool]:
    """``key=value, …`` on one line, escaped, cut at ``limit`` characters.

    Returns:
        The text and whether it was cut.
    """
    raw = ", ".join(f"{k}={_value(v)}" for k, v in arguments.items())
    text = escape_for_display(raw[: limit + 1])  # escaping only lengthens: cut first
    if len(text) > limit or len(raw) > limit:
        return text[: limit - 1] + "…", True
    return text, False


def argument_lines(arguments: Mapping[str, Any], limit: int = ARGUMENT_CHARS) -> str:
    """Every argument, escaped, for a person to read before approving.

    A multi-line string argument (code, file content) is shown as an indented block, one
    line per line, each line escaped; anything else is its JSON, escaped. Past ``limit``
    characters a line says how many more there are.
    """
    parts: list[str] = []
    for key, value in arguments.items():
        name = escape_for_display(str(key))
        if isinstance(value, str) and "\n" in value:
            body = "\n".join("  │ " + escape_for_display(line) for line in value.split("\n"))
            parts.append(f"{name}:\n{body}")
        else:
            parts.append(f"{name}: {escape_for_display(_value(value))}")
    text = "\n".join(parts) if parts else "(no arguments)"
    if len(text) > limit:
        hidden = len(text) - limit
        text = text[:limit] + f"\n… {hidden:,} more characters not shown; deny if unsure"
    return text


def duration(seconds: float) -> str:
    """``0.42 s``, ``12.3 s``, ``2 min 05 s``."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"
