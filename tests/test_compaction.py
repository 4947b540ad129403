"""Compaction instead of overflow, on the scripted backend (which has a context window in
approximate tokens of 4 characters) through the real parser and loop."""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from agent import Agent
from agent.compaction import Compactor, drop_reasoning
from agent.events import Compacted
from models.base import GenerateOptions, Segment, StopReason, Usage
from models.llama.backend import LlamaCppBackend
from models.qwq.chat_template import qwq_template
from models.scripted import ScriptedBackend, call
from tests.conftest import add
from tests.real_model import open_tiny, requires_tiny_model, tiny_gguf


def reasoning(tag: str) -> str:
    return "".join(f"({tag}) Step {i}: {i} times {i} is {i * i}; keep going. " for i in range(20))


STEPS = [
    reasoning("a") + call("add", a=1, b=2),
    reasoning("b") + call("add", a=3, b=4),
    "Now I have both sums.\n</think>\n\nThe answer is 3 and 7.",
]


def tokens(text: str) -> int:
    return (len(text) + 3) // 4 if text else 0


def run(turns: list[str], context_size: int, tmp_path: Path, **options: Any) -> tuple[Any, Any]:
    backend = ScriptedBackend(turns, context_size=context_size)
    agent = Agent(backend, tools=[add], workspace=tmp_path, transcript=False, **options)
    return agent.run("Add 1 and 2, then 3 and 4."), backend


def test_drop_reasoning_keeps_calls_and_what_follows_the_thinking() -> None:
    text = "I think a lot.\n" + call("add", a=1, b=2)
    assert drop_reasoning(text) == call("add", a=1, b=2)
    assert drop_reasoning("long thought</think>\n\nAnswer.") == "</think>\n\nAnswer."
    assert drop_reasoning("just thinking") == ""
    assert drop_reasoning("x " + call("a") + " y " + call("b")) == call("a") + "\n" + call("b")


def test_compactor_changes_only_noted_segments() -> None:
    context = [
        Segment("prompt", "template"),
        Segment("thought " + call("add"), "model"),
        Segment("result", "data"),
        Segment("answer text", "model"),
        Segment("just a thought", "model"),
    ]
    compactor = Compactor(context)
    compactor.note(1)
    compactor.note(4)
    done = compactor.compact()
    assert done is not None and done.segments == 2
    assert [s.text for s in context] == ["prompt", call("add"), "result", "answer text"]
    assert compactor.compact() is None  # nothing left to drop


def test_a_run_that_overflows_finishes_through_compaction(tmp_path: Path) -> None:
    roomy, big = run(STEPS, 32_768, tmp_path)
    assert roomy.ok
    needed = roomy.usage.context_tokens - tokens(STEPS[2])  # the context of the third step
    result, backend = run(STEPS, needed - 1, tmp_path)
    assert result.ok, result.detail
    assert result.answer == "The answer is 3 and 7."
    events = [e for e in result.events if isinstance(e, Compacted)]
    assert len(events) == 1
    event = events[0]
    assert (event.tokens_before, event.segments, event.estimated) == (needed, 2, False)
    assert event.tokens_after < needed - 1
    # The prompt of the third step: no reasoning of the finished steps; calls and results kept.
    last = backend.prompts[-1]
    assert "(a) Step" not in last and "(b) Step" not in last
    assert call("add", a=1, b=2) in last and call("add", a=3, b=4) in last
    assert "\n3\n</tool_response>" in last and "\n7\n</tool_response>" in last
    assert [c.output for c in result.tool_calls] == ["3", "7"]
    # Usage: the context is the compacted one, and the re-evaluation is counted.
    usage = result.usage
    assert usage.context_tokens == event.tokens_after + tokens(STEPS[2])
    assert usage.prompt_tokens_cached > 0  # the prompt, before the first dropped reasoning
    observation = tokens(big.observations[-1])
    re_evaluated = event.tokens_after - usage.prompt_tokens_cached
    assert usage.prompt_tokens_evaluated == (
        roomy.usage.prompt_tokens_evaluated - observation + re_evaluated
    )
    assert usage.completion_tokens == roomy.usage.completion_tokens


