"""Showing untrusted text (paths, arguments) to a person without letting it deceive them.

A file name can carry a newline that fakes a second line in an approval prompt, a terminal
escape sequence, or a bidi override (U+202E) that shows ``evil‮txt.exe`` as ``evilexe.txt``.
:func:`escape_for_display` makes every such character visible as an escape, so a person
approves exactly what will run. The approval UI and the file tools' error messages use it.
"""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Categories escaped: Cc (C0/C1 controls, DEL), Cf (format: bidi controls, zero-width
# characters, BOM, soft hyphen), Cs (lone surrogates, e.g. undecodable bytes from the file
# system), Zl and Zp (line and paragraph separators).
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_for_display(text: str) -> str:
    """Return ``text`` with control, format (bidi, zero-width) and separator characters escaped.

    Printable characters, including non-ASCII letters, are kept as they are. The result
    contains no character that moves the cursor, reorders text or hides itself.
    """
    if text.isprintable() and text.isascii():
        return text
    return "".join(
        _escape(c) if unicodedata.category(c) in _ESCAPED_CATEGORIES else c for c in text
    )


def has_unsafe_characters(text: str) -> bool:
    """Whether :func:`escape_for_display` would change ``text``."""
    return any(unicodedata.category(c) in _ESCAPED_CATEGORIES for c in text)
