"""Token-level helpers of the llama.cpp backend: the vocabulary and the sampler chain.

:class:`Vocabulary` tokenizes text (special-token parsing on or off), turns a token into its
bytes (control tokens included, so that the text of what was generated says exactly what the
model produced) and says whether a token ends the turn. :func:`make_sampler` builds the one
llama.cpp sampler chain a generation uses from start to end: penalties, the grammar, then
greedy or top-k / top-p / min-p / temperature / seeded draw, every setting explicit.
:func:`prime_penalties` shows a chain's penalties the context before a generation, and
:func:`common_prefix` measures how much of a token history another one keeps.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from models.base import GenerateOptions

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp._internals import LlamaSampler

PENALTY_LAST_N = 64
"""How many recent tokens the repetition/presence/frequency penalties look at."""
TURN_END = "<|im_end|>"
_MARKUP_LIKE = re.compile(r"[<\[].*[>\]]", re.DOTALL)


class Vocabulary:
    """The vocabulary of a loaded ``Llama``."""

    def __init__(self, llm: Llama) -> None:
        self._llm = llm
        self._vocab: Any = llm._model.vocab
        self._pieces: dict[int, bytes] = {}
        self._add_bos = bool(llm._model.add_bos_token())
        bos = llm.token_bos()
        self._bos_text = self.piece(bos).decode("utf-8", "replace") if bos >= 0 else None
        self.turn_end = self.single_token(TURN_END)
        """The id of ``<|im_end|>`` when it is one token (ChatML models), else ``None``."""

    def tokenize(
        self, text: str, *, special: bool, first: bool = False, protect: Collection[str] = ()
    ) -> list[int]:
        """Tokens of ``text``; ``special`` parses special tokens, ``first`` adds the BOS token
        when the model wants one and the text does not already start with it.

        Without ``special``, llama.cpp still turns *user-defined* tokens (QwQ's ``<tool_call>``,
        ``</think>``…) into their single ids; the tags in ``protect`` are therefore cut
        (:func:`split_protected`) so that untrusted text can never produce them.
        """
        add_bos = first and self._add_bos
        if add_bos and self._bos_text and text.startswith(self._bos_text):
            add_bos = False
        pieces = split_protected(text, protect) if not special and protect else [text]
        tokens: list[int] = []
        for piece in pieces:
            data = piece.encode("utf-8")
            tokens += self._llm.tokenize(data, add_bos=add_bos and not tokens, special=special)
        return tokens

    def single_token(self, text: str) -> int | None:
        """The id of ``text`` if the vocabulary has it as one (special or plain) token."""
        ids = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        return ids[0] if len(ids) == 1 else None

    def piece(self, token: int) -> bytes:
        """The bytes of ``token`` (special tokens rendered), cached."""
        piece = self._pieces.get(token)
        if piece is None:
            import llama_cpp

            size = 64
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, size, 0, True)
            if n < 0:
                size = -n
                buf = ctypes.create_string_buffer(size)
                n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, size, 0, True)
            piece = buf.raw[: max(n, 0)]
            self._pieces[token] = piece
        return piece

    def special_tokens(self) -> tuple[str, ...]:
        """The text of every token that special-token parsing can produce: llama.cpp's
        ``CONTROL`` and ``UNKNOWN`` tokens, and the ``USER_DEFINED`` ones that look like
        markup (``<…>`` or ``[…]``: QwQ's ``<tool_call>``; not Gemma's whitespace runs).

        These are what untrusted text must not spell (:mod:`models.control_tokens`).
        """
        import llama_cpp

        always = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
        found: set[str] = set()
        for token in range(self._llm.n_vocab()):
            attr = int(llama_cpp.llama_vocab_get_attr(self._vocab, token))
            if not attr & (always | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED):
                continue
            text = self.piece(token).decode("utf-8", "replace").strip()
            if attr & always or _MARKUP_LIKE.fullmatch(text):
                found.add(text)
        return tuple(sorted(t for t in found if len(t) >= 2))

    def is_end(self, token: int) -> bool:
        """Whether ``token`` ends the generation (EOS, EOT, ``<|im_end|>``…)."""
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token)) or token == self.turn_end


def split_protected(text: str, tags: Collection[str]) -> list[str]:
    """``text`` in pieces such that no piece contains one of ``tags`` whole: every occurrence
    of a tag is split after its first character (``"<tool_call>"`` -> ``"<"``, ``"tool_call>"``).
    The pieces join back to ``text``."""
    present = [t for t in tags if len(t) > 1 and t in text]
    if not present:
        return [text]
    pattern = "|".join(re.escape(t) for t in sorted(present, key=len, reverse=True))
    pieces: list[str] = []
    position = 0
    for match in re.finditer(pattern, text):
        pieces += [text[position : match.start()], match.group()[:1], match.group()[1:]]
        position = match.end()
    pieces.append(text[position:])
    return [p for p in pieces if p]


def supports_lookup(llm: Llama) -> bool:
    """Whether drafts can be verified on this model: a rejected draft is dropped from the KV
    cache by position, which recurrent (and hybrid) models cannot do."""
    import llama_cpp

    model = llm._model.model
    hybrid = getattr(llama_cpp, "llama_model_is_hybrid", None)
    return not llama_cpp.llama_model_is_recurrent(model) and not (hybrid and hybrid(model))


def make_sampler(llm: Llama, options: GenerateOptions) -> LlamaSampler:
    """A fresh sampler chain for one generation with ``options``.

    Raises:
        ValueError: llama.cpp cannot parse ``options.grammar``.
    """
    import llama_cpp
    from llama_cpp._internals import LlamaSampler

    s = options.sampling
    chain = LlamaSampler()  # type: ignore[no-untyped-call]
    if s.repeat_penalty != 1.0 or s.presence_penalty != 0.0 or s.frequency_penalty != 0.0:
        chain.add_penalties(
            n_vocab=llm.n_vocab(),
            penalty_last_n=PENALTY_LAST_N,
            penalty_repeat=s.repeat_penalty,
            penalty_freq=s.frequency_penalty,
            penalty_present=s.presence_penalty,
        )
    if options.grammar is not None:
        grammar = llama_cpp.llama_sampler_init_grammar(
            llm._model.vocab, options.grammar.encode("utf-8"), b"root"
        )
        if not grammar:
            chain.close()  # type: ignore[no-untyped-call]
            raise ValueError(
                "llama.cpp rejected the GBNF grammar (its start rule must be `root`); "
                "build it with models.qwq.grammar.tool_call_grammar"
            )
        llama_cpp.llama_sampler_chain_add(chain.sampler, grammar)
    if s.temperature <= 0:
        chain.add_greedy()  # type: ignore[no-untyped-call]
        return chain
    if s.top_k > 0:
        chain.add_top_k(s.top_k)
    if s.top_p < 1.0:
        chain.add_top_p(s.top_p, 1)
    if s.min_p > 0.0:
        chain.add_min_p(s.min_p, 1)
    chain.add_temp(s.temperature)
    chain.add_dist(llama_cpp.LLAMA_DEFAULT_SEED if s.seed is None else s.seed & 0xFFFFFFFF)
    return chain


def prime_penalties(sampler: Any, options: GenerateOptions, context: Sequence[int]) -> None:
    """Show the penalty sampler of ``sampler`` (first in the chain when a penalty is set, see
    :func:`make_sampler`) the last ``PENALTY_LAST_N`` tokens of ``context``, so that penalties
    cover what was written just before this generation too: a generation restarted with a
    presence penalty because the thinking repeats itself (:mod:`agent.step`) penalises the
    repeated text at once."""
    s = options.sampling
    if s.repeat_penalty == 1.0 and s.presence_penalty == 0.0 and s.frequency_penalty == 0.0:
        return
    import llama_cpp

    penalties = llama_cpp.llama_sampler_chain_get(sampler.sampler, 0)
    for token in context[-PENALTY_LAST_N:]:
        llama_cpp.llama_sampler_accept(penalties, token)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    if list(a[:n]) == list(b[:n]):  # the usual case (a continuation), at C speed
        return n
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return n


class StopMatcher:
    """Finds the first of ``stops`` in text streamed piece by piece, however it is split,
    keeping only the tail a stop could still start in."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(stops)
        self.longest = max((len(s) for s in self.stops), default=0)
        self.recent = ""

    def seen(self, text: str) -> bool:
        """Whether a stop string ends in the text so far, ``text`` being the newest piece."""
        if not self.longest:
            return False
        recent = (self.recent + text)[-(self.longest + len(text)) :]
        if any(stop in recent for stop in self.stops):
            return True
        self.recent = recent[-(self.longest - 1) :] if self.longest > 1 else ""
        return False
