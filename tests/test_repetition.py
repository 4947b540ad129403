"""Repetition in the thinking: the detector on real-looking text, and the loop acting on it."""

from __future__ import annotations

import pytest

from agent import Agent
from agent.events import Repetition
from agent.repetition import Repeat, RepetitionDetector
from agent.step import REPETITION_PRESENCE_PENALTY
from models.base import GenerateOptions, Sampling, Segment
from models.llama.backend import LlamaCppBackend
from tests.conftest import MakeAgent
from tests.real_model import requires_tiny_model

LOOP = (
    "Wait, but the problem says the sum is 10. Let me check again. If a = 3 and b = 7, "
    "then a + b = 10, which matches. But what about the product? 3 * 7 = 21. Hmm, so the "
    "product is 21. "
)
"""A paragraph of the kind QwQ falls into repeating (190 characters)."""

REASONING = (
    "Okay, so I need to find two numbers whose sum is 10 and whose product is 21. Let me "
    "call them a and b. Then a + b = 10 and ab = 21. From the first, b = 10 - a, so "
    "a(10 - a) = 21, which gives a^2 - 10a + 21 = 0. The discriminant is 100 - 84 = 16, "
    "so a = (10 +- 4) / 2, that is 7 or 3. If a = 7 then b = 3; if a = 3 then b = 7. "
    "Wait, let me double-check: 7 + 3 = 10, yes, and 7 * 3 = 21, yes. So the numbers are "
    "3 and 7. But the question might want them in order. Let me reread it: it says "
    "'find the two numbers', so order does not matter. Let me also make sure there are no "
    "other solutions: a quadratic has at most two roots, and both give the same pair. "
    "Therefore the answer is 3 and 7. Let me write it clearly, with the check included, "
    "so the user can verify it quickly without redoing the algebra themselves."
)


def feed_all(detector: RepetitionDetector, text: str, chunk: int = 3) -> list[Repeat]:
    return [
        found
        for i in range(0, len(text), chunk)
        if (found := detector.feed(text[i : i + chunk])) is not None
    ]


def test_a_paragraph_repeated_over_and_over_is_found() -> None:
    found = feed_all(RepetitionDetector(), REASONING + LOOP * 6)
    assert found, "six copies of a paragraph must be found"
    first = found[0]
    assert first.period == len(LOOP)
    assert first.repeats >= 3
    assert LOOP.startswith(first.unit[first.unit.index("Wait") :])


def test_it_is_found_soon_after_the_repetition_is_long_enough() -> None:
    text = REASONING + LOOP * 10
    detector = RepetitionDetector()
    for i in range(0, len(text), 3):
        if detector.feed(text[i : i + 3]) is not None:
            break
    # 800 characters (or 3 copies) of repetition, plus at most one check interval
    assert i <= len(REASONING) + max(800, 3 * len(LOOP)) + detector.check_every + len(LOOP)


def test_reasoning_that_does_not_repeat_is_not_flagged() -> None:
    assert feed_all(RepetitionDetector(), REASONING) == []


def test_a_table_of_numbers_is_not_flagged() -> None:
    rows = ["| n | n^2 | n^3 |", "|---|-----|-----|"]
    rows += [f"| {n} | {n * n} | {n**3} |" for n in range(1, 120)]
    assert feed_all(RepetitionDetector(), "\n".join(rows)) == []


def test_a_list_of_numbers_is_not_flagged() -> None:
    assert feed_all(RepetitionDetector(), ", ".join(str(n) for n in range(1000))) == []


def test_runs_of_few_characters_are_not_flagged() -> None:
    assert feed_all(RepetitionDetector(), "0, " * 600) == []
    assert feed_all(RepetitionDetector(), "-" * 3000) == []


def test_a_short_phrase_said_a_few_times_is_not_flagged() -> None:
    text = "".join(
        f"Hmm, let me check. Case {n} works because {n} + 1 = {n + 1}. " for n in range(40)
    )
    assert feed_all(RepetitionDetector(), text) == []


