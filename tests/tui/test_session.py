"""A scripted session driven end to end through the Pilot: prompt, thinking, tool cards
inside the thought, the answer, approvals, and cancelling with Esc."""

from __future__ import annotations

import threading
import time

import pytest

from models.scripted import PAUSE, GatedBackend, ScriptedBackend, call
from tests.conftest import HANG_BOUND, add
from tests.tui.helpers import MakeApp, gated_tool, run_to_end, send, shell, wait_until
from tui.screens.approval import ApprovalScreen
from tui.widgets.thinking import SEGMENT_CHARS, ThinkingBlock, ThinkingSegment
from tui.widgets.tool_card import ToolCard
from tui.widgets.turn import AssistantTurn, Note, UserMessage

pytestmark = pytest.mark.anyio


ANSWER = "The sum is 5, as expected.\n</think>\n\nThe answer is **5**."


async def test_thinking_streams_then_a_card_inside_it_then_the_answer(make_chat: MakeApp) -> None:
    backend = GatedBackend(
        ["I should add" + PAUSE + " the numbers.\n" + call("add", a=2, b=3), ANSWER]
    )
    app = make_chat(backend, tools=[add])
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, "What is 2 + 3?")
        await wait_until(pilot, backend.paused.is_set, what="the stream to pause")
        await wait_until(pilot, lambda: bool(app.query(ThinkingSegment)), what="thinking text")
        block = app.query_one(ThinkingBlock)
        assert block.streaming and not block.collapsed  # expanded while it streams
        assert block.text == "I should add"
        assert [str(m.content) for m in app.query(UserMessage)] == ["What is 2 + 3?"]

        backend.gate.set()
        await wait_until(pilot, lambda: not app.running, what="the run to end")
        turn = app.query_one(AssistantTurn)
        assert turn.finished is not None and turn.finished.reason == "completed"
        # The card sits inside the thinking block, between the two stretches of thought.
        pieces = list(block.body.children)
        assert [type(p) for p in pieces] == [ThinkingSegment, ToolCard, ThinkingSegment]
        first, card, second = pieces
        assert isinstance(first, ThinkingSegment) and isinstance(second, ThinkingSegment)
        assert first.text == "I should add the numbers.\n"
        assert second.text.startswith("The sum is 5")
        assert isinstance(card, ToolCard)
        assert card.state == "done" and card.result is not None and card.result.output == "5"
        assert "add(a=2, b=3)" in str(card.header.content)
        # The answer collapsed the thinking, and is Markdown.
        assert block.collapsed and not block.streaming
        assert turn.answer_text == "The answer is **5**."
        assert app.status.step == 2 and app.status.activity == "done"


async def test_ctrl_t_folds_and_unfolds_the_latest_thinking(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend(["Hmm.\n</think>\n\nHi."]))
    async with app.run_test(size=(100, 30)) as pilot:
        await run_to_end(pilot, "hello")
        block = app.query_one(ThinkingBlock)
        assert block.collapsed
        await pilot.press("ctrl+t")
        assert not block.collapsed
        await pilot.press("ctrl+t")
        assert block.collapsed
        await pilot.click(block.header)
        assert not block.collapsed


async def test_a_call_after_thinking_gets_its_card_between_blocks(make_chat: MakeApp) -> None:
    turns = ["Add them.\n</think>\n\n" + call("add", a=1, b=2), "It is 3.\n</think>\n\n3."]
    app = make_chat(ScriptedBackend(turns), tools=[add], placement="template")
    async with app.run_test(size=(100, 40)) as pilot:
        await run_to_end(pilot, "1 + 2?")
        turn = app.query_one(AssistantTurn)
        kinds = [type(w).__name__ for w in turn.children]
        assert kinds == ["ThinkingBlock", "ToolCard", "ThinkingBlock", "Markdown"]
        card = turn.query_one(ToolCard)
        assert card.call.placement == "answer" and card.state == "done"


