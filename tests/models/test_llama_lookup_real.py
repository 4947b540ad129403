"""Prompt lookup on the tiny real model: same tokens, valid calls, a clean context.

``eager`` is a backend that drafts at every match (``min_gain=0``), so every test here
verifies drafts whatever this machine's speed; ``plain`` is the session's backend with lookup
off. Speed is ``benchmarks/lookup.py``'s to measure, not a test's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from agent import Agent
from models.base import BackendError, GenerateOptions, Sampling, Segment, Usage
from models.llama._lookup import LookupSettings
from models.llama.backend import LlamaCppBackend
from models.qwq import chat_template as ct
from models.qwq.grammar import tool_call_grammar
from tests.conftest import add
from tests.real_model import TINY_CTX, TinyModel, open_tiny

pytestmark = pytest.mark.real_model

GREEDY = Sampling(temperature=0.0, top_k=0, top_p=1.0)
NEAR_TIE = 0.5
"""Logit gap under which two tokens are a near-tie: llama.cpp's batched logits differ from
one-token logits in the last digits, so a batch may pick the other one (as upstream notes)."""

FILE = """import json


def load(path):
    \"\"\"Read the settings file and return a dict.\"\"\"
    with open(path) as handle:
        return json.load(handle)


def get_value(settings, key, default=None):
    \"\"\"Return the value of key, or default when it is missing.\"\"\"
    if key in settings:
        return settings[key]
    return default


def list_keys(settings):
    \"\"\"Return the keys of the settings, sorted.\"\"\"
    return sorted(settings.keys())
