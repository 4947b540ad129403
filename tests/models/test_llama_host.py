"""The model host on the tiny real model: several sessions on one loaded copy of the weights.

The host shares the session's tiny model (``tiny_backend``: no second load). Outputs are not
bit-exact across batch shapes in llama.cpp (a near-tie between two tokens can flip when the
batch changes), so the comparisons use greedy decoding on prompts whose continuations were
checked to have no near-ties on this model.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from agent import Agent, tool
from agent.events import Finished
from models.base import GenerateOptions, Sampling, Segment
from models.llama.backend import LlamaCppBackend
from models.llama.host import LlamaHost
from tests.conftest import HANG_BOUND
from tests.real_model import TINY_CTX, requires_tiny_model

pytestmark = [pytest.mark.real_model, requires_tiny_model]

PROMPTS = (
    "The capital of France is",
    "def fibonacci(n):",
    "1, 2, 3, 4, 5,",
    "Monday, Tuesday, Wednesday,",
)
"""Greedy continuations without near-ties: each gave the same 12 tokens alone and in every
combination of 4 among 7 candidates. ("Once upon a time, there was a" and "import numpy as"
did not: their continuations flip with the batch shape.)"""


@pytest.fixture
def host(tiny_backend: LlamaCppBackend) -> Iterator[LlamaHost]:
    """A host of 2 sequences on the tiny model's weights."""
    h = LlamaHost.sharing(tiny_backend, n_seq_max=2, n_ctx=TINY_CTX)
    yield h
    h.close()


def test_concurrent_sessions_give_what_each_gives_alone(tiny_backend: LlamaCppBackend) -> None:
    options = GenerateOptions(sampling=Sampling(temperature=0), max_tokens=12)
    alone = []
    for text in PROMPTS:
        tiny_backend.reset()
        alone.append("".join(tiny_backend.generate([Segment(text, "template")], options)))
    with LlamaHost.sharing(tiny_backend, n_seq_max=4, n_ctx=TINY_CTX) as h:
        sessions = [h.session() for _ in PROMPTS]
        out: list[str] = [""] * len(PROMPTS)

        def go(i: int) -> None:
            out[i] = "".join(sessions[i].generate([Segment(PROMPTS[i], "template")], options))

        threads = [threading.Thread(target=go, args=(i,)) for i in range(len(PROMPTS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG_BOUND * 4)
        steps = h.scheduler.steps
    assert out == alone
    assert steps < 12 * len(PROMPTS)  # sequences shared batches
    assert all(s.usage.completion_tokens == 12 for s in sessions)


@tool(risk="dangerous")
def launch(target: str) -> str:
    """Launch something (needs a person's yes).

    Args:
        target: What to launch.
    """
    return f"launched {target}"


def test_one_agent_parked_on_an_approval_one_cancelled_others_finish(host: LlamaHost) -> None:
    asked, answer = threading.Event(), threading.Event()

    def approve(_: object) -> bool:
        asked.set()
        assert answer.wait(HANG_BOUND * 4)
        return True

    waiting = Agent(
        host.session(),
        tools=[launch],
        tool_choice="required",
        approval="ask",
        approval_callback=approve,
        temperature=0,
        max_steps=2,
        max_tokens=48,
        transcript=False,
    )
    results = {}
    w = threading.Thread(target=lambda: results.setdefault("w", waiting.run("Launch the moon.")))
    w.start()
    assert asked.wait(HANG_BOUND * 4)  # parked, its KV still in the cache
    cancelled = Agent(host.session(), temperature=0, max_tokens=64, transcript=False)
    events = []
    for event in cancelled.stream("Write a long story."):
        events.append(event)
        if event.kind == "thinking" or event.kind == "text":
            cancelled.cancel()
    finishers = [
        Agent(host.session(), temperature=0, max_tokens=6, transcript=False) for _ in range(2)
    ]
    done = [a.run(p) for a, p in zip(finishers, ("Say hi.", "Say bye."), strict=True)]
    assert [r.finish_reason for r in done] == ["max_tokens", "max_tokens"]
    assert isinstance(events[-1], Finished) and events[-1].reason == "cancelled"
    assert host.scheduler.swaps_out >= 1  # the parked agent made room for the others
    answer.set()
    w.join(HANG_BOUND * 4)
    result = results["w"]
    assert result.tool_calls and result.tool_calls[0].name == "launch"
    assert host.scheduler.swaps_in >= 1
    u = result.usage  # swapped out and back in: nothing evaluated twice
    assert u.prompt_tokens_cached == 0
    assert abs(u.prompt_tokens_evaluated + u.completion_tokens - u.context_tokens) <= 2
