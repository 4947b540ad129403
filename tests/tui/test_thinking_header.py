"""The folded thinking's header names the tools it called (issue 12, item 11)."""

from __future__ import annotations

import html
import re

import pytest

from models.scripted import ScriptedBackend, call
from tests.conftest import add
from tests.tui.helpers import MakeApp, run_to_end, shell
from tui.widgets.thinking import ThinkingBlock, tool_summary

pytestmark = pytest.mark.anyio


def test_tool_summary_names_each_tool_once_with_counts_in_call_order() -> None:
    assert tool_summary([]) == ""
    assert tool_summary(["list_dir"]) == "list_dir"
    assert tool_summary(["list_dir", "calculator"]) == "list_dir, calculator"
    names = ["calculator", "list_dir", "calculator", "calculator"]
    assert tool_summary(names) == "calculator ×3, list_dir"


def test_tool_summary_stays_short() -> None:
    many = ["a", "b", "c", "d", "e", "a"]
    assert tool_summary(many) == "a ×2, b, c, +2 more"
    long = "x" * 100
    assert tool_summary([long]) == "x" * 23 + "…"


def test_tool_summary_makes_model_chosen_names_safe() -> None:
    # Names come from the model: escape sequences go, line breaks become spaces.
    assert tool_summary(["evil\x1b[2J\nname"]) == "evil name"
    assert tool_summary(["   "]) == "?"


async def test_the_folded_header_names_the_tools(make_chat: MakeApp) -> None:
    turns = [
        "Add, then add again.\n" + call("add", a=1, b=2),
        "And once more.\n" + call("add", a=3, b=4),
        "Now run it.\n" + call("shell", command="ls"),
        "Done.\n</think>\n\n7.",
    ]
    app = make_chat(ScriptedBackend(turns), tools=[add, shell], approval="allow")
    async with app.run_test(size=(100, 40)) as pilot:
        await run_to_end(pilot, "add things")
        block = app.query_one(ThinkingBlock)
        assert block.collapsed
        header = str(block.header.content)
        assert header == "▶ Thought · add ×2, shell"


async def test_a_thought_without_calls_says_only_that_it_thought(make_chat: MakeApp) -> None:
    app = make_chat(ScriptedBackend(["Easy.\n</think>\n\nHi."]))
    async with app.run_test(size=(100, 30)) as pilot:
        await run_to_end(pilot, "hello")
        assert str(app.query_one(ThinkingBlock).header.content) == "▶ Thought"


TEXT = re.compile(r'<text class="[^"]*" x="[0-9.]+" y="([0-9.]+)"[^>]*>([^<]*)</text>')


def leading_space_spans(svg: str, marker: str) -> list[str]:
    """The text elements, on the screenshot's rows that hold ``marker``, that start with a
    space and then show something: SVG renderers drop that space, which shifts the text."""
    elements = [(y, html.unescape(text)) for y, text in TEXT.findall(svg)]
    rows = {y for y, text in elements if marker in text}
    assert rows, f"no row with {marker!r}"
    return [t for y, t in elements if y in rows and t[:1] in " \xa0" and t.strip(" \xa0")]


async def test_no_span_of_the_header_or_status_bar_starts_with_a_space(make_chat: MakeApp) -> None:
    # docs/tui.svg read "Thought· 1 tool call": the SVG dropped the span's leading space.
    app = make_chat(
        ScriptedBackend(["Add.\n" + call("add", a=1, b=2), "3.\n</think>\n\n3."]), tools=[add]
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await run_to_end(pilot, "1 + 2?")
        svg = app.export_screenshot()
        assert leading_space_spans(svg, "Thought") == []
        assert leading_space_spans(svg, "step") == []
