"""The streaming parser: events as soon as known, identical under any chunking, never raises."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.parser import (
    AnswerText,
    CallError,
    InventedResponse,
    ParsedCall,
    ParseEvent,
    StreamParser,
    ThinkingEnded,
    ThinkingText,
    parse_call_json,
)


def parse(text: str, chunks: list[int] | None = None, **options: bool) -> list[ParseEvent]:
    parser = StreamParser(**options)
    events: list[ParseEvent] = []
    if chunks is None:
        events += parser.feed(text)
    else:
        at = 0
        for size in chunks:
            events += parser.feed(text[at : at + size])
            at += size
        events += parser.feed(text[at:])
    return events + parser.finish()


def merged(events: list[ParseEvent]) -> list[object]:
    """Adjacent text pieces of the same kind joined: the chunk-independent view."""
    out: list[object] = []
    for e in events:
        if out and type(e) in (ThinkingText, AnswerText) and type(out[-1]) is type(e):
            out[-1] = type(e)(out[-1].text + e.text)  # type: ignore[union-attr,call-arg]
        else:
            out.append(e)
    return out


CALL = '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'


def test_thinking_then_answer() -> None:
    events = merged(parse("Let me think.\n</think>\n\nIt is 5."))
    assert events == [ThinkingText("Let me think.\n"), ThinkingEnded(), AnswerText("\n\nIt is 5.")]


def test_call_inside_thinking_is_reported_with_its_end_offset() -> None:
    text = "I add." + CALL + " more"
    events = merged(parse(text))
    call = events[1]
    assert isinstance(call, ParsedCall)
    assert (call.name, call.arguments, call.placement) == ("add", {"a": 2, "b": 3}, "thinking")
    assert text[: call.end].endswith("</tool_call>")
    assert events[0] == ThinkingText("I add.") and events[2] == ThinkingText(" more")


def test_text_is_released_as_soon_as_no_tag_can_start() -> None:
    parser = StreamParser()
    assert parser.feed("abc") == [ThinkingText("abc")]
    assert parser.feed("x <tool") == [ThinkingText("x ")]  # "<tool" may open a call
    assert parser.feed("kit>") == [ThinkingText("<toolkit>")]


def test_calls_after_thinking_are_answer_calls() -> None:
    events = parse("ok</think>\n" + CALL + "\n" + CALL.replace("2", "7"))
    calls = [e for e in events if isinstance(e, ParsedCall)]
    assert [c.placement for c in calls] == ["answer", "answer"]
    assert [c.arguments["a"] for c in calls] == [2, 7]


def test_template_placement_reports_calls_in_thinking_as_placement_errors() -> None:
    events = merged(parse("hmm " + CALL + "</think>", calls_in_thinking=False))
    assert events[0] == ThinkingText("hmm ")
    error = events[1]
    assert isinstance(error, CallError) and error.kind == "placement"
    assert error.placement == "thinking" and "</think>" in error.message
    assert not any(isinstance(e, ParsedCall) for e in events)


def test_bare_json_is_text_not_a_call() -> None:
    text = '</think>{"name": "add", "arguments": {"a": 1, "b": 2}}'
    events = parse(text)
    assert not any(isinstance(e, ParsedCall | CallError) for e in events)


def test_redundant_leading_think_tag_is_dropped() -> None:
    assert merged(parse("\n<think>\nhello</think>x")) == [
        ThinkingText("\n\nhello"),
        ThinkingEnded(),
        AnswerText("x"),
    ]


def test_model_without_opened_thinking_can_open_it() -> None:
    assert merged(parse("<think>a</think>b", in_thinking=False)) == [
        ThinkingText("a"),
        ThinkingEnded(),
        AnswerText("b"),
    ]


def test_no_closing_think_is_all_thinking() -> None:
    assert merged(parse("thinking forever")) == [ThinkingText("thinking forever")]


def test_truncated_call_is_an_error_never_a_call() -> None:
    events = parse('x<tool_call>\n{"name": "add", "argu')
    assert isinstance(events[-1], CallError)
    assert events[-1].closed is False
    assert "ended inside" in events[-1].message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('{"name": "add", "arguments": {"a": 1}', "not valid JSON"),
        ('{ "name": "add", "arguments": {"a": 1}, }, 3', "not valid JSON"),
        ('{"arguments": {}}', '"name"'),
        ('{"name": "", "arguments": {}}', '"name"'),
        ('{"name": "add", "arguments": [1, 2]}', "must be a JSON object"),
        ('{"name": "add", "arguments": {"a": 1, "a": 2}}', "duplicate key"),
        ('{"name": "add", "name": "sub", "arguments": {}}', "duplicate key"),
        ('{"name": "add", "arguments": {"a": NaN}}', "NaN"),
        ('{"name": "add", "arguments": {"a": Infinity}}', "Infinity"),
        ('{"name": "add", "arguments": {"a": "\\ud800"}}', "surrogate"),
        ('{"name": "add", "arguments": ' + "[" * 100 + "]" * 100 + "}", "nested"),
        ('{"name": "add", "arguments": "\\"{\\\\\\"a\\\\\\": 1}\\""}', "double-encoded"),
        ('{"name": "add", "arguments": "not json"}', "not a JSON object"),
        ('{"name": "add", "arguments": {}, "id": 3}', "unexpected keys"),
        ('{"name": "add", "arguments": {}}{"name": "add", "arguments": {}}', "not valid JSON"),
    ],
)
def test_malformed_call_bodies_are_errors(body: str, fragment: str) -> None:
    events = parse(f"<tool_call>\n{body}\n</tool_call>")
    errors = [e for e in events if isinstance(e, CallError)]
    assert len(errors) == 1 and errors[0].closed
    assert fragment in errors[0].message
    assert "<tool_call>" in errors[0].message  # the expected format is explained
    assert not any(isinstance(e, ParsedCall) for e in events)


def test_arguments_encoded_once_as_a_string_are_accepted() -> None:
    body = json.dumps({"name": "add", "arguments": json.dumps({"a": 1, "b": 2})})
    assert parse_call_json(body) == ("add", {"a": 1, "b": 2})


def test_missing_arguments_mean_no_arguments() -> None:
    assert parse_call_json('{"name": "now"}') == ("now", {})


def test_oversized_call_is_refused_without_parsing() -> None:
    body = '{"name": "add", "arguments": {"a": "' + "x" * 70_000 + '"}}'
    events = parse(f"<tool_call>{body}</tool_call>")
    assert isinstance(events[-1], CallError) and "over the limit" in events[-1].message


TEXT_PIECES = st.sampled_from(
    [
        "<think>",
        "</think>",
        "<tool_call>",
        "</tool_call>",
        "<",
        "</",
        "<tool",
        "\n",
        " ",
        "a",
        "é",
        '{"name": "add", "arguments": {"a": 1}}',
        "{",
        "}",
        '"',
        "<tool_response>",
        "</tool_response>",
        "'",
        ",",
        "[",
        "\\",
        '"</tool_call>"',
        "x" * 7,
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(st.text(max_size=200), st.lists(TEXT_PIECES, max_size=30).map("".join)),
    cuts=st.lists(st.integers(min_value=0, max_value=15), max_size=40),
    in_thinking=st.booleans(),
    calls_in_thinking=st.booleans(),
)
def test_any_chunking_gives_the_same_events_and_never_raises(
    text: str, cuts: list[int], in_thinking: bool, calls_in_thinking: bool
) -> None:
    options = {"in_thinking": in_thinking, "calls_in_thinking": calls_in_thinking}
    whole = merged(parse(text, **options))
    chunked = merged(parse(text, chunks=cuts, **options))
    single = merged(parse(text, chunks=[1] * len(text), **options))
    assert whole == chunked == single


@settings(max_examples=200, deadline=None)
@given(text=st.lists(TEXT_PIECES, max_size=30).map("".join))
def test_text_outside_calls_is_preserved(text: str) -> None:
    """Thinking + answer + call blocks account for every character but the tags."""
    events = parse(text)
    shown = "".join(e.text for e in events if isinstance(e, ThinkingText | AnswerText))
    assert len(shown) <= len(text)
    for e in events:
        if isinstance(e, ParsedCall):
            assert parse_call_json(e.raw) == (e.name, e.arguments)
        if isinstance(e, ParsedCall | CallError | InventedResponse):
            offset = e.at if isinstance(e, InventedResponse) else e.end
            assert 0 <= offset <= len(text)


def test_a_call_opens_only_on_an_object() -> None:
    text = "See <tool_call> tags.</think>Use <tool_call>[1]</tool_call> never."
    assert merged(parse(text)) == [
        ThinkingText("See <tool_call> tags."),
        ThinkingEnded(),
        AnswerText("Use <tool_call>[1] never."),  # the stray close tag is not shown
    ]


def test_a_close_tag_inside_a_json_string_is_part_of_the_string() -> None:
    body = json.dumps({"name": "echo", "arguments": {"text": "a</tool_call>b"}})
    text = f"<tool_call>\n{body}\n</tool_call>after"
    for events in (parse(text), parse(text, chunks=[1] * len(text))):
        call = next(e for e in events if isinstance(e, ParsedCall))
        assert call.arguments == {"text": "a</tool_call>b"} and text[call.end :] == "after"


def test_an_unterminated_string_gives_back_its_first_close_tag() -> None:
    text = '<tool_call>{"name": "echo", "arguments": {"text": "5" tall"}}</tool_call> then'
    events = merged(parse(text))
    assert isinstance(events[0], CallError) and events[0].closed
    assert text[: events[0].end].endswith('"}}</tool_call>') and events[1] == ThinkingText(" then")


def test_invented_response_is_reported_where_it_starts_and_dropped() -> None:
    text = "</think>Answer.<tool_response>\nmade up\n</tool_response>\nmore"
    events = merged(parse(text))
    assert events == [
        ThinkingEnded(),
        AnswerText("Answer."),
        InventedResponse(text.index("<tool_response>")),
        AnswerText("\nmore"),
    ]


def test_unclosed_final_block_with_a_complete_call_is_a_call() -> None:
    events = parse('<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n')
    assert isinstance(events[-1], ParsedCall) and events[-1].arguments == {"a": 1}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"name": "add", "parameters": {"a": 1}}', ("add", {"a": 1})),
        ("{'name': 'add', 'arguments': {'s': 'it\\'s \"x\"'}}", ("add", {"s": 'it\'s "x"'})),
        ('{"name": "add", "arguments": {"a": [1, 2,],},}', ("add", {"a": [1, 2]})),
    ],
)
def test_lenient_call_json(body: str, expected: tuple[str, dict[str, object]]) -> None:
    assert parse_call_json(body) == expected


def test_lenient_retry_reports_the_mistake_that_is_left() -> None:
    with pytest.raises(ValueError, match="Expecting ',' delimiter") as caught:
        parse_call_json("{'name': 'add' 'arguments': {}}")
    assert "line 1 column 16" in str(caught.value) and "single quotes" in str(caught.value)