def test_the_window_filling_while_the_model_thinks_compacts_and_goes_on(tmp_path: Path) -> None:
    turns = [*STEPS[:2], reasoning("c"), "So the answer follows.\n</think>\n\n3 and 7."]
    roomy, _ = run([*turns[:2], "</think>ok"], 32_768, tmp_path)
    third_prompt = roomy.usage.context_tokens - tokens("</think>ok")
    # The third step's prompt fits, but its thinking fills the window part way.
    result, backend = run(turns, third_prompt + 40, tmp_path)
    assert result.ok, result.detail
    assert result.answer == "3 and 7."
    events = [e for e in result.events if isinstance(e, Compacted)]
    assert len(events) == 1 and events[0].tokens_before == third_prompt + 40
    assert result.steps == 3  # the thinking went on in the same step
    # the current thought is kept: what the third step had written is in the last prompt
    assert "(c) Step 0" in backend.prompts[-1]
    assert "(a) Step" not in backend.prompts[-1]


def test_context_overflow_when_there_is_nothing_to_drop(tmp_path: Path) -> None:
    turns = [call("add", a=1, b=2), call("add", a=3, b=4), "</think>\n\nDone."]
    roomy, _ = run(turns, 32_768, tmp_path)
    needed = roomy.usage.context_tokens - tokens(turns[2])
    result, _ = run(turns, needed - 1, tmp_path)
    assert result.finish_reason == "context_overflow"
    assert not [e for e in result.events if isinstance(e, Compacted)]


def test_context_overflow_when_the_compacted_context_does_not_fit(tmp_path: Path) -> None:
    def big() -> str:
        """A large output."""
        return "".join(f"line {i}\n" for i in range(400))  # about 900 tokens

    turns = [reasoning("a") + call("big"), "</think>\n\nDone."]
    backend = ScriptedBackend(turns)
    Agent(backend, tools=[big], workspace=tmp_path, transcript=False).run("q")
    first_step = backend.usage.context_tokens - tokens(turns[1]) - tokens(backend.observations[0])
    # The first step fits; its result does not, even without the step's reasoning.
    backend = ScriptedBackend(turns, context_size=first_step + 50)
    result = Agent(backend, tools=[big], workspace=tmp_path, transcript=False).run("q")
    assert result.finish_reason == "context_overflow"
    assert f"the model's window is {first_step + 50}" in result.detail
    assert not [e for e in result.events if isinstance(e, Compacted)]


def test_the_transcript_records_the_compaction(tmp_path: Path) -> None:
    roomy, _ = run(STEPS, 32_768, tmp_path)
    needed = roomy.usage.context_tokens - tokens(STEPS[2])
    path = tmp_path / "run.jsonl"
    backend = ScriptedBackend(STEPS, context_size=needed - 1)
    with Agent(backend, tools=[add], workspace=tmp_path, transcript=path) as agent:
        assert agent.run("Add 1 and 2, then 3 and 4.").ok
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    compacted = [r for r in records if r.get("kind") == "compacted"]
    assert len(compacted) == 1 and compacted[0]["tokens_before"] == needed


class Forced:
    """A real llama.cpp backend whose first generations are forced: each forced text is
    evaluated by the model (a zero-token generation over the context plus the text) and
    yielded as if sampled; later generations are the model's own. Every context the loop
    builds, compacted ones included, is evaluated for real."""

    def __init__(self, inner: LlamaCppBackend, forced: list[str]) -> None:
        self.inner = inner
        self.info = inner.info
        self.forced = list(forced)
        self.compactions: list[tuple[Usage, Usage]] = []
        """The counters around each zero-token evaluation the loop asked for (compaction)."""

    @property
    def usage(self) -> Usage:
        return self.inner.usage

    def generate(
        self, context: Sequence[Segment], options: GenerateOptions
    ) -> Generator[str, None, StopReason]:
        if options.max_tokens == 0:
            before = self.inner.usage
            yield from self.inner.generate(context, options)
            self.compactions.append((before, self.inner.usage))
            return "length"
        if not self.forced:
            return (yield from self.inner.generate(context, options))
        text = self.forced[0]
        evaluate = GenerateOptions(sampling=options.sampling, max_tokens=0)
        yield from self.inner.generate([*context, Segment(text, "model")], evaluate)
        self.forced.pop(0)  # evaluated: it did fit
        yield text
        return "end_of_turn"

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def small_window() -> Iterator[LlamaCppBackend]:
    gguf = tiny_gguf()
    assert gguf is not None
    backend = open_tiny(gguf, n_ctx=1024, chat_template=qwq_template())
    yield backend
    backend.close()


