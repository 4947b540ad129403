"""Tool output hygiene: what a tool brings back is untrusted text.

Two jobs, both applied before an observation enters the model's context:

* :func:`neutralise` defuses the chat format's special tokens and tags (``<|im_start|>``,
  ``<|im_end|>``, ``<tool_call>``, ``</tool_response>``, ``</think>`` …) so that a web page or a
  file cannot close the observation, open a turn or fake a tool call. The ``<`` of each such
  tag becomes ``&lt;``: still readable to the model, never a token.
* :func:`cap` keeps at most a set number of characters, with a marker that says how much was
  cut, so one huge result cannot fill the window.
"""

from __future__ import annotations

import re

DEFAULT_OUTPUT_CHARS = 20_000

# Every ChatML control token (<|anything|>) and every tag of the QwQ format, any case,
# with optional whitespace inside the brackets.
_SPECIAL = re.compile(
    r"<(?=\s*\|[^|<>\n]{0,40}\|\s*>)"
    r"|<(?=\s*/?\s*(?:think|tool_call|tool_response|tools)\s*>)",
    re.IGNORECASE,
)


_CONTROL = re.compile(r"<(?=\s*\|[^|<>\n]{0,40}\|\s*>)")


def neutralise_control_tokens(text: str) -> str:
    """Return ``text`` with ChatML control tokens (``<|im_start|>`` …) made inert, leaving the
    format's tags (``<tool_call>``, ``</think>``) alone: for conversation text re-rendered
    into a prompt, where those tags are the model's own and must stay."""
    return _CONTROL.sub("&lt;", text)


def neutralise(text: str) -> str:
    """Return ``text`` with every special token or format tag made inert (``<`` → ``&lt;``)."""
    return _SPECIAL.sub("&lt;", text)


def cap(text: str, limit: int = DEFAULT_OUTPUT_CHARS) -> str:
    """Return ``text`` cut to at most ``limit`` characters plus a truncation marker.

    The head is kept (where most answers are) and the marker states the original size.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit!r}")
    if len(text) <= limit:
        return text
    return (
        text[:limit] + f"\n[… output truncated: {len(text) - limit} of {len(text)} characters cut]"
    )
