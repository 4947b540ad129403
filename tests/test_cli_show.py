"""How ``qwq-agent ask`` prints a run: Markdown on a terminal, plain text when piped."""

from __future__ import annotations

import io

from rich.console import Console

from agent.cli.show import EventPrinter
from agent.events import Text, Thinking, ToolCall, ToolCallEvent, ToolResult

ANSWER = ["\n\n", "The sum is **5**.\n\n", "- one\n- two\n"]


def printer(*, terminal: bool, hide_thinking: bool = False) -> tuple[EventPrinter, io.StringIO]:
    buffer = io.StringIO()
    out = Console(file=buffer, force_terminal=terminal, width=120, highlight=False)
    err = Console(file=io.StringIO(), width=60)
    return EventPrinter(out, err, hide_thinking=hide_thinking), buffer


def run(p: EventPrinter, events: list[object]) -> None:
    for event in events:
        p.show(event)  # type: ignore[arg-type]
    p.close()


def test_on_a_terminal_the_answer_is_rendered_as_markdown() -> None:
    p, buffer = printer(terminal=True)
    run(p, [Thinking("adding"), *(Text(t) for t in ANSWER)])
    shown = buffer.getvalue()
    assert "**" not in shown and "\x1b[1m5" in shown  # bold, without the asterisks
    assert "•" in shown and "one" in shown and "- one" not in shown


def test_piped_the_answer_is_the_model_text_exactly() -> None:
    p, buffer = printer(terminal=False)
    run(p, [Thinking("adding"), *(Text(t) for t in ANSWER)])
    assert buffer.getvalue() == "adding\nThe sum is **5**.\n\n- one\n- two\n"


def test_hidden_thinking_leaves_no_blank_lines_before_the_answer() -> None:
    call = ToolCall("c1", "calculator", {"expression": "2 + 3"}, "thinking")
    p, buffer = printer(terminal=False, hide_thinking=True)
    run(
        p,
        [
            Thinking("let me add"),
            ToolCallEvent(call),
            ToolResult(call_id="c1", name="calculator", output="5", error=None, duration=0.0),
            Thinking("so it is 5"),
            *(Text(t) for t in ANSWER),
        ],
    )
    assert buffer.getvalue() == (
        '→ calculator({"expression": "2 + 3"})\n← 5\nThe sum is **5**.\n\n- one\n- two\n'
    )


def test_escape_sequences_and_markup_in_the_answer_are_inert_on_a_terminal() -> None:
    p, buffer = printer(terminal=True)
    run(p, [Text("[bold red]x[/] \x1b]52;c;ZXZpbA==\x07 \x1b[2J done")])
    shown = buffer.getvalue()
    assert "[bold red]x[/]" in shown and "\x1b]52" not in shown and "\x1b[2J" not in shown


def test_what_the_runtime_did_is_a_dim_line_of_its_own() -> None:
    from agent.events import Compacted, Repetition, ThinkingClosed

    p, buffer = printer(terminal=False)
    run(
        p,
        [
            Thinking("hmm"),
            Repetition(period=40, repeats=20.0, action="presence_penalty", presence_penalty=1.5),
            ThinkingClosed(reason="budget", tokens=1024, text="...</think>\n\n"),
            Compacted(tokens_before=33000, tokens_after=9000, segments=3),
            Text("\n\nDone."),
        ],
    )
    assert buffer.getvalue() == (
        "hmm\n"
        "· the thinking repeats itself: presence penalty 1.5\n"
        "· thinking closed: its budget was spent (1,024 tokens)\n"
        "· context compacted: 33,000 -> 9,000 tokens (the reasoning of 3 finished steps dropped)\n"
        "Done.\n"
    )
