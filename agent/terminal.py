"""Make untrusted text (model and tool output) safe to print on a terminal.

Model output and tool results can carry escape sequences: ``ESC[2J`` clears the screen,
OSC 52 writes the clipboard, OSC 8 fakes links. :func:`clean_for_terminal` removes every
escape sequence and every control character except newline and tab, and leaves all
printable text (any language) as it is. Rich markup is never interpreted in such text:
print it as ``rich.text.Text`` or with ``markup=False``.
"""

from __future__ import annotations

import re

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), other ESC sequences, and C1 CSI/OSC.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[@-Z\\-_]?"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|\x9d[^\x07\x9c]*(?:\x07|\x9c)?"
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_for_terminal(text: str) -> str:
    """``text`` without escape sequences or control characters (``\\n`` and ``\\t`` kept)."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))