async def test_approving_a_dangerous_call_runs_it(make_chat: MakeApp) -> None:
    backend = ScriptedBackend(["Run it.\n" + call("shell", command="ls\u202e -la"), ANSWER])
    app = make_chat(backend, tools=[shell])
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, "list files")
        await wait_until(pilot, lambda: isinstance(app.screen, ApprovalScreen), what="the modal")
        card = app.query_one(ToolCard)
        assert card.state == "approval"
        shown = app.screen.query_one("#approval-arguments").query_one("Static")
        # The exact arguments, with the bidi override made visible, not obeyed.
        assert str(shown.content) == 'command: "ls\\u202e -la"'  # type: ignore[attr-defined]
        await pilot.press("y")
        await wait_until(pilot, lambda: not app.running, what="the run to end")
        assert card.state == "done" and card.result is not None
        assert card.result.output == "ran ls\u202e -la"
        assert backend.observations[0] == "\n<tool_response>\nran ls\u202e -la\n</tool_response>\n"


async def test_time_spent_on_the_approval_is_not_thinking_time(make_chat: MakeApp) -> None:
    backend = ScriptedBackend(["Run it.\n" + call("shell", command="ls"), ANSWER])
    app = make_chat(backend, tools=[shell])
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, "list files")
        await wait_until(pilot, lambda: isinstance(app.screen, ApprovalScreen), what="the modal")
        await pilot.pause(2.0)  # the person reads the arguments
        await pilot.press("y")
        await wait_until(pilot, lambda: not app.running, what="the run to end")
        block = app.query_one(ThinkingBlock)
        assert block._paused >= 2.0
        assert block._elapsed < block._paused  # the model itself took a fraction of that


async def test_denying_a_call_tells_the_model(make_chat: MakeApp) -> None:
    backend = ScriptedBackend(["Run it.\n" + call("shell", command="rm -rf /"), ANSWER])
    app = make_chat(backend, tools=[shell])
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, "clean up")
        await wait_until(pilot, lambda: isinstance(app.screen, ApprovalScreen), what="the modal")
        await pilot.press("n")
        await wait_until(pilot, lambda: not app.running, what="the run to end")
        card = app.query_one(ToolCard)
        assert card.state == "denied"
        assert "denied" in backend.observations[0]
        assert "ran rm" not in backend.observations[0]


async def test_always_allow_stops_asking_for_that_tool(make_chat: MakeApp) -> None:
    turns = [
        "First.\n" + call("shell", command="echo 1"),
        "Second.\n" + call("shell", command="echo 2"),
        ANSWER,
    ]
    app = make_chat(ScriptedBackend(turns), tools=[shell])
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, "echo twice")
        await wait_until(pilot, lambda: isinstance(app.screen, ApprovalScreen), what="the modal")
        await pilot.press("a")
        await wait_until(pilot, lambda: not app.running, what="the run to end")
        cards = list(app.query(ToolCard))
        assert [c.state for c in cards] == ["done", "done"]
        assert cards[1].auto_approved  # the second call was not asked about
        assert not isinstance(app.screen, ApprovalScreen)


async def test_escape_cancels_a_streaming_generation(make_chat: MakeApp) -> None:
    # Uncancelled, the generation would take 8 * HANG_BOUND seconds (3 characters a chunk).
    long_thought = "step " * int(8 * HANG_BOUND / 0.005 * 3 / 5) + "\n</think>\n\nnever shown"
    app = make_chat(ScriptedBackend([long_thought], delay=0.005))
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "think long")
        await wait_until(pilot, lambda: bool(app.query(ThinkingSegment)), what="thinking")
        started = time.monotonic()
        await pilot.press("escape")
        await wait_until(pilot, lambda: not app.running, timeout=HANG_BOUND, what="the cancel")
        assert time.monotonic() - started < HANG_BOUND
        turn = app.query_one(AssistantTurn)
        assert turn.finished is not None and turn.finished.reason == "cancelled"
        assert turn.answer is None
        assert any("Cancelled" in str(n.content) for n in turn.query(Note))
        assert app.status.activity == "cancelled"


