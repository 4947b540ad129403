"""Prompt-lookup drafting for the llama.cpp backend: where the next tokens may be copied from,
and whether verifying them pays. Pure Python; the backend does the llama.cpp work.

An agent's model often writes what it has already seen: it quotes a tool result, rewrites a
file it read, repeats code. :class:`NgramIndex` finds the most recent earlier occurrence of
the context's last 4, 3 or 2 tokens (longest first; never a single token, whose drafts cost
more than they save) and proposes the tokens that followed it. The backend evaluates
``[last token] + draft`` in one batch and keeps the longest prefix its sampler agrees with.

Whether a draft is worth a batch depends on the hardware and the text. :class:`Lookup` keeps
two estimates and drafts only when they predict a gain:

A copy, once found, is followed: while the generated tokens go on matching the tokens after
the occurrence a draft came from, the next draft continues from there, even where the last
few tokens also occur elsewhere, later (code repeats its docstrings' first words).

* the chance that each next draft token is accepted, per match length, learned from every
  verified draft *and*, while drafting is off, from shadow drafts compared with the tokens
  decoded one at a time (free to learn: nothing is evaluated for them);
* what verifying a draft of ``k`` tokens costs against decoding one token:
  ``1 + scale * (BATCH_FIXED + BATCH_PER_TOKEN * k)``, the shape measured on this project's CPU
  and the ``scale`` learned from the verify batches themselves (about 1 on a CPU, near 0 on a
  GPU with a large model, where a batch costs little more than one token). While drafting
  stays off, one short verify every :attr:`LookupSettings.explore_every` plain steps keeps
  the scale current, at a bounded cost.

The draft length is the one that maximises expected tokens per unit of time; a draft is sent
only when that gain is at least :attr:`LookupSettings.min_gain`. The index grows with the
context, one dictionary update per n-gram size and token; it is never rescanned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

NGRAM_SIZES = (4, 3, 2)
"""Suffix lengths looked up, longest (most predictive) first."""
BATCH_FIXED, BATCH_PER_TOKEN = 0.35, 0.5
"""The extra cost of verifying ``k`` draft tokens, in one-token decode steps, is about
``BATCH_FIXED + BATCH_PER_TOKEN * k`` on this project's CPU (SmolLM2-135M, one thread,
sampling included): 1.86x one step for a batch of 2, 2.8x for 4, 4.8x for 8, 8.7x for 16.
Other hardware scales it (:attr:`Lookup.scale`); a CPU is the pessimistic prior."""
PRIOR_ACCEPTED, PRIOR_REJECTED = 0.5, 0.5
"""Pseudo-counts of the acceptance estimate (a chance of 0.5 before any evidence)."""
DECAY = 0.97
"""Weight a token's evidence of acceptance keeps per newer token seen: the estimate follows
the text (it weighs about the last 30 drafted tokens)."""
COST_ALPHA = 0.2
"""Weight of a new timing in the moving averages of the cost model."""


@dataclass(frozen=True, slots=True)
class LookupSettings:
    """How prompt lookup drafts. The defaults are adaptive; ``min_gain=0`` drafts at every
    match (for tests and for measuring the verify cost)."""

    max_draft: int = 16
    """The longest draft, in tokens (the batch is one more)."""
    min_gain: float = 1.1
    """Draft only when expected tokens per second with the draft ÷ without reaches this."""
    explore_every: int = 256
    """While drafting is off, verify a short draft after this many plain steps with a match,
    to re-measure what a batch costs (0: never)."""
    explore_draft: int = 3
    """The length of such an exploring draft."""
    shadow_draft: int = 8
    """How far a shadow draft (compared with plain decoding while drafting is off) reaches."""

    def __post_init__(self) -> None:
        if self.max_draft < 1 or self.explore_draft < 1 or self.shadow_draft < 1:
            raise ValueError(
                f"draft lengths must be at least 1, got max_draft={self.max_draft!r}, "
                f"explore_draft={self.explore_draft!r}, shadow_draft={self.shadow_draft!r}"
            )
        if self.min_gain < 0 or self.explore_every < 0:
            raise ValueError(
                f"min_gain and explore_every must be >= 0, got {self.min_gain!r} and "
                f"{self.explore_every!r}"
            )


class NgramIndex:
    """The context's tokens and, for each n-gram size, where each n-gram last ended.

    Invariant: n-grams ending at positions ``< len(tokens) - 1`` are indexed, so a lookup of
    the suffix never finds the suffix itself. Entries left by a cut (:meth:`sync` to a shorter
    or different context) are checked against the tokens when looked up, never trusted.
    """

    def __init__(self, sizes: Sequence[int] = NGRAM_SIZES) -> None:
        if not sizes or min(sizes) < 2:
            raise ValueError(f"n-gram sizes must be 2 or more, got {tuple(sizes)!r}")
        self.sizes = tuple(sorted(sizes, reverse=True))
        self.tokens: list[int] = []
        self._ends: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in self.sizes}

    def reset(self) -> None:
        """Forget everything."""
        self.tokens = []
        self._ends = {n: {} for n in self.sizes}

    def append(self, token: int) -> None:
        """Add one token at the end (indexing the n-grams that end just before it)."""
        tokens = self.tokens
        tokens.append(token)
        end = len(tokens) - 2
        for n in self.sizes:
            if end - n + 1 >= 0:
                self._ends[n][tuple(tokens[end - n + 1 : end + 1])] = end

    def sync(self, tokens: Sequence[int]) -> None:
        """Make the index hold ``tokens``: appends what extends it, cuts what differs. Costs
        a comparison of the common part (C speed) and the new tokens' updates."""
        mine = self.tokens
        if len(tokens) >= len(mine) and list(tokens[: len(mine)]) == mine:
            keep = len(mine)
        else:
            keep = 0
            for a, b in zip(mine, tokens, strict=False):
                if a != b:
                    break
                keep += 1
            del mine[keep:]
        for token in tokens[keep:]:
            self.append(token)

    def match(self) -> tuple[int, int] | None:
        """``(n, end)``: the longest indexed n-gram equal to the last ``n`` tokens and where
        its latest earlier occurrence ends; ``None`` when none matches."""
        tokens = self.tokens
        last = len(tokens) - 1
        for n in self.sizes:
            if last + 1 < n:
                continue
            key = tuple(tokens[last - n + 1 :])
            end = self._ends[n].get(key)
            if end is not None and end < last and tuple(tokens[end - n + 1 : end + 1]) == key:
                return n, end
        return None

    def continuation(self, end: int, k: int) -> list[int]:
        """The ``k`` tokens that follow position ``end``, continuing into the draft itself
        where the occurrence overlaps the suffix (a repeated pattern repeats on)."""
        tokens = self.tokens
        size = len(tokens)
        out: list[int] = []
        for i in range(k):
            position = end + 1 + i
            out.append(tokens[position] if position < size else out[position - size])
        return out


