"""Review of the model host's sessions (issue 16): the text a consumer kept and the tokens the
session records for it, on the fake decoder (tests/models/host_fakes.py).

Byte-level BPE vocabularies (QwQ's, SmolLM2's) have tokens that end one character and begin
the next (``b" \\xe2"``: a space and the first byte of an em dash). When a generation ends, or
the consumer closes it, right after such a token, its complete text was yielded and is in
the loop's context; the session's record must hold tokens for exactly that text, so the model
sees what the loop wrote.
"""

from __future__ import annotations

from collections.abc import Sequence

from models.base import BackendInfo, GenerateOptions, Sampling, Segment
from models.llama._host_jobs import HostLimits
from models.llama.host import LlamaHost
from tests.models.host_fakes import END, ByteVocab, FakeDecoder, drain

SPLIT = 300
"""A token that is a space and the first byte of an em dash."""
REST = 301
"""The last two bytes of the em dash."""
PIECES = {SPLIT: b" \xe2", REST: b"\x80\x94"}
PROMPT = "Q: <think>\n"
REPLY = [ord("a"), SPLIT, REST, ord("b")]
"""What the model answers after :data:`PROMPT`: ``"a \u2014b"``, then the end of turn."""


class SplitVocab(ByteVocab):
    """Bytes, ``<|im_end|>``, and the two tokens of :data:`PIECES` (never produced by
    tokenizing, as a BPE tokenizer need not produce every token the model may sample)."""

    def piece(self, token: int) -> bytes:
        return PIECES.get(token) or super().piece(token)


def reply(history: Sequence[int]) -> int:
    """Answer :data:`REPLY` after the prompt, whatever it was continued with."""
    start = len(PROMPT.encode())
    done = len(history) - start
    return REPLY[done] if 0 <= done < len(REPLY) else END


def inline_host(decoder: FakeDecoder) -> LlamaHost:
    info = BackendInfo(name="fake", chat_template=None, opens_thinking=True, context_size=0)
    limits = HostLimits(max_sessions=1, lookahead=1)
    return LlamaHost(decoder, SplitVocab(), info, limits=limits, inline=True)


def text_of(vocab: SplitVocab, tokens: Sequence[int]) -> str:
    return b"".join(vocab.piece(t) for t in tokens).decode("utf-8")


def test_a_generation_that_ends_inside_a_character_records_the_text_it_yielded() -> None:
    decoder = FakeDecoder(reply)
    with inline_host(decoder) as h:
        session = h.session()
        options = GenerateOptions(sampling=Sampling(temperature=0), max_tokens=2)
        text, reason = drain(session.generate([Segment(PROMPT, "template")], options))
        assert (text, reason) == ("a ", "length")  # the dash's first byte is not text yet
        assert text_of(SplitVocab(), session.context_tokens) == PROMPT + text
        # the next context continues after the yielded text; the model sees all of it
        more = [Segment(PROMPT, "template"), Segment(text, "model"), Segment("!", "template")]
        drain(session.generate(more, GenerateOptions(max_tokens=0)))
        assert text_of(SplitVocab(), session.context_tokens) == PROMPT + text + "!"
        assert decoder.kv[0] == session.context_tokens


def test_closing_after_a_chunk_that_begins_a_character_records_the_chunk() -> None:
    decoder = FakeDecoder(reply)
    with inline_host(decoder) as h:
        session = h.session()
        run = session.generate([Segment(PROMPT, "template")], GenerateOptions())
        chunks = [next(run), next(run)]
        run.close()
        assert chunks == ["a", " "]
        assert text_of(SplitVocab(), session.context_tokens) == PROMPT + "a "
        before = session.usage
        more = [Segment(PROMPT, "template"), Segment("a ", "model"), Segment("!", "template")]
        drain(session.generate(more, GenerateOptions(max_tokens=0)))
        assert decoder.kv[0] == list((PROMPT + "a !").encode())
        # the pending "a", the " " the record had to tokenize again, and "!"
        assert session.usage.since(before).prompt_tokens_evaluated == 3