def test_reset_needs_a_new_repetition() -> None:
    detector = RepetitionDetector()
    assert feed_all(detector, LOOP * 6)
    detector.reset()
    assert feed_all(detector, LOOP * 2) == []


def test_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="min_period"):
        RepetitionDetector(min_period=1)
    with pytest.raises(ValueError, match="window 100"):
        RepetitionDetector(window=100)


def test_the_loop_raises_the_presence_penalty_then_goes_on(make_agent: MakeAgent) -> None:
    answer = "So the numbers are 3 and 7.\n</think>\n\nThey are 3 and 7."
    agent, backend = make_agent([REASONING + LOOP * 20, answer])
    result = agent.run("Find two numbers with sum 10 and product 21.")
    assert result.ok and result.answer == "They are 3 and 7."
    events = [e for e in result.events if isinstance(e, Repetition)]
    assert [(e.action, e.period, e.presence_penalty) for e in events] == [
        ("presence_penalty", len(LOOP), REPETITION_PRESENCE_PENALTY)
    ]
    # The repeating generation was stopped early, and the next one, from the same position,
    # has the higher penalty; the step is not over (one step).
    assert backend.prompts[1].count(LOOP) < 20
    assert backend.prompts[1].startswith(backend.prompts[0] + REASONING)
    assert backend.options[0].sampling.presence_penalty == 0.0
    assert backend.options[1].sampling.presence_penalty == REPETITION_PRESENCE_PENALTY
    assert result.steps == 1


def test_the_loop_ends_the_run_when_it_keeps_repeating(make_agent: MakeAgent) -> None:
    agent, backend = make_agent([REASONING + LOOP * 20, LOOP * 20, "never played"])
    result = agent.run("q")
    assert result.finish_reason == "repetition"
    assert "repeating itself" in result.detail
    events = [e for e in result.events if isinstance(e, Repetition)]
    assert [e.action for e in events] == ["presence_penalty", "stopped"]
    assert backend.remaining == 1


@pytest.mark.real_model
@requires_tiny_model
def test_llama_cpp_penalties_cover_the_text_before_a_restart(tiny_backend: LlamaCppBackend) -> None:
    # A generation restarted with a penalty must penalise what was just written: the tokens
    # of the context, not only those the new generation samples.
    context = [Segment("The cat sat on the mat. " * 3 + "The cat sat on the", "template")]
    plain = GenerateOptions(sampling=Sampling(temperature=0), max_tokens=3)
    repeated = "".join(tiny_backend.generate(context, plain))
    words = set(context[0].text.replace(".", " ").split())
    assert repeated.split()[0].strip(".,") in words  # greedy repeats the sentence
    tiny_backend.reset()
    penalised = GenerateOptions(
        sampling=Sampling(temperature=0, repeat_penalty=20.0, presence_penalty=2.0), max_tokens=3
    )
    other = "".join(tiny_backend.generate(context, penalised))
    assert other.split()[0].strip(".,") not in words


def test_the_server_backend_gets_the_higher_penalty_on_the_next_request() -> None:
    from tests.server.fake_openai import Reply, completion_events
    from tests.server.mock_openai import MockServer

    server = MockServer()
    text = REASONING + LOOP * 20
    chunks = [text[i : i + 10] for i in range(0, len(text), 10)]
    server.push(
        Reply(events=completion_events(*chunks)),
        Reply(events=completion_events("So 3 and 7.\n</think>\n\nThey are 3 and 7.")),
    )
    with Agent(server.backend(), tools=[], transcript=False) as agent:
        result = agent.run("q")
    assert result.ok and result.answer == "They are 3 and 7."
    first, second = server.requests
    assert first.body["presence_penalty"] == 0.0
    assert second.body["presence_penalty"] == REPETITION_PRESENCE_PENALTY
    sent = second.body["prompt"][len(first.body["prompt"]) :]
    assert text.startswith(sent) and LOOP * 3 in sent and len(sent) < len(text)
