"""Detect a thinking that repeats itself: the same long span of text, over and over.

QwQ is known to fall into endless repetition: it writes the same paragraph again and again
until the window or the token budget is spent. :class:`RepetitionDetector` reads the thinking
as it streams and reports when its last characters are periodic: some unit of at least
``min_period`` characters (with at least ``min_distinct`` different characters in it)
repeated back to back over at least ``min_chars`` characters and ``min_repeats`` times.

Legitimately repetitive text does not look like that: the rows of a table, a list of numbers
or a loop unrolled by hand differ from one line to the next, and a run of one character or of
``0, 0, 0`` has too few distinct characters. The check is cheap per token: text is appended
to a bounded window, and every ``check_every`` characters the last ``needle`` characters are
searched for (``str.rfind``, in C) at least ``min_period`` characters back; each place found
gives a candidate period, verified by one comparison of the window with itself shifted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Repeat:
    """A repetition found at the end of the text."""

    period: int
    """Characters in the repeated unit."""
    span: int
    """Characters at the end of the text made of that unit repeated (``span / period`` times)."""
    unit: str
    """The repeated text (one period)."""

    @property
    def repeats(self) -> float:
        """How many times the unit occurs in the span."""
        return self.span / self.period


class RepetitionDetector:
    """Reports a periodic tail of the text fed to it (see the module docstring).

    Args:
        min_period: the shortest repeated unit, in characters.
        min_chars: the shortest repeated span, in characters.
        min_repeats: the fewest times the unit must occur back to back.
        min_distinct: the fewest different characters in the unit.
        window: characters kept; the longest period found is ``window // min_repeats``.
        check_every: characters fed between two checks.

    Raises:
        ValueError: settings that could never detect anything, or always would.
    """

    def __init__(
        self,
        *,
        min_period: int = 32,
        min_chars: int = 800,
        min_repeats: int = 3,
        min_distinct: int = 8,
        window: int = 8192,
        check_every: int = 64,
    ) -> None:
        if min_period < 2 or min_repeats < 2 or check_every < 1:
            raise ValueError(
                "need min_period >= 2, min_repeats >= 2 and check_every >= 1, got "
                f"{min_period!r}, {min_repeats!r}, {check_every!r}"
            )
        if window < max(min_chars, min_period * min_repeats):
            raise ValueError(
                f"window {window!r} cannot hold {min_repeats!r} repeats of {min_period!r} "
                f"characters or {min_chars!r} characters; make it larger"
            )
        self.min_period = min_period
        self.min_chars = min_chars
        self.min_repeats = min_repeats
        self.min_distinct = min_distinct
        self.window = window
        self.check_every = check_every
        self._needle = min(16, min_period)
        self._text = ""
        self._pending: list[str] = []  # fed since the last check (joined only then)
        self._unchecked = 0

    def reset(self) -> None:
        """Forget the text fed so far: a new repetition must be built from new text."""
        self._text = ""
        self._pending = []
        self._unchecked = 0

    def feed(self, text: str) -> Repeat | None:
        """Add ``text``; return the repetition at the end of all text fed, if there is one
        (checked every ``check_every`` characters)."""
        self._pending.append(text)
        self._unchecked += len(text)
        if self._unchecked < self.check_every:
            return None
        return self.check()

    def check(self) -> Repeat | None:
        """The repetition at the end of the text fed so far, if there is one."""
        if self._pending:
            self._text = (self._text + "".join(self._pending))[-self.window :]
            self._pending = []
        self._unchecked = 0
        text = self._text
        n = len(text)
        if n < self.min_chars:
            return None
        needle = text[n - self._needle :]
        end = (
            n - self.min_period
        )  # the needle, found ending here or before, is d >= min_period back
        for _ in range(8):  # the nearest few candidates; a real period is the nearest one
            at = text.rfind(needle, 0, end)
            if at < 0:
                return None
            period = n - self._needle - at
            span = max(self.min_chars, self.min_repeats * period)
            if span > n:
                return None
            if text[n - span + period :] == text[n - span : n - period]:
                unit = text[n - period :]
                if len(set(unit)) < self.min_distinct:
                    return None
                return Repeat(period, _extend(text, period, span), unit)
            end = at + self._needle - 1
        return None


def _extend(text: str, period: int, span: int) -> int:
    """How far back from the end ``text`` stays ``period``-periodic (at least ``span``)."""
    n = len(text)
    start = n - span
    while start > 0 and text[start - 1] == text[start - 1 + period]:
        start -= 1
    return n - start
