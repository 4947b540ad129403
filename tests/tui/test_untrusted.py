"""Untrusted text: Rich/Textual markup is shown literally, escape sequences are stripped,
and a 10 MB line of tool output is cut before it is drawn, so the UI stays responsive."""

from __future__ import annotations

import time

import pytest

from agent import tool
from agent.events import ToolCall, ToolCallEvent, ToolResult
from models.scripted import ScriptedBackend, call
from tests.tui.helpers import MakeApp, run_to_end
from tui import render
from tui.widgets.thinking import SEGMENT_CHARS, ThinkingBlock, ThinkingSegment
from tui.widgets.tool_card import ToolCard
from tui.widgets.turn import AssistantTurn, UserMessage

pytestmark = pytest.mark.anyio

HOSTILE = "[/] [bold]b[/bold] [link=http://x]l[/link] \x1b[2J\x1b]52;c;ZXZpbA==\x07\x1b[31mred"


@tool
def echo(text: str) -> str:
    """Return the text.

    Args:
        text: Anything.
    """
    return text + HOSTILE


def test_render_helpers_strip_escapes_and_cut_before_work() -> None:
    assert render.safe(HOSTILE) == "[/] [bold]b[/bold] [link=http://x]l[/link] red"
    huge = "x" * 10_000_000
    started = time.perf_counter()
    shown = render.truncate(huge)
    assert time.perf_counter() - started < 0.05
    assert shown.startswith("x" * 2_000) and "9,998,000 more characters not shown" in shown
    many_lines = "line\n" * 1_000
    assert render.truncate(many_lines).count("\n") == render.OUTPUT_LINES


def test_arguments_are_shown_escaped_exactly() -> None:
    arguments = {"path": "evil\u202etxt.exe", "code": "print(1)\r\nx = '\x1b[2J'", "n": 3}
    text, cut = render.compact_arguments(arguments)
    assert cut and text.startswith('path="evil\\u202etxt.exe", code=') and text.endswith("…")
    assert "\u202e" not in text and "\x1b" not in text
    lines = render.argument_lines(arguments).split("\n")
    assert lines == [
        'path: "evil\\u202etxt.exe"',
        "code:",
        "  │ print(1)\\r",
        "  │ x = '\\x1b[2J'",
        "n: 3",
    ]
    many = render.argument_lines({"data": "z" * 100}, limit=50)
    assert many.endswith("more characters not shown; deny if unsure")


async def test_markup_and_escapes_in_model_and_tool_output(make_chat: MakeApp) -> None:
    turns = [
        "Think " + HOSTILE + "\n" + call("echo", text="[red]arg[/]"),
        "Done " + HOSTILE + "\n</think>\n\nAnswer " + HOSTILE,
    ]
    app = make_chat(ScriptedBackend(turns), tools=[echo])
    async with app.run_test(size=(100, 40)) as pilot:
        await run_to_end(pilot, "prompt " + HOSTILE)
        turn = app.query_one(AssistantTurn)
        assert turn.finished is not None and turn.finished.reason == "completed"
        block = app.query_one(ThinkingBlock)
        assert "[/] [bold]b[/bold]" in block.text and "\x1b" not in block.text
        card = app.query_one(ToolCard)
        header = str(card.header.content)
        assert 'text="[red]arg[/]"' in header
        output = str(card.query_one(".tool-output").render())
        assert "[/] [bold]b[/bold]" in output and "\x1b" not in output
        assert "\x1b" not in turn.answer_text and "[/]" in turn.answer_text
        prompt = str(app.query_one(UserMessage).content)
        assert prompt.startswith("prompt [/]") and "\x1b" not in prompt
        # The frame drawn to the terminal has no escape from the model either.
        assert "ZXZpbA" not in app.export_screenshot()


async def test_raw_html_in_the_answer_is_shown_as_text(make_chat: MakeApp) -> None:
    """The Markdown widget drops HTML blocks: an answer in <pre>, or after an unclosed
    comment, used to vanish from the screen."""
    answer = "Before.\n\n<pre>\n<code>import math</code>\n</pre>\n\n<!-- never closed\n\nAfter."
    app = make_chat(ScriptedBackend(["Ok.\n</think>\n\n" + answer]))
    async with app.run_test(size=(100, 40)) as pilot:
        await run_to_end(pilot, "show html")
        blocks = [str(b.render()) for b in app.query_one(AssistantTurn).answer.children]
        assert blocks == [
            "Before.",
            "<pre> <code>import math</code> </pre>",
            "<!-- never closed",
            "After.",
        ]


async def test_a_10_mb_line_of_tool_output_stays_responsive(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend([]))
    async with app.run_test(size=(100, 30)) as pilot:
        turn = AssistantTurn(show_timings=False)
        await app.conversation.add(turn)
        call_ = ToolCall("call_1", "python", {"code": "print('x' * 10**7)"}, "thinking")
        await turn.apply(ToolCallEvent(call_))
        huge = "x" * 10_000_000
        started = time.perf_counter()
        await turn.apply(ToolResult("call_1", "python", huge, None, 0.5))
        await pilot.pause()
        app.export_screenshot()  # a full frame is drawn
        assert time.perf_counter() - started < 2.0
        card = turn.query_one(ToolCard)
        shown = str(card.query_one(".tool-output").render())
        assert len(shown) < 2_200 and "more characters not shown" in shown


async def test_long_lines_of_thinking_are_kept_whole(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend([]))
    async with app.run_test(size=(100, 30)) as pilot:
        block = ThinkingBlock(show_timings=False)
        await app.conversation.add(block)
        long_line = "y" * (3 * SEGMENT_CHARS)
        await block.append("start\n" + long_line + "\nafter\n" + long_line)
        await block.append("\nend")
        await pilot.pause()
        texts = [s.text for s in block.query(ThinkingSegment)]
        assert "".join(texts) == "start\n" + long_line + "\nafter\n" + long_line + "\nend"
        assert all(t.endswith("\n") for t in texts[:-1])  # cut only after a line break
        assert len(texts) >= 3
