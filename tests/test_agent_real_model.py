"""The agent end to end on a real model: the tiny SmolLM2 GGUF through llama.cpp."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Sequence

import pytest

from agent import Agent
from models.base import GenerateOptions, Segment, StopReason
from models.catalog import open_backend
from models.llama_cpp import LlamaCppBackend
from tests.conftest import add
from tests.real_model import requires_tiny_model

pytestmark = [pytest.mark.real_model, requires_tiny_model]


class Recording:
    """Passes everything to a real backend and keeps every context it was given."""

    def __init__(self, inner: LlamaCppBackend) -> None:
        self.inner = inner
        self.info = inner.info
        self.contexts: list[list[Segment]] = []

    @property
    def usage(self):  # type: ignore[no-untyped-def]
        return self.inner.usage

    def generate(
        self, context: Sequence[Segment], options: GenerateOptions
    ) -> Generator[str, None, StopReason]:
        self.contexts.append(list(context))
        return self.inner.generate(context, options)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def backend() -> Iterator[LlamaCppBackend]:
    b = open_backend("smollm2-135m", n_ctx=4096, warm_start=False)
    assert isinstance(b, LlamaCppBackend)
    yield b
    b.close()


def test_required_tool_call_runs_and_nothing_is_evaluated_twice(backend: LlamaCppBackend) -> None:
    recording = Recording(backend)
    agent = Agent(
        recording,
        tools=[add],
        tool_choice="required",
        temperature=0,
        max_steps=3,
        transcript=False,  # type: ignore[arg-type]
    )
    result = agent.run("What is 2 + 3? Use the add tool.")
    assert result.tool_calls, result.events
    first = result.tool_calls[0]
    assert first.name == "add" and first.error_type in (None, "validation")
    if first.error is None:
        assert first.output == str(first.arguments["a"] + first.arguments["b"])
    assert result.finish_reason in ("completed", "max_steps")

    # The resume evaluated only the observation's tokens (+1: the last sampled token).
    usage_steps = [e.usage for e in result.events if e.kind == "usage"]
    before, after = recording.contexts[0], recording.contexts[1]
    new = after[len(before) + 1 :]  # skip the model segment the backend generated itself
    new_tokens = sum(len(backend.tokenize(s)) for s in new)
    resumed = usage_steps[1].prompt_tokens_evaluated - usage_steps[0].prompt_tokens_evaluated
    assert new_tokens <= resumed <= new_tokens + 1

    # Across the run, evaluated + generated ≈ the context (within 2%): nothing twice.
    u = result.usage
    assert (
        abs(u.prompt_tokens_evaluated + u.completion_tokens - u.context_tokens)
        <= 0.02 * u.context_tokens
    )
    assert u.prompt_tokens_cached == 0


def test_a_second_turn_reuses_the_common_prefix(backend: LlamaCppBackend) -> None:
    agent = Agent(backend, temperature=0, max_tokens=8, transcript=False)
    agent.run("Say hi.")
    second = agent.run("Say bye.")
    assert second.usage.prompt_tokens_cached > 0  # the system turn and first exchange were kept


LONG_PROMPT = "Summarise this list: " + " ".join(f"item{i}" for i in range(600))


@pytest.mark.parametrize("limit", ["timeout", "cancel"])
def test_timeout_and_cancel_stop_a_long_prompt_evaluation(
    backend: LlamaCppBackend, monkeypatch: pytest.MonkeyPatch, limit: str
) -> None:
    """The limits are honoured between prefill batches, not only once text is coming: the
    first batch's evaluation outlasts the timeout (or cancels the run), and no further batch
    is evaluated."""
    prompt_tokens = len(backend.tokenize(Segment(LONG_PROMPT, "template")))
    assert prompt_tokens > 2 * backend._llm.n_batch  # several of llama.cpp's batches
    backend._reset()
    agent = Agent(backend, transcript=False, timeout=3.0 if limit == "timeout" else None)
    original = backend._eval
    calls: list[int] = []

    def first_batch_is_slow(tokens: Sequence[int], interrupt: object = None) -> None:
        original(tokens[: backend._llm.n_batch])  # one batch, then the limit strikes
        calls.append(len(tokens))
        if limit == "cancel":
            agent.cancel()
        else:
            time.sleep(3.1)
        original(tokens[backend._llm.n_batch :], interrupt)  # type: ignore[arg-type]

    monkeypatch.setattr(backend, "_eval", first_batch_is_slow)
    before = backend.usage.prompt_tokens_evaluated
    result = agent.run(LONG_PROMPT)
    assert result.finish_reason == ("timeout" if limit == "timeout" else "cancelled")
    assert backend.usage.prompt_tokens_evaluated - before == backend._llm.n_batch
    assert result.usage.completion_tokens == 0


def test_an_interrupted_prefill_keeps_what_it_evaluated(backend: LlamaCppBackend) -> None:
    """Interrupted after one batch: the generation returns "interrupted" without sampling,
    and the next generation of the same context evaluates only the rest."""
    context = [Segment(LONG_PROMPT, "template")]
    total = len(backend.tokenize(context[0]))
    backend._reset()
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
    assert evaluated == backend._llm.n_batch < total
    assert backend.usage.completion_tokens == sampled  # nothing sampled
    start = backend.usage.prompt_tokens_evaluated
    text = "".join(backend.generate(context, GenerateOptions(max_tokens=1)))
    assert text
    assert backend.usage.prompt_tokens_evaluated - start == total - evaluated
