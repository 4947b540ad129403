"""Prompt lookup, the warm start and the inline mode of the model host's scheduler, on the fake
decoder (tests/models/host_fakes.py): the single-conversation backend runs on exactly this.

The fake model is a pure function of a sequence's history, so a draft changes nothing it
answers: with and without drafting the outputs are the same, and what these tests check is
how drafts move through batches and the KV cache (every entry continues its sequence at the
next position, a rejected draft leaves the cache, nothing is drafted past a stop).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from models.base import GenerateOptions, Sampling, Segment
from models.llama._batch import Entry
from models.llama._host_jobs import HostLimits
from models.llama._lookup import Lookup, LookupSettings
from models.llama.host import LlamaHost
from models.llama.kv_state import PrefixStateStore
from tests.models.host_fakes import ByteVocab, FakeDecoder, ScriptModel, drain, fake_host

GREEDY = GenerateOptions(sampling=Sampling(temperature=0))
EAGER = LookupSettings(min_gain=0.0)
"""Drafts at every match, whatever the measured costs."""
COPY = "the quick brown fox jumps over the lazy dog"
PROMPT = f"Q A: copy this: {COPY}, please.<think>\n"


def inline_host(decoder: FakeDecoder) -> LlamaHost:
    from models.base import BackendInfo

    info = BackendInfo(name="fake", chat_template=None, opens_thinking=True, context_size=0)
    limits = HostLimits(max_sessions=1, lookahead=1)
    return LlamaHost(decoder, ByteVocab(), info, limits=limits, inline=True)


def draft_batches(decoder: FakeDecoder) -> list[list[Entry]]:
    """Decode batches that verified a draft (several entries after the prompt)."""
    return [b for b in decoder.batches[1:] if len(b) > 1 and b[-1].logits and b[0].logits]


def test_a_drafting_session_gives_what_plain_decoding_gives() -> None:
    script = ScriptModel({"A": [COPY + " and a cat"]})
    outputs = {}
    for drafting in (False, True):
        decoder = FakeDecoder(script)
        with inline_host(decoder) as h:
            session = h.session(lookup=Lookup(EAGER) if drafting else None)
            outputs[drafting] = drain(session.generate([Segment(PROMPT, "template")], GREEDY))
            usage = session.usage
            if drafting:
                assert draft_batches(decoder)  # drafts were verified in batches
                assert usage.draft_tokens_accepted > len(COPY) // 2
                assert usage.draft_tokens > usage.draft_tokens_accepted  # " and a cat" diverged
            else:
                assert usage.draft_tokens == 0 and not draft_batches(decoder)
            generated = len(COPY + " and a cat")
            assert usage.completion_tokens == generated + 1  # and the end of turn
            # the turn ended: the cache holds the whole context, no rejected draft token
            assert decoder.kv[0] == list(PROMPT.encode()) + list((COPY + " and a cat").encode())
    assert outputs[True] == outputs[False] == (COPY + " and a cat", "end_of_turn")


def test_closing_in_the_middle_of_an_accepted_draft_leaves_the_last_chunk_pending() -> None:
    decoder = FakeDecoder(ScriptModel({"A": [COPY]}))
    with inline_host(decoder) as h:
        session = h.session(lookup=Lookup(EAGER))
        run = session.generate([Segment(PROMPT, "template")], GREEDY)
        chunks = []
        for chunk in run:
            chunks.append(chunk)
            if len(decoder.kv[0]) > len(session.context_tokens) + len(chunks) + 1:
                break  # drafted tokens are in the cache, not yielded yet
        run.close()
        text = "".join(chunks)
        assert 0 < len(text) < len(COPY)
        assert session.context_tokens == list((PROMPT + text).encode())
        assert decoder.kv[0] == session.context_tokens[:-1]  # the last token is pending
        more = [Segment(PROMPT, "template"), Segment(text, "model"), Segment("!", "template")]
        before = session.usage
        drain(
            session.generate(more, GenerateOptions(sampling=Sampling(temperature=0), max_tokens=1))
        )
        assert session.usage.since(before).prompt_tokens_evaluated == 2  # pending and "!"


def test_no_draft_runs_past_a_tool_call_or_a_stop_string() -> None:
    call = "<tool_call>{}</tool_call>"
    said = f"I call {call} then more text"
    prompt = f"Q A: repeat: {said}<think>\n"
    decoder = FakeDecoder(ScriptModel({"A": [said]}))
    with inline_host(decoder) as h:
        session = h.session(lookup=Lookup(EAGER))
        text = ""
        for chunk in session.generate([Segment(prompt, "template")], GREEDY):
            text += chunk
            if text.endswith("</tool_call>"):
                break
        assert text == f"I call {call}"
        start = len(prompt.encode())
        drafted = bytes(e.token for b in draft_batches(decoder) for e in b if e.pos >= start)
        assert drafted  # the call was drafted from the prompt...
        last = max(e.pos for b in decoder.batches for e in b)
        assert last < start + len(text.encode())  # ...but nothing after </tool_call>
    decoder = FakeDecoder(ScriptModel({"A": [COPY]}))
    with inline_host(decoder) as h:
        session = h.session(lookup=Lookup(EAGER))
        stop_options = GenerateOptions(sampling=Sampling(temperature=0), stop=("brown",))
        copy_prompt = f"Q A: copy this: {COPY}<think>\n"
        out, reason = drain(session.generate([Segment(copy_prompt, "template")], stop_options))
        assert (out, reason) == ("the quick brown", "stopped")
        assert draft_batches(decoder)
        last = max(e.pos for b in decoder.batches for e in b)
        assert last < len(copy_prompt.encode()) + len(out.encode())


def test_an_inline_host_steps_in_the_consumer_thread_and_is_not_concurrent() -> None:
    decoder = FakeDecoder(ScriptModel({"A": ["alpha"]}))
    threads: list[threading.Thread] = []
    decode = decoder.decode

    def record_thread(entries: Sequence[Entry]) -> None:
        threads.append(threading.current_thread())
        decode(entries)

    decoder.decode = record_thread  # type: ignore[method-assign]
    with inline_host(decoder) as h:
        assert h.scheduler._thread is None and not h.info.concurrent
        assert drain(h.session().generate([Segment("Q A: <think>\n", "template")], GREEDY)) == (
            "alpha",
            "end_of_turn",
        )
    assert threads and set(threads) == {threading.current_thread()}
    with fake_host(FakeDecoder(ScriptModel({}))) as threaded:
        assert threaded.info.concurrent and threaded.scheduler._thread is not None


def test_the_warm_start_saves_the_system_turn_once_and_later_sessions_load_it(
    tmp_path: Path,
) -> None:
    system = "<|im_start|>system\n" + "You are a careful assistant. " * 3 + "<|im_end|>\n"
    context = [Segment(system + "<|im_start|>user\nQ A: hi<|im_end|>\n<think>\n", "template")]
    turn_end = len(ByteVocab().tokenize(system, special=True)) - 1  # up to <|im_end|>
    store = PrefixStateStore(tmp_path, {"model": "fake"})
    results = []
    for _ in range(2):  # a new host each time: a new process
        decoder = FakeDecoder(ScriptModel({"A": ["alpha"]}))
        with inline_host(decoder) as h:
            session = h.session(store=store)
            results.append(drain(session.generate(context, GREEDY)))
            usage = session.usage
        prompt_tokens = len(ByteVocab().tokenize(context[0].text, special=True))
        assert usage.prompt_tokens_evaluated + usage.prompt_tokens_cached == prompt_tokens
        first_batch = decoder.batches[0]
        if len(results) == 1:  # evaluated, in a batch that ends with the system turn
            assert usage.prompt_tokens_cached == 0
            assert any(b[-1].pos == turn_end - 1 for b in decoder.batches)
            assert len(list(tmp_path.glob("*.kvstate"))) == 1
        else:  # loaded: evaluation starts after it
            assert usage.prompt_tokens_cached == turn_end
            assert first_batch[0].pos == turn_end
    assert results[0] == results[1] == ("alpha", "end_of_turn")
