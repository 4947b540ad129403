"""The agent end to end on a real model: the tiny SmolLM2 GGUF through llama.cpp.

The model is the session's (``tiny_backend``); each test generates only the tokens it needs.
That a resume evaluates only the observation is proven at the backend, exactly, by
``tests/models/test_llama_cpp.py::test_resume_evaluates_only_the_observation_plus_one``.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Sequence
from typing import Any

import pytest

import agent.loop
import agent.step
from agent import Agent
from models.base import GenerateOptions, Segment, StopReason, Usage
from models.llama.backend import LlamaCppBackend
from tests.conftest import HANG_BOUND, add
from tests.real_model import TINY_CTX, TinyModel, open_tiny, requires_tiny_model

pytestmark = [pytest.mark.real_model, requires_tiny_model]

SMALL_BATCH = 16
"""llama.cpp's prefill batch of the ``small_batches`` backend: a prompt of a few of them is
short, so the tests of limits honoured *between* batches evaluate a few dozen tokens."""

LONG_PROMPT = "Summarise this list: " + " ".join(f"item{i}" for i in range(40))


class Recording:
    """Passes everything to a real backend and keeps every context it was given."""

    def __init__(self, inner: LlamaCppBackend) -> None:
        self.inner = inner
        self.info = inner.info
        self.contexts: list[list[Segment]] = []

    @property
    def usage(self) -> Usage:
        return self.inner.usage

    def generate(
        self, context: Sequence[Segment], options: GenerateOptions
    ) -> Generator[str, None, StopReason]:
        self.contexts.append(list(context))
        return self.inner.generate(context, options)

    def close(self) -> None:
        self.inner.close()


class SkewedClock:
    """The ``time`` module as :mod:`agent.loop` and :mod:`agent.step` see it, with
    ``monotonic()`` moved forward on demand: a run's deadline passes at a chosen point,
    whatever the machine's speed."""

    def __init__(self) -> None:
        self.skew = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.skew

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture(scope="module")
def _small_batches(tiny_model: TinyModel) -> Iterator[LlamaCppBackend]:
    backend = open_tiny(tiny_model.gguf, n_ctx=TINY_CTX, n_batch=SMALL_BATCH)
    yield backend
    backend.close()


@pytest.fixture
def small_batches(_small_batches: LlamaCppBackend) -> LlamaCppBackend:
    """The tiny model with a prefill batch of :data:`SMALL_BATCH` tokens, context emptied."""
    _small_batches.reset()
    return _small_batches


def test_a_required_tool_call_runs_and_nothing_is_evaluated_twice(
    tiny_backend: LlamaCppBackend,
) -> None:
    """The grammar of ``tool_choice="required"`` makes the tiny model call ``add``; the call
    runs, its result goes back, and over the run every token was evaluated once (the loop
    continues the backend's context; it never re-sends it)."""
    recording = Recording(tiny_backend)
    agent = Agent(
        recording,
        tools=[add],
        tool_choice="required",
        temperature=0,
        max_steps=2,
        max_tokens=48,  # the call takes about 30; a few for the answer
        transcript=False,
    )
    result = agent.run("What is 2 + 3? Use the add tool.")
    assert result.tool_calls, result.events
    first = result.tool_calls[0]
    assert first.name == "add" and first.error_type in (None, "validation")
    if first.error is None:
        assert first.output == str(first.arguments["a"] + first.arguments["b"])
    assert result.finish_reason in ("completed", "max_steps", "max_tokens")
    assert len(recording.contexts) == 2  # the call, then the answer after its result
    u = result.usage
    assert u.prompt_tokens_cached == 0
    assert (
        abs(u.prompt_tokens_evaluated + u.completion_tokens - u.context_tokens)
        <= 0.02 * u.context_tokens
    )


def test_a_second_turn_reuses_the_common_prefix(tiny_backend: LlamaCppBackend) -> None:
    agent = Agent(tiny_backend, temperature=0, max_tokens=4, transcript=False)
    agent.run("Say hi.")
    second = agent.run("Say bye.")
    assert second.usage.prompt_tokens_cached > 0  # the system turn and first exchange were kept


@pytest.mark.parametrize("limit", ["timeout", "cancel"])
def test_timeout_and_cancel_stop_a_long_prompt_evaluation(
    small_batches: LlamaCppBackend, monkeypatch: pytest.MonkeyPatch, limit: str
) -> None:
    """The limits are honoured between prefill batches, not only once text is coming: after
    the first batch the run's deadline passes (or the run is cancelled), and no further batch
    is evaluated. The deadline passes by a skewed clock, so the test does not race it."""
    backend = small_batches
    prompt_tokens = len(backend.tokenize(Segment(LONG_PROMPT, "template")))
    assert prompt_tokens > 2 * SMALL_BATCH  # several of llama.cpp's batches
    clock = SkewedClock()
    monkeypatch.setattr(agent.loop, "time", clock)
    monkeypatch.setattr(agent.step, "time", clock)  # the generation's interrupt is there
    run = Agent(backend, transcript=False, timeout=HANG_BOUND if limit == "timeout" else None)
    original = backend._decoder.decode

    def limit_after_the_first_batch(entries: Sequence[Any]) -> None:
        original(entries)  # one batch, then the limit strikes
        if limit == "cancel":
            run.cancel()
        else:
            clock.skew += 2 * HANG_BOUND

    monkeypatch.setattr(backend._decoder, "decode", limit_after_the_first_batch)
    before = backend.usage.prompt_tokens_evaluated
    result = run.run(LONG_PROMPT)
    assert result.finish_reason == ("timeout" if limit == "timeout" else "cancelled")
    assert backend.usage.prompt_tokens_evaluated - before == SMALL_BATCH
    assert result.usage.completion_tokens == 0


def test_an_interrupted_prefill_keeps_what_it_evaluated(small_batches: LlamaCppBackend) -> None:
    """Interrupted after one batch: the generation returns "interrupted" without sampling,
    and the next generation of the same context evaluates only the rest."""
    backend = small_batches
    context = [Segment(LONG_PROMPT, "template")]
    total = len(backend.tokenize(context[0]))
    polls: list[int] = []

    def after_one_batch() -> bool:
        polls.append(1)
        return len(polls) > 1

    start = backend.usage.prompt_tokens_evaluated
    sampled = backend.usage.completion_tokens
    gen = backend.generate(context, GenerateOptions(max_tokens=1, interrupt=after_one_batch))
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "interrupted"
    evaluated = backend.usage.prompt_tokens_evaluated - start
    assert evaluated == SMALL_BATCH < total
    assert backend.usage.completion_tokens == sampled  # nothing sampled
    start = backend.usage.prompt_tokens_evaluated
    text = "".join(backend.generate(context, GenerateOptions(max_tokens=1)))
    assert text
    assert backend.usage.prompt_tokens_evaluated - start == total - evaluated
