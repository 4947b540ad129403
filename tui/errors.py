"""Errors told to a person in the chat: what went wrong and what to do next, in TUI terms.

The runtime's errors are written for the command line: they carry their class name when
formatted naively (``BackendError: …``) and suggest options (``run with --model PATH``).
In the chat the person cannot pass options; the same step is a command (``/model PATH``).

Contract: :func:`describe` gives the message of an exception as a person reads it: the
expected failures (a backend, a file, a bad value, a missing name) without their class
name; anything else, which is a bug, with it. :func:`in_tui_terms` rewrites the option
hints that have a chat command; hints without one (``--ctx``, ``--n-gpu-layers``) stay, as
they are still the way (restart with them).
"""

from __future__ import annotations

import re

from agent import BackendError

EXPECTED: tuple[type[BaseException], ...] = (BackendError, OSError, ValueError, LookupError)
"""Failures a person can act on from their message alone; others (and ``KeyError`` or
``IndexError``, whose message is a bare key or index) are shown as bugs."""

_HINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\brun with --model(?![-\w])"), "load it with /model"),
    (re.compile(r"--model(?![-\w])"), "/model"),
)
"""Command-line hints and their chat equivalents, most specific first."""


def in_tui_terms(text: str) -> str:
    """``text`` with each command-line hint that has a chat command written as that command
    (``run with --model X`` becomes ``load it with /model X``)."""
    for pattern, replacement in _HINTS:
        text = pattern.sub(replacement, text)
    return text


def describe(exc: BaseException) -> str:
    """What went wrong, for a person: ``exc``'s message in TUI terms.

    An expected failure (:data:`EXPECTED`) is its message alone (its class name when it has
    none); an unexpected one keeps its class name and asks for a report, since it is a bug.
    """
    message = str(exc).strip()
    if isinstance(exc, OSError) and exc.strerror and not message:
        message = exc.strerror
    if isinstance(exc, EXPECTED) and not isinstance(exc, KeyError | IndexError):
        return in_tui_terms(message or type(exc).__name__)
    detail = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return in_tui_terms(f"{detail} (this is a bug: please report it with the session's transcript)")
