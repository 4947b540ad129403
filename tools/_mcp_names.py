"""What an MCP server may call its tools, and how much it may say about them.

A server's tool names and descriptions reach the model's system turn. Names must be plain
identifiers (:data:`TOOL_NAME`): anything else (spaces, markup, control tokens, 10,000
characters) is refused rather than renamed, so the name the model calls is the name the server
listed. Descriptions are cut to :data:`MAX_DESCRIPTION_CHARS`; their special tokens are made
inert with every other tool declaration, where the prompt is rendered
(:func:`models.qwq.chat_template.render_safe`).
"""

from __future__ import annotations

import re

TOOL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""A tool name as this runtime accepts it from an MCP server (prefix included)."""
MAX_DESCRIPTION_CHARS = 4_000


def refuse_name(name: str) -> str | None:
    """Why ``name`` cannot be a tool name, or ``None`` when it can."""
    if TOOL_NAME.fullmatch(name):
        return None
    return (
        f"its name {name[:80]!r} is not a plain tool name (letters, digits, '_', '.' and '-', "
        "1 to 64 characters, prefix included); ask the server's author to rename it"
    )


def bounded_description(text: str) -> str:
    """``text`` stripped and cut to :data:`MAX_DESCRIPTION_CHARS`, saying so when cut."""
    text = text.strip()
    if len(text) <= MAX_DESCRIPTION_CHARS:
        return text
    return (
        text[:MAX_DESCRIPTION_CHARS] + f" [… description cut at {MAX_DESCRIPTION_CHARS} characters]"
    )
