"""The cached-prefix estimate of the server backend (servers that report no cached count):
the same numbers as ``os.path.commonprefix`` gave, in linear time with the work in C."""

from __future__ import annotations

import os
import random
import sys
from types import FrameType
from typing import Any

from models.openai._usage import _CHUNK, Attempt, UsageMeter, approx_tokens, common_prefix_length


def _reference(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))  # noqa: RUF071 (characters, not paths)


def test_the_length_is_that_of_commonprefix_on_sample_pairs() -> None:
    rng = random.Random(15)
    alphabet = "ab\u00e9\u4e2d\U0001f600"
    lengths = [0, 1, 2, _CHUNK - 1, _CHUNK, _CHUNK + 1, 3 * _CHUNK + 7, 50_000]
    pairs = [("", ""), ("a", ""), ("abc", "abc"), ("abc", "abd"), ("abc", "abcdef")]
    for length in lengths:
        base = "".join(rng.choice(alphabet) for _ in range(length))
        for cut in sorted({0, length // 2, max(0, length - 1), length}):
            tail_a = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 9)))
            tail_b = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 9)))
            pairs.append((base[:cut] + tail_a, base[:cut] + tail_b))
            pairs.append((base, base[:cut]))
    for a, b in pairs:
        assert common_prefix_length(a, b) == _reference(a, b), (len(a), len(b))
        assert common_prefix_length(b, a) == _reference(a, b)


def _attempt(prompt: str, output: str = "", chunks: int = 0) -> Attempt:
    attempt = Attempt(prompt)
    attempt.events = 1
    for _ in range(chunks):
        attempt.add_text(output)
    return attempt


def test_a_run_of_requests_gets_the_counters_it_got_before() -> None:
    system = "You are an agent. " * 500  # 9,000 characters
    first, second = system + "Question one?", system + "Question two, a new one?"
    meter = UsageMeter()
    one = meter.record(_attempt(first, "step ", 40))
    continued = first + "step " * 40 + "<tool_response>42</tool_response>"
    two = meter.record(_attempt(continued, "done ", 10))
    three = meter.record(_attempt(second, "x", 3))
    common = len(system) + len("Question ")
    assert (one.prompt_tokens_cached, one.prompt_tokens_evaluated) == (0, approx_tokens(first))
    assert two.prompt_tokens_cached == 0  # a continuation: counted when it was evaluated
    assert two.prompt_tokens_evaluated == approx_tokens(continued) - approx_tokens(
        first + "step " * 40
    )
    assert three.prompt_tokens_cached == approx_tokens(second[:common])
    assert three.prompt_tokens_evaluated == approx_tokens(second) - approx_tokens(second[:common])


def test_the_estimate_runs_in_c_not_a_python_loop_per_character() -> None:
    """Counted in traced Python lines, not seconds: independent of the machine's speed."""
    context = "z" * 1_000_000
    meter = UsageMeter()
    for i in range(8):  # the contexts it remembers
        meter.record(_attempt(context + str(i)))
    lines = 0

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal lines
        if event == "line":
            lines += 1
        return trace

    sys.settrace(trace)
    try:
        usage = meter.record(_attempt(context + "new"))
    finally:
        sys.settrace(None)
    assert usage.prompt_tokens_cached == approx_tokens(context)
    # 8 contexts of 1,000,000 characters: about 250 chunks each; one Python step per
    # character would be 8,000,000 lines
    assert lines < 20_000
