"""The status bar while the model generates: tokens/s, context, thinking tokens, changing
several times a second before the step ends (:mod:`tui.live_usage`), and ``/new`` clears them."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import Agent
from agent.events import Text, Thinking, ToolCall, ToolCallEvent, UsageEvent
from models.base import Usage
from models.scripted import ScriptedBackend
from tests.conftest import HANG_BOUND
from tests.tui.helpers import send, wait_until
from tui.app import make_app
from tui.live_usage import INTERVAL, LiveFigures, LiveMeter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def no_clock() -> float:
    raise AssertionError("the deterministic meter must not read the clock")


class TestMeter:
    def test_a_backend_that_counts_each_token_gives_exact_figures(self) -> None:
        usage, clock = Usage(context_tokens=100), FakeClock()
        meter = LiveMeter(lambda: usage, clock=clock)
        usage.context_tokens = 150  # the prompt's tokens, evaluated before the first token
        shown: list[LiveFigures] = []
        for _ in range(10):  # one token a tenth of a second
            clock.now += 0.1
            usage.completion_tokens += 1
            usage.decode_seconds += 0.1
            if (figures := meter.observe(Thinking("abcdefgh"))) is not None:
                shown.append(figures)
        assert len(shown) == 4  # the first token, then at most every INTERVAL (0.25 s)
        assert all(b.tokens > a.tokens for a, b in itertools.pairwise(shown))
        last = shown[-1]
        assert not last.estimated and last.tokens == last.thinking_tokens == 10
        assert last.tokens_per_second == pytest.approx(10.0)
        assert last.context_tokens == 150 + 10 - 1  # the first token came with the prompt's level
        usage.context_tokens = 160  # the step ends: the backend's level is exact again
        final = meter.observe(UsageEvent(usage.copy(), 1))
        assert final is not None and final.context_tokens == 160 and final.tokens == 10

    def test_a_backend_that_counts_at_the_end_is_estimated_then_exact(self) -> None:
        usage, clock = Usage(context_tokens=40), FakeClock()
        meter = LiveMeter(lambda: usage, clock=clock)
        figures = None
        for _ in range(6):
            clock.now += 0.1
            figures = meter.observe(Thinking("12345678")) or figures  # 2 tokens of text each
        assert figures is not None and figures.estimated
        # shown at the 1st and 4th chunk (0.3 s later): 4 chunks of 8 characters
        assert figures.tokens == figures.thinking_tokens == 8
        assert figures.context_tokens == 40 + 8
        assert figures.tokens_per_second == pytest.approx(8 / 0.3)  # since the first chunk
        usage.completion_tokens, usage.decode_seconds, usage.context_tokens = 13, 0.5, 53
        exact = meter.observe(UsageEvent(usage.copy(), 1))
        assert exact is not None and not exact.estimated
        assert (exact.tokens, exact.context_tokens) == (13, 53)
        assert exact.tokens_per_second == pytest.approx(13 / 0.5)

    def test_thinking_tokens_are_the_thinking_share_of_the_text(self) -> None:
        usage = Usage()
        meter = LiveMeter(lambda: usage, interval=None, clock=no_clock)
        for event in (
            Thinking("a" * 60),
            ToolCallEvent(ToolCall("c1", "f", {}, "thinking", "b" * 20)),
        ):
            assert meter.observe(event) is None
        assert meter.observe(Text("c" * 20)) is None  # no clock: figures only at usage events
        usage.completion_tokens = 25
        figures = meter.observe(UsageEvent(usage.copy(), 1))
        assert figures is not None and (figures.tokens, figures.thinking_tokens) == (25, 15)


@pytest.fixture
def slow_agent(tmp_path: Path) -> Iterator[Agent]:
    """An agent whose scripted model thinks for at least 10 s (2,000 characters, 4 a chunk,
    20 ms a chunk): long enough to watch, and it is cancelled well before it ends."""
    thought = "".join(f"Step {i} of the thought, checked again. " for i in range(50))[:2000]
    backend = ScriptedBackend([thought + "</think>\n\nDone."], chunk_size=4, delay=0.02)
    agent = Agent(backend, workspace=tmp_path)
    yield agent
    agent.close()


def figures_of(text: str) -> tuple[str, str]:
    """The context and thinking figures of the status bar's text."""
    context = re.search(r"ctx (~?[\d,]+)/", text)
    thinking = re.search(r"think (~?[\d,]+)", text)
    return (context.group(1) if context else "", thinking.group(1) if thinking else "")


@pytest.mark.anyio
async def test_the_bar_changes_before_the_step_ends_and_new_clears_it(slow_agent: Agent) -> None:
    app = make_app(slow_agent)  # not deterministic: live figures every INTERVAL
    assert INTERVAL <= 0.25
    async with app.run_test(size=(120, 30)) as pilot:
        status = app.status
        await send(pilot, "Think it over.")

        def thinking_shown() -> bool:
            return app.running and figures_of(status.text)[1] != ""

        await wait_until(pilot, thinking_shown, HANG_BOUND, "live thinking figures")
        first = figures_of(status.text)
        assert first[0].startswith("~") and first[1].startswith("~")  # counted at the end
        assert "~" in status.text.split("tok/s")[0]  # the speed is estimated too

        def changed_mid_step() -> bool:
            turn = app.turn
            return (
                app.running
                and turn is not None
                and turn.finished is None
                and figures_of(status.text) != first
            )

        await wait_until(pilot, changed_mid_step, HANG_BOUND, "the figures to move")
        second = figures_of(status.text)
        assert int(second[1].strip("~").replace(",", "")) > int(
            first[1].strip("~").replace(",", "")
        )

        await pilot.press("escape")
        await wait_until(pilot, lambda: not app.running, HANG_BOUND, "the cancel")
        await send(pilot, "/new")
        await wait_until(pilot, lambda: "think" not in status.text, HANG_BOUND, "/new")
        assert figures_of(status.text) == ("0", "") and "tok/s" not in status.text
