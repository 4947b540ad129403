"""Tool output hygiene: what a tool brings back is untrusted text.

* :func:`cap` keeps at most a set number of characters, with a marker that says how much was
  cut, so one huge result cannot fill the window. The executor caps every result.
* :func:`neutralise` and :func:`neutralise_control_tokens` make special tokens inert
  (``<|im_start|>`` → ``&lt;|im_start|>``). They are the common-token forms of
  :class:`models.control_tokens.Neutraliser`, for tools and displays; the agent does not call
  them on results: the builders of its context (:mod:`models.qwq.chat_template`) neutralise every
  data segment themselves, with the loaded model's own tokens as well.
"""

from __future__ import annotations

from models.control_tokens import neutraliser

DEFAULT_OUTPUT_CHARS = 20_000


def neutralise_control_tokens(text: str) -> str:
    """Return ``text`` with control tokens (``<|im_start|>``, ``[INST]`` …) made inert,
    leaving the format's tags (``<tool_call>``, ``</think>``) alone: for conversation text
    re-rendered into a prompt, where those tags are the model's own and must stay."""
    return neutraliser().conversation(text)


def neutralise(text: str) -> str:
    """Return ``text`` with every special token or format tag made inert (``<`` → ``&lt;``)."""
    return neutraliser().data(text)


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