"""


@pytest.fixture(scope="module")
def eager(tiny_model: TinyModel) -> Iterator[LlamaCppBackend]:
    backend = open_tiny(tiny_model.gguf, n_ctx=TINY_CTX, lookup=LookupSettings(min_gain=0.0))
    yield backend
    backend.close()


@pytest.fixture
def plain(tiny_backend: LlamaCppBackend, monkeypatch: pytest.MonkeyPatch) -> LlamaCppBackend:
    monkeypatch.setattr(tiny_backend, "_lookup", None)
    return tiny_backend


def chat(b: LlamaCppBackend, user: str, answer_start: str = "") -> list[Segment]:
    assert b.info.chat_template is not None
    text = ct.render(b.info.chat_template, [{"role": "user", "content": user}])
    return [Segment(text + answer_start, "template")]


def copy_prompt(b: LlamaCppBackend) -> list[Segment]:
    user = f"Here is settings.py:\n```python\n{FILE}```\nRewrite the whole file settings.py."
    return chat(b, user, "```python\nimport json\n")


def free_prompt(b: LlamaCppBackend) -> list[Segment]:
    return chat(b, "Write a short story about a lighthouse keeper and a storm.")


def generate(
    b: LlamaCppBackend, context: list[Segment], options: GenerateOptions
) -> tuple[str, list[int], Usage]:
    """Text, the tokens generated, and the counters of one generation from a clean context."""
    b.reset()
    before = b.usage
    prompt_length = len(
        b.tokenize(Segment("".join(s.text for s in context), "template"), first=True)
    )
    text = "".join(b.generate(context, options))
    return text, b.context_tokens[prompt_length:], b.usage.since(before)


def gap_at(b: LlamaCppBackend, prefix: list[int], a: int, c: int) -> float:
    """The logit gap between tokens ``a`` and ``c`` after ``prefix`` (one plain evaluation)."""
    import llama_cpp
    import numpy as np

    b.reset()
    llm = b._llm
    llm.eval(prefix)
    logits = np.ctypeslib.as_array(
        llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)
    )
    return float(abs(logits[a] - logits[c]))


def assert_same_or_near_tie(
    plain: LlamaCppBackend, prompt: list[int], mine: list[int], theirs: list[int]
) -> None:
    """Token-identical, or the first difference is a near-tie of the plain logits."""
    if mine == theirs:
        return
    i = next((i for i, (x, y) in enumerate(zip(mine, theirs, strict=False)) if x != y), None)
    assert i is not None, "one output is a prefix of the other, with the same budget"
    gap = gap_at(plain, prompt + mine[:i], mine[i], theirs[i])
    assert gap < NEAR_TIE, f"lookup chose token {theirs[i]!r} over {mine[i]!r} at {i} (gap {gap})"


@pytest.mark.parametrize("make", [copy_prompt, free_prompt], ids=["copy", "free"])
def test_greedy_output_is_the_same_with_and_without_lookup(
    plain: LlamaCppBackend,
    eager: LlamaCppBackend,
    make: Callable[[LlamaCppBackend], list[Segment]],
) -> None:
    options = GenerateOptions(sampling=GREEDY, max_tokens=60)
    context = make(plain)
    _, tokens_plain, _ = generate(plain, context, options)
    _, tokens_eager, usage = generate(eager, context, options)
    prompt = plain.tokenize(context[0], first=True)
    assert_same_or_near_tie(plain, prompt, tokens_plain, tokens_eager)
    assert usage.draft_tokens > 0  # the eager backend did verify drafts
    if make is copy_prompt:
        assert usage.draft_tokens_accepted > 20
    assert usage.completion_tokens == len(tokens_eager)  # sampled tokens are counted once


def test_a_presence_penalty_sees_only_the_generated_tokens(
    plain: LlamaCppBackend, eager: LlamaCppBackend
) -> None:
    """The penalty's history is the generated tokens: a rejected draft token never reached
    the sampler (``llama_sampler_sample`` accepts only the token it returns)."""
    options = GenerateOptions(
        sampling=Sampling(temperature=0.0, presence_penalty=1.5), max_tokens=60
    )
    context = copy_prompt(plain)
    _, tokens_plain, _ = generate(plain, context, options)
    _, tokens_eager, usage = generate(eager, context, options)
    assert_same_or_near_tie(
        plain, plain.tokenize(context[0], first=True), tokens_plain, tokens_eager
    )
    assert usage.draft_tokens_accepted > 0 and usage.draft_tokens > usage.draft_tokens_accepted


def test_seeded_sampling_with_lookup_is_reproducible(eager: LlamaCppBackend) -> None:
    """One draw per generated token, whatever was drafted: the same seed, the same tokens.
    (Against plain decoding a draw may land on the other side of a batch's slightly different
    logits; the greedy tests above compare with plain decoding.)"""
    sampling = Sampling(temperature=0.8, top_k=20, top_p=0.95, seed=1234)
    options = GenerateOptions(sampling=sampling, max_tokens=60)
    context = copy_prompt(eager)
    _, first, usage = generate(eager, context, options)
    _, second, _ = generate(eager, context, options)
    assert first == second and usage.draft_tokens_accepted > 0


def test_a_closed_generator_leaves_no_unyielded_token_in_the_kv_cache(
    eager: LlamaCppBackend,
) -> None:
    """Closing right after a chunk while a verified draft still has tokens to yield: they
    leave the KV cache, the last yielded token is pending as after plain decoding, and the
    next call evaluates the observation plus that one token."""
    eager.reset()
    context = copy_prompt(eager)
    gen = eager.generate(context, GenerateOptions(sampling=GREEDY, max_tokens=200))
    chunks: list[str] = []
    for chunk in gen:
        chunks.append(chunk)
        if len(eager._session.kv_tokens) > len(eager.context_tokens):  # not yielded yet
            break
    else:
        pytest.fail("no draft was accepted ahead of the yielded text")
    gen.close()
    tokens = eager.context_tokens
    assert eager._session.kv_tokens == tokens[:-1]  # the KV cache: the record, the last pending
    prompt_bytes = "".join(s.text for s in context).encode()
    assert eager.detokenize(tokens) == prompt_bytes + "".join(chunks).encode()

    context += [Segment("".join(chunks), "model"), Segment("\n# ok\n", "template")]
    before = eager.usage
    "".join(eager.generate(context, GenerateOptions(sampling=GREEDY, max_tokens=1)))
    delta = eager.usage.since(before)
    assert delta.prompt_tokens_evaluated == len(eager.tokenize(context[-1])) + 1
    assert delta.prompt_tokens_cached == 0


def test_nothing_follows_a_tool_call_in_the_context(eager: LlamaCppBackend) -> None:
    """The loop closes the generation on the chunk that completes ``</tool_call>``; text the
    model would write after it (here forced by a grammar, and drafted from the prompt, which
    holds the same text) never enters the context or the KV cache."""
    call = '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'
    said = f"I add them.\n{call}\nThe answer is five, as the tool said."
    escaped = json.dumps(said)
    context = chat(eager, f"Repeat exactly: {said}")
    eager.reset()
    before = eager.usage
    gen = eager.generate(
        context,
        GenerateOptions(sampling=GREEDY, max_tokens=200, grammar=f"root ::= {escaped}"),
    )
    text = ""
    for chunk in gen:
        text += chunk
        if "</tool_call>" in text:
            break
    gen.close()
    usage = eager.usage.since(before)
    assert text.endswith("</tool_call>") or "</tool_call>" in text[-12:]
    prompt_bytes = "".join(s.text for s in context).encode()
    assert eager.detokenize(eager.context_tokens) == prompt_bytes + text.encode()
    assert eager._session.kv_tokens == eager.context_tokens[:-1]
    assert usage.draft_tokens_accepted > 0


def test_a_required_tool_call_stays_valid_with_lookup(eager: LlamaCppBackend) -> None:
    eager.reset()
    before = eager.usage
    agent = Agent(
        eager, tools=[add], tool_choice="required", max_steps=1, transcript=False, sampling=GREEDY
    )
    result = agent.run("What is 2 + 3? Use the add tool.")
    assert result.tool_calls, (result.finish_reason, result.detail)
    call = result.tool_calls[0]
    assert call.name == "add"
    assert set(call.arguments) == {"a", "b"}
    assert all(isinstance(v, int) for v in call.arguments.values())
    assert eager.usage.since(before).draft_tokens > 0  # the grammar's call was drafted


def test_the_tool_call_grammar_accepts_drafts(eager: LlamaCppBackend) -> None:
    """The grammar advances only on sampled tokens: a call the context already shows is
    drafted and accepted under the grammar, and the result is still a valid call."""
    assert eager.info.chat_template is not None
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    example = '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'
    context = chat(eager, f"Answer with this exact call:\n{example}")
    grammar = tool_call_grammar([tool], allow_thinking=False)
    text, _, usage = generate(
        eager, context, GenerateOptions(sampling=GREEDY, max_tokens=60, grammar=grammar)
    )
    assert text.startswith("<tool_call>\n") and text.endswith("</tool_call>")
    json.loads(text.removeprefix("<tool_call>\n").removesuffix("\n</tool_call>"))
    assert usage.draft_tokens_accepted > 0


def test_a_kv_cache_that_cannot_drop_a_draft_is_an_error_not_a_corrupt_context(
    eager: LlamaCppBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should llama.cpp refuse to drop a rejected draft, the generation fails with a next
    step instead of going on over a KV cache that holds tokens the record does not."""
    original = eager._decoder.remove

    def refuse(seq: int, start: int) -> bool:
        original(seq, start)
        return False

    eager.reset()
    context = copy_prompt(eager)
    gen = eager.generate(context, GenerateOptions(sampling=GREEDY, max_tokens=200))
    next(gen)
    monkeypatch.setattr(eager._decoder, "remove", refuse)
    with pytest.raises(BackendError, match="lookup=False"):
        for _ in gen:
            pass
    monkeypatch.undo()
    assert eager.context_tokens == []  # reset: the next call starts clean
    text, _, _ = generate(eager, context, GenerateOptions(sampling=GREEDY, max_tokens=4))
    assert text
