"""A fake multi-sequence decoder and a byte vocabulary, to test the model host's scheduler.

:class:`FakeDecoder` keeps each sequence's KV cache as a list of tokens and checks what a
real llama.cpp context would need: every entry continues its sequence at the next position,
the cells in use never exceed ``n_ctx``, a state is restored only into an empty sequence (and
refused, as llama.cpp refuses it, when the free cells cannot hold it), and only entries with
logits are sampled. Its "model" is a pure function of a sequence's history
(so swaps and batch shapes cannot change what it answers): :class:`ScriptModel` replays, for
the latest key in the conversation, the scripted turn number ``k`` (``k`` = the tool
responses since that key) one byte per token, then the end of turn.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from models.base import BackendInfo, GenerateOptions, StopReason
from models.llama._batch import Entry
from models.llama.host import LlamaHost

END = 256
"""The end-of-turn token (``<|im_end|>``); tokens 0-255 are bytes."""
END_TEXT = "<|im_end|>"
GENERATION_STARTS = (b"<think>\n", b"</tool_response>\n")


class ByteVocab:
    """Tokens are bytes; ``<|im_end|>`` is one special token."""

    turn_end: int | None = END

    def tokenize(
        self, text: str, *, special: bool, first: bool = False, protect: Collection[str] = ()
    ) -> list[int]:
        tokens: list[int] = []
        parts = text.split(END_TEXT) if special else [text]
        for i, part in enumerate(parts):
            if i:
                tokens.append(END)
            tokens += list(part.encode("utf-8"))
        return tokens

    def piece(self, token: int) -> bytes:
        return END_TEXT.encode() if token == END else bytes([token])

    def is_end(self, token: int) -> bool:
        return token == END


class ScriptModel:
    """``next(history)``: the next byte of the scripted turn, or :data:`END`."""

    def __init__(self, scripts: Mapping[str, Sequence[str]]) -> None:
        self.scripts = {key.encode(): [t.encode() for t in turns] for key, turns in scripts.items()}

    def __call__(self, history: Sequence[int]) -> int:
        text = bytes(t if t != END else 0 for t in history)
        present = [k for k in self.scripts if k in text]
        if not present:
            return END
        key = max(present, key=text.rfind)  # the latest task of the conversation
        after = text[text.rfind(key) :]
        turn = after.count(b"</tool_response>")
        start = max(text.rfind(m) + len(m) if m in text else -1 for m in GENERATION_STARTS)
        done = len(text) - start if start >= 0 else 0
        turns = self.scripts[key]
        if turn >= len(turns) or done >= len(turns[turn]):
            return END
        return turns[turn][done]


@dataclass
class FakeSampler:
    closed: bool = False

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeDecoder:
    """See the module docstring. ``gate``: while clear, :meth:`decode` waits on it."""

    model: Callable[[Sequence[int]], int]
    n_ctx: int = 4096
    n_seq_max: int = 4
    n_batch: int = 64
    gate: threading.Event = field(default_factory=threading.Event)
    kv: dict[int, list[int]] = field(default_factory=dict)
    batches: list[list[Entry]] = field(default_factory=list)
    samplers: list[FakeSampler] = field(default_factory=list)
    closed: bool = False
    _logits: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.gate.set()

    def decode(self, entries: Sequence[Entry]) -> None:
        assert self.gate.wait(30), "the test never opened the gate"
        assert 0 < len(entries) <= self.n_batch, len(entries)
        self._logits = {}
        for i, entry in enumerate(entries):
            cells = self.kv.setdefault(entry.seq, [])
            assert 0 <= entry.seq < self.n_seq_max, entry
            assert entry.pos == len(cells), (entry, len(cells))
            cells.append(entry.token)
            if entry.logits:
                self._logits[i] = self.model(cells)
        assert sum(map(len, self.kv.values())) <= self.n_ctx, "more cells than the cache has"
        self.batches.append(list(entries))

    def sample(self, sampler: FakeSampler, index: int) -> int:
        assert not sampler.closed
        return self._logits.pop(index)  # KeyError: an entry without logits

    def make_sampler(self, options: GenerateOptions, context: Sequence[int]) -> FakeSampler:
        if options.grammar == "bad":
            raise ValueError("llama.cpp rejected the GBNF grammar")
        sampler = FakeSampler()
        self.samplers.append(sampler)
        return sampler

    def remove(self, seq: int, start: int) -> bool:
        self.kv[seq] = self.kv.get(seq, [])[:start]
        return True

    def save(self, seq: int) -> bytes:
        return json.dumps(self.kv.get(seq, [])).encode()

    def restore(self, seq: int, data: bytes) -> bool:
        assert not self.kv.get(seq), f"restore into a sequence {seq} that is not empty"
        state: list[int] = json.loads(data)
        if sum(map(len, self.kv.values())) + len(state) > self.n_ctx:
            return False  # no free cells for it: the cache is unified
        self.kv[seq] = state
        return True

    def close(self) -> None:
        self.closed = True

    def evaluated(self) -> int:
        """Tokens decoded so far, over every batch."""
        return sum(map(len, self.batches))


def fake_host(decoder: FakeDecoder, **limits: int) -> LlamaHost:
    """A host on ``decoder`` with the byte vocabulary and QwQ's built-in template."""
    from models.llama._host_scheduler import HostLimits

    info = BackendInfo(name="fake", chat_template=None, opens_thinking=True, context_size=0)
    return LlamaHost(decoder, ByteVocab(), info, limits=HostLimits(**limits))


def drain(run: Iterator[str]) -> tuple[str, StopReason]:
    """All the text of a generation and its stop reason."""
    text = ""
    while True:
        try:
            text += next(run)
        except StopIteration as stop:
            return text, stop.value