class _Acceptance:
    """The chance that the next draft token is accepted, given the previous ones were: a
    truncated-geometric estimate over decayed counts of accepted and rejected tokens."""

    __slots__ = ("accepted", "rejected")

    def __init__(self) -> None:
        self.accepted = 0.0
        self.rejected = 0.0

    def observe(self, accepted: int, drafted: int) -> None:
        rejected = 1 if accepted < drafted else 0
        fade = DECAY ** (accepted + rejected)
        self.accepted = self.accepted * fade + accepted
        self.rejected = self.rejected * fade + rejected

    @property
    def chance(self) -> float:
        total = self.accepted + self.rejected + PRIOR_ACCEPTED + PRIOR_REJECTED
        return (self.accepted + PRIOR_ACCEPTED) / total


def best_draft(chance: float, scale: float, longest: int) -> tuple[int, float]:
    """``(k, gain)``: the draft length up to ``longest`` that maximises expected tokens per
    batch (the sampled token plus accepted drafts, ``sum(chance**i for i in 0..k)``) per
    unit of cost (``1 + scale * (BATCH_FIXED + BATCH_PER_TOKEN * k)``), and that gain;
    ``(0, 1.0)`` when ``longest < 1``."""
    p = min(max(chance, 0.0), 0.999)
    best_k, best_gain = 0, 1.0
    expected, power = 1.0, 1.0
    for k in range(1, longest + 1):
        power *= p
        expected += power
        gain = expected / (1.0 + scale * (BATCH_FIXED + BATCH_PER_TOKEN * k))
        if gain > best_gain or best_k == 0:
            best_k, best_gain = k, gain
    return best_k, best_gain


StopCheck = Callable[[list[int]], int]
"""``cut(draft) -> n``: how many leading draft tokens to keep (the backend cuts after a tag
that ends generation, so no batch verifies tokens after it)."""


