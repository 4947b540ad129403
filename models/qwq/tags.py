"""The tags of the QwQ (Hermes-style) format, each written once.

In the Qwen tokenizer each of these is a single token. The model's own turns contain them;
anything a tool brings back must not (:mod:`models.control_tokens` makes them inert there).
"""

from __future__ import annotations

THINK_OPEN = "<think>"
"""Opens the thinking; the generation prompt of QwQ ends with it."""
THINK_CLOSE = "</think>"
"""Ends the thinking; the answer (or calls, in the template placement) follows."""
CALL_OPEN = "<tool_call>"
"""Opens a tool call: one JSON object ``{"name": ..., "arguments": {...}}``."""
CALL_CLOSE = "</tool_call>"
"""Ends a tool call; generation inside the thinking stops on it."""
RESPONSE_OPEN = "<tool_response>"
"""Opens a tool's result, written back by the runtime."""
RESPONSE_CLOSE = "</tool_response>"
"""Ends a tool's result."""
TOOLS_OPEN = "<tools>"
"""Opens the tool declarations of the system turn."""
TOOLS_CLOSE = "</tools>"
"""Ends the tool declarations."""

FORMAT_TAGS = (
    CALL_OPEN, CALL_CLOSE, RESPONSE_OPEN, RESPONSE_CLOSE,
    THINK_OPEN, THINK_CLOSE, TOOLS_OPEN, TOOLS_CLOSE,
)  # fmt: skip
"""Every tag of the format: plain text in a conversation, never in data."""

TOKEN_TAGS = (CALL_OPEN, CALL_CLOSE, RESPONSE_OPEN, RESPONSE_CLOSE, THINK_OPEN, THINK_CLOSE)
"""The tags a QwQ vocabulary holds as single tokens (checked at load time, never assumed)."""
