"""The llama.cpp backend's record of what its context holds, and how a new context maps onto it.

:class:`ContextRecord` keeps the segments the backend has consumed, each one's end offset in
the token list, the tokens themselves, and whether the last token is *pending* (sampled and
yielded, not yet evaluated). :meth:`ContextRecord.plan` turns the next context into tokens,
reusing the recorded tokens of the segments it shares with the record (the model's own
tokens included, never re-tokenized) and tokenizing only the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from models.base import Segment

Tokenize = Callable[[Segment, bool], list[int]]
"""``tokenize(segment, first)``: the tokens of a segment (``first``: it opens the context)."""


@dataclass(slots=True)
class ContextRecord:
    """Segments, their token end offsets, and tokens: ``tokens[:ends[-1]]`` are the segments'."""

    segments: list[Segment] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    pending: bool = False
    """Whether the last token was sampled but not evaluated yet."""

    @property
    def evaluated(self) -> list[int]:
        """The tokens the KV cache holds (all but a pending one)."""
        return self.tokens[:-1] if self.pending else list(self.tokens)

    def bare(self, tokens: list[int]) -> None:
        """Hold ``tokens`` without segments: safe to reuse by prefix, never by segment."""
        self.segments, self.ends, self.tokens, self.pending = [], [], tokens, False

    def plan(
        self, segments: list[Segment], tokenize: Tokenize, piece: Callable[[int], bytes]
    ) -> tuple[list[int], list[int], bool]:
        """The tokens of ``segments``, each one's end offset, and whether they continue the
        record (every recorded segment comes first, the last possibly a model segment the
        consumer cut short)."""
        matched = 0
        for mine, theirs in zip(self.segments, segments, strict=False):
            if mine != theirs:
                break
            matched += 1
        ends = self.ends[:matched]
        tokens = self.tokens[: ends[-1]] if ends else []
        continuation = bool(self.segments) and matched == len(self.segments)
        rest = matched
        if not continuation and matched == len(self.segments) - 1 and matched < len(segments):
            cut = self._cut_model_segment(segments[matched], tokenize, piece)
            if cut is not None:
                tokens = tokens + cut
                ends.append(len(tokens))
                continuation, rest = True, matched + 1
        for i in range(rest, len(segments)):
            tokens = tokens + tokenize(segments[i], i == 0)
            ends.append(len(tokens))
        return tokens, ends, continuation

    def _cut_model_segment(
        self, theirs: Segment, tokenize: Tokenize, piece: Callable[[int], bytes]
    ) -> list[int] | None:
        """Tokens for ``theirs`` when it is the last recorded model segment cut short (the
        loop keeps a chunk only up to ``</tool_call>``): the recorded tokens up to the cut,
        then the tokenized remainder of a token split by the cut; ``None`` otherwise."""
        mine = self.segments[-1]
        if mine.role != "model" or theirs.role != "model" or not mine.text.startswith(theirs.text):
            return None
        start = self.ends[-2] if len(self.ends) > 1 else 0
        want = theirs.text.encode("utf-8")
        kept: list[int] = []
        size = 0
        for token in self.tokens[start:]:
            length = len(piece(token))
            if size + length > len(want):
                break
            kept.append(token)
            size += length
        remainder = want[size:].decode("utf-8", "replace")
        return kept + (tokenize(Segment(remainder, "model"), False) if remainder else [])