class Lookup:
    """The drafter of one backend: the index of its context and the adaptive policy.

    The backend calls :meth:`sync` when a generation starts, :meth:`append` for every token
    that enters the context while generating, :meth:`draft` before each decode step (an
    empty draft: decode one token), then :meth:`plain` or :meth:`verified` with the time the
    step took. Learned costs survive :meth:`reset`; the index and acceptance do not.
    """

    def __init__(self, settings: LookupSettings | None = None) -> None:
        self.settings = settings or LookupSettings()
        self.index = NgramIndex()
        self.scale = 1.0
        """The learned scale of the extra cost of a verify batch (1.0: this project's CPU)."""
        self._plain_seconds = 0.0
        self._acceptance: dict[int, _Acceptance] = {}
        self._shadow: list[int] = []
        self._shadow_n = 0
        self._shadow_seen = 0
        self._drafted_n = 0  # the match length of the draft being verified
        self._since_verify = 0
        self._follow: int | None = None  # where the copy being followed is, aligned with the end
        self.reset()

    def reset(self) -> None:
        """Forget the context and what was learned about its text (costs are kept)."""
        self.index.reset()
        self._acceptance = {n: _Acceptance() for n in self.index.sizes}
        self._shadow = []
        self._since_verify = 0
        self._follow = None

    def sync(self, tokens: Sequence[int]) -> None:
        """The context at the start of a generation (see :meth:`NgramIndex.sync`)."""
        self._shadow = []
        self._follow = None
        self.index.sync(tokens)

    def append(self, token: int) -> None:
        """A token entered the context; a shadow draft learns whether it predicted it."""
        if self._shadow:
            if token == self._shadow[self._shadow_seen]:
                self._shadow_seen += 1
                if self._shadow_seen == len(self._shadow):
                    self._settle_shadow()
            else:
                self._settle_shadow()
        if self._follow is not None:
            after = self._follow + 1
            tokens = self.index.tokens
            self._follow = after if after < len(tokens) and tokens[after] == token else None
        self.index.append(token)

    def chance(self, n: int) -> float:
        """The estimated acceptance chance of a draft token after a match of ``n`` tokens."""
        return self._acceptance[n].chance

    def draft(self, room: int, cut: StopCheck | None = None) -> list[int]:
        """The tokens to verify with the next decode step (at most ``room``); ``[]`` for a
        plain step. ``cut`` trims a draft after a stop tag."""
        if room < 1:
            return []
        found = (self.index.sizes[0], self._follow) if self._follow is not None else None
        found = found or self.index.match()
        if found is None:
            return []
        n, end = found
        self._follow = end
        s = self.settings
        k, gain = best_draft(self.chance(n), self.scale, min(room, s.max_draft))
        if gain < s.min_gain:
            self._since_verify += 1
            if not (s.explore_every and self._since_verify >= s.explore_every):
                if not self._shadow:
                    self._shadow = self.index.continuation(end, s.shadow_draft)
                    self._shadow_n, self._shadow_seen = n, 0
                return []
            k = min(room, s.explore_draft)
        tokens = self.index.continuation(end, k)
        if cut is not None:
            tokens = tokens[: cut(tokens)]
        if not tokens:
            return []
        self._shadow = []
        self._drafted_n = n
        return tokens

    def plain(self, seconds: float) -> None:
        """A one-token decode step took ``seconds`` (evaluation and sampling)."""
        if seconds > 0:
            self._plain_seconds = (
                seconds
                if self._plain_seconds == 0
                else (1 - COST_ALPHA) * self._plain_seconds + COST_ALPHA * seconds
            )

    def verified(self, drafted: int, accepted: int, seconds: float) -> None:
        """The last draft's ``drafted`` tokens were verified in ``seconds`` (the batch and
        the sampling), of which the first ``accepted`` were the sampler's own choice."""
        self._since_verify = 0
        self._acceptance[self._drafted_n].observe(accepted, drafted)
        if self._plain_seconds > 0 and seconds > 0:
            extra = seconds / self._plain_seconds - 1.0
            measured = max(0.0, extra / (BATCH_FIXED + BATCH_PER_TOKEN * drafted))
            self.scale = (1 - COST_ALPHA) * self.scale + COST_ALPHA * measured

    def _settle_shadow(self) -> None:
        self._acceptance[self._shadow_n].observe(self._shadow_seen, len(self._shadow))
        self._shadow = []


def cut_after_stops(
    draft: list[int],
    piece: Callable[[int], bytes],
    tail: bytes,
    stops: Sequence[bytes],
    is_end: Callable[[int], bool],
) -> int:
    """How many leading tokens of ``draft`` to keep so that it ends at the latest on an
    end-of-generation token or on the token completing one of ``stops`` (byte strings,
    searched across ``tail``, the bytes just before the draft, and the draft's own pieces)."""
    longest = max((len(s) for s in stops), default=0)
    text = tail[-longest:] if longest else b""
    for i, token in enumerate(draft):
        if is_end(token):
            return i + 1
        if longest:
            before = len(text)
            text += piece(token)
            # a stop that ends inside this token's bytes (one wholly before them was cut before)
            if any(text.find(stop, max(0, before - len(stop) + 1)) >= 0 for stop in stops):
                return i + 1
            text = text[-longest:]
    return len(draft)