async def test_escape_cancels_a_running_tool(make_chat: MakeApp) -> None:
    gate = threading.Event()
    backend = ScriptedBackend(["Look.\n" + call("lookup", query="x"), ANSWER])
    app = make_chat(backend, tools=[gated_tool(gate)])
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "look it up")
        await wait_until(pilot, lambda: bool(app.query(ToolCard)), what="the card")
        card = app.query_one(ToolCard)
        assert card.state == "running"
        await pilot.press("escape")
        await wait_until(pilot, lambda: not app.running, timeout=HANG_BOUND, what="the cancel")
        assert card.state == "cancelled"
        turn = app.query_one(AssistantTurn)
        assert turn.finished is not None and turn.finished.reason == "cancelled"
        assert backend.remaining == 1  # the model was not asked to go on
    gate.set()


async def test_ctrl_c_cancels_the_run_then_quits(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend(["step " * int(8 * HANG_BOUND / 0.005 * 3 / 5)], delay=0.005))
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "think long")
        await wait_until(pilot, lambda: bool(app.query(ThinkingSegment)), what="thinking")
        await pilot.press("ctrl+c")
        await wait_until(pilot, lambda: not app.running, timeout=HANG_BOUND, what="the cancel")
        turn = app.query_one(AssistantTurn)
        assert turn.finished is not None and turn.finished.reason == "cancelled"
        assert app.is_running
        await pilot.press("ctrl+c")
    assert app.return_code == 0
    assert not app.is_running


async def test_thinking_deltas_are_batched_not_drawn_per_token(
    make_chat: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    appended: list[str] = []
    original = ThinkingSegment.append

    def counting(self: ThinkingSegment, text: str) -> None:
        appended.append(text)
        original(self, text)

    monkeypatch.setattr(ThinkingSegment, "append", counting)
    # 4,500 characters in lines of equal length; numbered, so the repetition guard (which
    # would stop a thought that repeats one span over and over) leaves it alone.
    thought = "".join(
        f"thought {i:03d}: a line of thought that goes on for a while, on and on\n"
        for i in range(64)
    )
    backend = ScriptedBackend([thought + "</think>\n\nok"], chunk_size=3, delay=0.0003)
    app = make_chat(backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await run_to_end(pilot, "think")
        chunks = len(thought) // 3
        assert len(appended) < chunks / 10  # one update per drain, not per token
        assert "".join(appended) == thought
        block = app.query_one(ThinkingBlock)
        segments = list(block.query(ThinkingSegment))
        assert 2 <= len(segments) <= 3  # long text continues in a new widget at a line break
        line = len(thought.split("\n")[0]) + 1
        assert all(s.size_chars <= SEGMENT_CHARS + line for s in segments)
        assert block.text == thought


async def test_a_failed_run_says_why_once(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend(["Add.\n" + call("add", a=1, b=1)]), tools=[add])
    async with app.run_test(size=(100, 30)) as pilot:
        await run_to_end(pilot, "1 + 1")  # the script has no second turn: the backend fails
        turn = app.query_one(AssistantTurn)
        assert turn.finished is not None and turn.finished.reason == "error"
        shown = [str(n.content) for n in turn.query(Note)]
        assert len([s for s in shown if "has no turn 2" in s]) == 1
        assert "Stopped (error)." in shown
        assert app.status.activity == "error"
        await send(pilot, "/help")  # the app is still usable
        assert "Commands:" in str(app.query(Note).last().content)


async def test_a_run_stopped_by_a_limit_says_which(make_chat: MakeApp) -> None:
    turns = ["Add.\n" + call("add", a=1, b=1), "Again.\n" + call("add", a=2, b=2)]
    app = make_chat(ScriptedBackend(turns), tools=[add], max_steps=2)
    async with app.run_test(size=(100, 30)) as pilot:
        await run_to_end(pilot, "loop")
        notes = [str(n.content) for n in app.query_one(AssistantTurn).query(Note)]
        assert any(n.startswith("Stopped (max steps): the model used all 2 steps") for n in notes)
        assert app.status.activity == "max steps"
