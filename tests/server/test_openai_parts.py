"""The pieces of the server backend: SSE parsing, ChatML <-> chat messages, the counters."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.openai._chat import ChatFormatError, ChatStreamAssembler, chatml_to_chat
from models.openai._usage import Attempt, UsageMeter
from models.openai.sse import SseError, SseEvent, SseParser
from models.qwq.chat_template import qwq_template, render
from models.qwq.observations import tool_results_turn

ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}},
    },
}

# -- SSE ------------------------------------------------------------------------------------


def parse(*chunks: bytes) -> list[SseEvent]:
    parser = SseParser()
    events = [e for chunk in chunks for e in parser.feed(chunk)]
    return events + parser.close()


def test_sse_events_comments_and_multiline_data() -> None:
    stream = b": ping\n\nevent: delta\nid: 7\ndata: a\ndata:b\n\ndata: [DONE]\n\n"
    # The last event id carries over to later events, as the format says.
    assert parse(stream) == [SseEvent("a\nb", "delta", "7"), SseEvent("[DONE]", id="7")]


STREAM = b'data: {"x": 1}\r\n\r\ndata: {"y": "\xc3\xa9"}\r\rdata: last'


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=6))
def test_sse_events_do_not_depend_on_chunking(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert [e.data for e in parse(*chunks)] == ['{"x": 1}', '{"y": "é"}', "last"]


def test_sse_bounds_and_encoding_are_enforced() -> None:
    with pytest.raises(SseError, match="longer than 16 bytes"):
        SseParser(max_line_bytes=16).feed(b"data: " + b"x" * 40)
    with pytest.raises(SseError, match="larger than 20 bytes"):
        SseParser(max_event_bytes=20).feed(b"data: 0123456789\ndata: 0123456789\n")
    with pytest.raises(SseError, match="not UTF-8"):
        SseParser().feed(b"data: \xff\n")


# -- ChatML -> chat -------------------------------------------------------------------------


def conversation_text() -> str:
    """What the loop's context looks like after one tool round in the template placement."""
    first = render(
        qwq_template(),
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 2 + 3?"},
        ],
        tools=[ADD],
    )
    model = (
        'I will add.\n</think>\n\nLet me add.\n<tool_call>\n{"name": "add", "arguments": '
        '{"a": 2}}\n</tool_call>'
    )
    return first + model + tool_results_turn(["5"], opens_thinking=True)


def test_chatml_reads_back_messages_tools_and_tool_results() -> None:
    request = chatml_to_chat(conversation_text())
    assert request.tools == [ADD]
    assert request.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 + 3?"},
        {
            "role": "assistant",
            "content": "Let me add.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 2}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "5"},
    ]


def test_chatml_round_trips_through_the_template() -> None:
    # Rendering the read-back messages gives the same prompt, minus this turn's thinking.
    request = chatml_to_chat(conversation_text())
    messages = [dict(m) for m in request.messages]
    for m in messages:
        for call in m.get("tool_calls", ()):
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    again = render(qwq_template(), messages, tools=request.tools)
    assert again == conversation_text().replace("<think>\nI will add.\n</think>\n\n", "")


def test_chatml_without_tools_or_system() -> None:
    text = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    request = chatml_to_chat(text)
    assert request.messages == [{"role": "user", "content": "hi"}]
    assert request.tools == []


@pytest.mark.parametrize(
    "text",
    [
        "no chatml at all",
        "<|im_start|>user\nhi<|im_end|>\n",  # no generation prompt
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\nmid-thought",
    ],
)
def test_chatml_that_chat_cannot_express_is_refused(text: str) -> None:
    with pytest.raises(ChatFormatError):
        chatml_to_chat(text)


def test_tool_responses_that_do_not_match_the_calls_stay_a_user_turn() -> None:
    text = conversation_text().replace(
        "<tool_response>\n5\n</tool_response>",
        "<tool_response>\n5\n</tool_response>\n<tool_response>\n6\n</tool_response>",
    )
    messages = chatml_to_chat(text).messages
    assert messages[-1]["role"] == "user" and "6" in messages[-1]["content"]


# -- chat deltas -> the loop's text ---------------------------------------------------------


def assemble(opens_thinking: bool, *deltas: dict[str, object]) -> str:
    assembler = ChatStreamAssembler(opens_thinking=opens_thinking)
    pieces = [p for d in deltas for p in assembler.delta(d)]
    return "".join(pieces + assembler.finish())


def test_reasoning_is_wrapped_when_the_prompt_does_not_open_thinking() -> None:
    text = assemble(False, {"reasoning_content": "hm"}, {"content": "Hi"})
    assert text == "<think>\nhm\n</think>\n\nHi"


def test_inline_thinking_passes_through_untouched() -> None:
    assert assemble(True, {"content": "hm</th"}, {"content": "ink>\n\nHi"}) == "hm</think>\n\nHi"


def test_parsed_calls_are_written_after_the_thinking_closes() -> None:
    text = assemble(
        True, {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{}"}}]}
    )
    assert text == '\n</think>\n\n<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>'


def test_malformed_call_arguments_are_passed_on_for_the_parser_to_report() -> None:
    text = assemble(False, {"tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]})
    assert text == '<tool_call>\n{"name": "f", "arguments": {oops}\n</tool_call>'


# -- counters -------------------------------------------------------------------------------


def test_estimated_counters_follow_the_prefix_cache_semantics() -> None:
    meter = UsageMeter()
    first = Attempt("p" * 400)
    first.events = 1
    for _ in range(10):
        first.add_text("abcd")
    one = meter.record(first)
    assert (one.prompt_tokens_evaluated, one.prompt_tokens_cached, one.completion_tokens) == (
        100,
        0,
        10,
    )
    # A continuation: only the new text counts as evaluated, nothing as cached.
    second = Attempt("p" * 400 + "abcd" * 10 + "o" * 40)
    second.events = 1
    two = meter.record(second)
    assert (two.prompt_tokens_cached, two.prompt_tokens_evaluated) == (0, 10)
    # A changed history: the shared prefix is cached, the rest evaluated.
    third = Attempt("p" * 200 + "q" * 200)
    third.events = 1
    three = meter.record(third)
    assert (three.prompt_tokens_cached, three.prompt_tokens_evaluated) == (50, 50)


def test_an_attempt_without_any_answer_counts_nothing() -> None:
    meter = UsageMeter()
    meter.record(Attempt("x" * 100))
    assert meter.snapshot().prompt_tokens_evaluated == 0