@pytest.mark.real_model
@requires_tiny_model
def test_a_real_run_past_a_1024_token_window_finishes_through_compaction(
    small_window: LlamaCppBackend, tmp_path: Path
) -> None:
    small_window.reset()
    steps = [reasoning(t) + call("add", a=i, b=i) for i, t in enumerate("abc")]
    backend = Forced(small_window, steps)
    agent = Agent(
        backend, tools=[add], temperature=0, max_tokens=16, transcript=False, workspace=tmp_path
    )
    result = agent.run("Add 0 and 0, 1 and 1, 2 and 2.")
    assert result.finish_reason in ("completed", "max_tokens"), result.detail
    assert [c.output for c in result.tool_calls] == ["0", "2", "4"]
    events = [e for e in result.events if isinstance(e, Compacted)]
    assert events and not any(e.estimated for e in events)
    # Usage: each compaction evaluated the compacted context once, from the first token that
    # changed (the rest reused from the KV cache), and said so in the counters.
    for event, (before, after) in zip(events, backend.compactions, strict=True):
        assert event.tokens_before > 1024 - 16 and event.tokens_after < event.tokens_before
        assert after.context_tokens == event.tokens_after
        reused = after.prompt_tokens_cached - before.prompt_tokens_cached
        evaluated = after.prompt_tokens_evaluated - before.prompt_tokens_evaluated
        assert reused > 0 and reused + evaluated == event.tokens_after
    assert result.usage.context_tokens <= 1024


def test_the_server_backend_in_completions_mode_compacts_too(tmp_path: Path) -> None:
    from tests.server.fake_openai import Reply, completion_events
    from tests.server.mock_openai import MockServer

    server = MockServer()
    too_long = {
        "error": {
            "code": 400,
            "message": "the request exceeds the available context size, try increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": 1300,
            "n_ctx": 1024,
        }
    }
    server.push(
        Reply(events=completion_events(STEPS[0])),
        Reply(events=completion_events(STEPS[1])),
        Reply(status=400, body=json.dumps(too_long)),
        Reply(events=completion_events(STEPS[2])),
    )
    backend = server.backend()
    with Agent(backend, tools=[add], workspace=tmp_path, transcript=False) as agent:
        result = agent.run("Add 1 and 2, then 3 and 4.")
    assert result.ok, result.detail
    assert result.answer == "The answer is 3 and 7."
    (event,) = [e for e in result.events if isinstance(e, Compacted)]
    # The server evaluates nothing until asked to generate: the figure after is estimated.
    assert (event.tokens_before, event.segments, event.estimated) == (1300, 2, True)
    assert event.tokens_after < 1300
    assert len(server.requests) == 4  # the compacted context is sent once, with the next step
    prompt = server.requests[3].body["prompt"]
    assert server.requests[2].body["prompt"].startswith(prompt[:200])
    assert "(a) Step" not in prompt and "(b) Step" not in prompt
    assert call("add", a=1, b=2) in prompt and "\n7\n</tool_response>" in prompt


def test_template_placement_keeps_what_follows_the_thinking(tmp_path: Path) -> None:
    steps = [
        reasoning("a") + "</think>\n\nFirst I add.\n" + call("add", a=1, b=2),
        reasoning("b") + "</think>\n\n" + call("add", a=3, b=4),
        "Both done.\n</think>\n\nThe answer is 3 and 7.",
    ]
    roomy, _ = run(steps, 32_768, tmp_path, placement="template")
    needed = roomy.usage.context_tokens - tokens(steps[2])
    result, backend = run(steps, needed - 1, tmp_path, placement="template")
    assert result.ok, result.detail
    assert [e.kind for e in result.events].count("compacted") == 1
    last = backend.prompts[-1]
    assert "(a) Step" not in last and "(b) Step" not in last
    assert "<think>\n</think>\n\nFirst I add.\n" + call("add", a=1, b=2) in last
