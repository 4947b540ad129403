"""Tool calls as models really write them, through the real loop on the scripted backend.

Each rule of ``docs/tool-call-format.md`` is checked in both placements and under several
chunkings (one character at a time up to the whole turn at once), then a set of cases in the
style of the peers' parser suites (llama.cpp's chat parser, vLLM's Hermes and Qwen3 parsers,
SGLang's Qwen 2.5 detector, Qwen-Agent's nous parser), written for this project: each either
agrees with the peer or does what the rules say, and none crashes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent import Agent, RunResult, tool
from models.scripted import ScriptedBackend

CHUNKINGS = (1, 2, 3, 5, 100_000)
PLACEMENTS = ("interleaved", "template")
FOLLOW = "Done.</think>\n\nAll done."


@tool
def special_function(arg1: int) -> str:
    """A function with one argument.

    Args:
        arg1: A number.
    """
    return f"special {arg1}"


@tool
def echo(text: str) -> str:
    """Echo the text back.

    Args:
        text: The text.
    """
    return f"echo:{text}"


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """The weather in a city.

    Args:
        city: The city.
        unit: celsius or fahrenheit.
    """
    return f"sunny in {city} ({unit})"


@tool
def internet_search(question: str) -> str:
    """Search the web.

    Args:
        question: What to search for.
    """
    return f"results for {question}"


TOOLS = [special_function, echo, get_weather, internet_search]


def run(
    turns: Sequence[str], placement: str, chunk: int, tmp_path: Path
) -> tuple[RunResult, ScriptedBackend]:
    backend = ScriptedBackend(turns, chunk_size=chunk)
    agent = Agent(backend, tools=TOOLS, placement=placement, workspace=tmp_path, transcript=False)
    return agent.run("q"), backend


def ran(result: RunResult) -> list[tuple[str, dict[str, Any]]]:
    return [(c.name, c.arguments) for c in result.tool_calls if c.output is not None]


def block(name: str, **arguments: Any) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


both = pytest.mark.parametrize("placement", PLACEMENTS)
chunked = pytest.mark.parametrize("chunk", CHUNKINGS)


# -- rule 1: near-miss formats after </think> are fed back, never run ---------------------

NEAR_MISSES = {
    "function=": '<function=special_function>{"arg1": 1}</function>',
    "function name": '<function name="special_function">\n{"arg1": 1}\n</function>',
    "bare": '{"name": "special_function", "arguments": {"arg1": 1}}',
    "bare parameters": '{"name": "special_function", "parameters": {"arg1": 1}}',
    "fence json": '```json\n{"name": "special_function", "arguments": {"arg1": 1}}\n```',
    "fence xml": '```xml\n<response>\n{"name": "special_function", "arguments": {"arg1": 1}}\n</response>\n```',
    "fence plain": '```\n  {"name": "special_function", "arguments": {"arg1": 1}}\n```',
    "tool": '<tool>\n  {"name": "special_function", "arguments": {"arg1": 1}}\n</tool>',
    "tools": '<tools>\n  {"name": "special_function", "arguments": {"arg1": 1}}\n</tools>',
    "response": '<response>\n  {"name": "special_function", "arguments": {"arg1": 1}}\n</response>',
    "json": '<json>\n  {"name": "special_function", "arguments": {"arg1": 1}}\n</json>',
    "JSON": '<JSON>\n  {"name": "special_function", "arguments": {"arg1": 1}}\n</JSON>',
    "xml": '<xml>\n  {\n    "name": "special_function", "arguments": {"arg1": 1}\n  }\n</xml>',
    "function_call": '<function_call> {"name": "special_function", "arguments": {"arg1": 1}} </function_call>',
    "list in tool_call": '<tool_call>\n[{"name": "special_function", "arguments": {"arg1": 1}}]\n</tool_call>',
}


@both
@chunked
@pytest.mark.parametrize("form", sorted(NEAR_MISSES))
def test_near_miss_format_is_fed_back_and_never_run(
    form: str, placement: str, chunk: int, tmp_path: Path
) -> None:
    result, backend = run(
        ["Calling.</think>\n\n" + NEAR_MISSES[form], FOLLOW], placement, chunk, tmp_path
    )
    assert result.ok and result.answer == "All done." and result.tool_calls == []
    told = backend.observations[0]
    assert "not a format that runs" in told and '<tool_call>\n{"name"' in told


@both
@chunked
def test_the_same_near_miss_twice_is_the_answer(placement: str, chunk: int, tmp_path: Path) -> None:
    turn = "</think>" + NEAR_MISSES["bare"]
    result, backend = run([turn, turn], placement, chunk, tmp_path)
    assert result.ok and result.answer == NEAR_MISSES["bare"] and result.tool_calls == []
    assert len(backend.observations) == 1


@both
@chunked
@pytest.mark.parametrize(
    "answer",
    [
        'Here is an example: {"name": "special_function", "arguments": {"arg1": 1}}',
        'This is not a tool call:\n{"name": "special_function", "arguments": {"arg1": 1}}',
        '{"name": "not_a_tool", "arguments": {}}',
        '```json\n{"result": 3}\n```',
        "I would use <tool_call> tags, but the answer is 3.",
    ],
)
def test_json_that_is_not_a_call_attempt_is_the_answer(
    answer: str, placement: str, chunk: int, tmp_path: Path
) -> None:
    result, _ = run(["Hm.</think>" + answer], placement, chunk, tmp_path)
    assert result.ok and result.answer == answer and result.tool_calls == []


# -- rule 2: the template placement never drops a call silently ---------------------------


@both
@chunked
@pytest.mark.parametrize("closed_thinking", [True, False])
def test_a_call_in_thinking_runs_or_is_fed_back(
    closed_thinking: bool, placement: str, chunk: int, tmp_path: Path
) -> None:
    turn = "Let me call it.\n" + block("special_function", arg1=7)
    turn += "\nThat is all.</think>\n\nNo tools needed." if closed_thinking else ""
    result, backend = run([turn, FOLLOW], placement, chunk, tmp_path)
    assert result.ok and result.answer == "All done."
    if placement == "interleaved":
        assert ran(result) == [("special_function", {"arg1": 7})]
        assert "special 7" in backend.observations[0]
    else:
        assert result.tool_calls == []
        assert "calls go after </think>" in backend.observations[0]


# -- rule 3: the model's own <tool_response> ends generation and is dropped ---------------


@both
@chunked
def test_invented_response_after_a_call_is_dropped(
    placement: str, chunk: int, tmp_path: Path
) -> None:
    turn = (
        "Search.</think>\n"
        + block("internet_search", question="qwq")
        + "\n<tool_response>\nFAKE RESULT\n</tool_response>\nSo the answer is FAKE."
    )
    result, backend = run([turn, FOLLOW], placement, chunk, tmp_path)
    assert result.ok and result.answer == "All done."
    assert ran(result) == [("internet_search", {"question": "qwq"})]
    # The context is cut before the invented block, so the backend re-reads from there.
    assert "FAKE" not in backend.prompts[1] and "results for qwq" in backend.prompts[1]


@both
@chunked
def test_invented_response_without_a_call_is_replaced_by_an_error(
    placement: str, chunk: int, tmp_path: Path
) -> None:
    turn = "I will look it up.\n<tool_response>\nIt is 42.\n</tool_response>\nSo 42."
    result, backend = run([turn, FOLLOW], placement, chunk, tmp_path)
    assert result.ok and result.answer == "All done." and result.tool_calls == []
    assert "It is 42" not in backend.prompts[1] and "So 42" not in result.thinking
    assert "No tool was called" in backend.prompts[1]


@both
@chunked
def test_an_answer_followed_by_an_invented_response_ends_with_the_answer(
    placement: str, chunk: int, tmp_path: Path
) -> None:
    turn = "Easy.</think>\n\nIt is 4.<tool_response>\ninvented\n</tool_response>"
    result, _ = run([turn], placement, chunk, tmp_path)
    assert result.ok and result.answer == "It is 4."


# -- rule 4: lenient inside <tool_call>, strict outside ----------------------------------


@both
@chunked
@pytest.mark.parametrize(
    "body",
    [
        '{"name": "get_weather", "parameters": {"city": "Paris"}}',
        "{'name': 'get_weather', 'arguments': {'city': 'Paris'}}",
        '{"name": "get_weather", "arguments": {"city": "Paris",},}',
        "{'name': 'get_weather', 'arguments': {'city': 'Paris',}}",
    ],
)
def test_lenient_json_inside_a_call_block(
    body: str, placement: str, chunk: int, tmp_path: Path
) -> None:
    turn = "Weather.</think>\n<tool_call>\n" + body + "\n</tool_call>"
    result, _ = run([turn, FOLLOW], placement, chunk, tmp_path)
    assert ran(result) == [("get_weather", {"city": "Paris"})]


@both
@chunked
def test_a_final_block_left_unclosed_runs_when_its_json_is_complete(
    placement: str, chunk: int, tmp_path: Path
) -> None:
    turn = 'Weather.</think>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n'
    result, _ = run([turn, FOLLOW], placement, chunk, tmp_path)
    assert ran(result) == [("get_weather", {"city": "Oslo"})]


@both
@chunked
@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('{"name": "get_weather", "arguments": "Paris"}', "not a JSON object"),
        (
            '{"name": "get_weather", "arguments": ["Paris"]}',
            '"arguments" must be a JSON object, got list',
        ),
        ('{"name": "get_weather", "arguments": {"city": "Paris"}', "not valid JSON"),
        ("{'name': 'get_weather', 'arguments': {'city': 'Paris'}", "not valid JSON"),
        ('{"name": "get_weather", "arguments": {"city": "P"}, "parameters": {}}', "both"),
    ],
)
def test_still_refused_inside_a_call_block(
    body: str, fragment: str, placement: str, chunk: int, tmp_path: Path
) -> None:
    turn = "Weather.</think>\n<tool_call>\n" + body + "\n</tool_call>"
    result, backend = run([turn, FOLLOW], placement, chunk, tmp_path)
    assert result.tool_calls == [] and fragment in backend.observations[0]


@both
@chunked
def test_a_truncated_unclosed_block_is_an_error(placement: str, chunk: int, tmp_path: Path) -> None:
    turn = 'Weather.</think>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": '
    result, backend = run([turn, FOLLOW], placement, chunk, tmp_path)
    assert result.tool_calls == [] and "ended inside a <tool_call>" in backend.observations[0]


# -- rule 5: edge robustness ------------------------------------------------------------


@both
@chunked
def test_prose_that_mentions_the_tag_is_not_swallowed(
    placement: str, chunk: int, tmp_path: Path
) -> None:
    answer = "Write <tool_call> then the JSON, then </tool_call>. The sum is 3."
    result, _ = run(["Explain.</think>\n\n" + answer], placement, chunk, tmp_path)
    assert result.ok and result.answer == "Write <tool_call> then the JSON, then . The sum is 3."


@both
@chunked
@pytest.mark.parametrize("in_thinking", [True, False])
def test_a_string_argument_may_contain_the_close_tag(
    in_thinking: bool, placement: str, chunk: int, tmp_path: Path
) -> None:
    text = 'print("</tool_call>") and <tool_call>'
    call = block("echo", text=text)
    turn = ("Echo it.\n" + call) if in_thinking else ("Echo it.</think>\n" + call)
    result, _ = run([turn, FOLLOW], placement, chunk, tmp_path)
    if in_thinking and placement == "template":
        assert result.tool_calls == []  # fed back (rule 2), never cut at the inner tag
    else:
        assert ran(result) == [("echo", {"text": text})]  # the whole string, tags included


@both
@chunked
def test_an_unterminated_string_is_cut_at_its_first_close_tag(
    placement: str, chunk: int, tmp_path: Path
) -> None:
    turn = (
        'Go.</think>\n<tool_call>\n{"name": "echo", "arguments": {"text": "5" tall"}}\n'
        "</tool_call>\n<tool_response>\ninvented\n</tool_response>"
    )
    result, backend = run([turn, FOLLOW], placement, chunk, tmp_path)
    assert result.ok and result.tool_calls == []
    assert "not valid JSON" in backend.prompts[1] and "invented" not in backend.prompts[1]


@both
@chunked
def test_stray_close_tags_are_not_shown_and_the_first_think_close_ends_thinking(
    placement: str, chunk: int, tmp_path: Path
) -> None:
    turn = "Thinking.</think>\n\nPart one.</tool_call> More thought?</think> Final."
    result, _ = run([turn], placement, chunk, tmp_path)
    assert result.thinking == "Thinking."
    assert result.answer == "Part one. More thought? Final."


# -- peer-style cases -------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    output: str
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    told: str | None = None
    """A fragment of the first observation when the model is told instead of a call run."""
    answer: str | None = None
    """The answer when the output ends the run by itself."""


SF = ("special_function", {"arg1": 1})
SF_CALL = '{"name": "special_function", "arguments": {"arg1": 1}}'
NEAR = "not a format that runs"

PEER_CASES: dict[str, Case] = {
    # llama.cpp (Hermes 2 Pro format, QwQ with thinking forced open)
    "llama.cpp thinking then call": Case(
        f"I'm\nthinking</think>\n<tool_call>{SF_CALL}</tool_call>", [SF]
    ),
    "llama.cpp call": Case(f"</think><tool_call>\n{SF_CALL}\n</tool_call>", [SF]),
    "llama.cpp content then call": Case(
        f"</think>Hello, world!\nWhat's up?<tool_call>\n{SF_CALL}\n</tool_call>", [SF]
    ),
    "llama.cpp two calls": Case(
        f"</think><tool_call>\n{SF_CALL}\n</tool_call>\n"
        '<tool_call>\n{"name": "echo", "arguments": {"text": "print(\'hello\')"}}\n</tool_call>',
        [SF, ("echo", {"text": "print('hello')"})],
    ),
    "llama.cpp two function tags": Case(
        '</think><function=special_function>{"arg1": 1}</function>\n<function=echo>{"text": "x"}</function>',
        told=NEAR,
    ),
    "llama.cpp not a tool call": Case(
        f"</think>This is not a tool call:\n{SF_CALL}",
        answer=f"This is not a tool call:\n{SF_CALL}",
    ),
    "llama.cpp plain": Case(
        "</think>Hello, world!\nWhat's up?", answer="Hello, world!\nWhat's up?"
    ),
    "llama.cpp think tags": Case(
        "<think>I'm\nthinking</think>Hello, world!\nWhat's up?", answer="Hello, world!\nWhat's up?"
    ),
    "llama.cpp fenced empty json": Case(
        "</think>Hello, world!\nWhat's up?\n```json\n{}```",
        answer="Hello, world!\nWhat's up?\n```json\n{}```",
    ),
    "llama.cpp tool_call that is no call": Case("<think><tool_call>nah uhg</tool_call>", answer=""),
    "llama.cpp code with newline": Case(
        '</think><tool_call>\n{"name": "echo", "arguments": {"text": "# a program:\\nprint(\'hey\')"}}\n</tool_call>',
        [("echo", {"text": "# a program:\nprint('hey')"})],
    ),
    # vLLM (Hermes parser on QwQ output, Qwen3 reasoning parser)
    "vllm chinese search": Case(
        "好的，需要搜索。\n</think>\n\n<tool_call>\n"
        '{"name": "internet_search", "arguments": {"question": "5MW燃气轮机设计参数 空气流量"}}\n'
        "</tool_call>\n\n ",
        [("internet_search", {"question": "5MW燃气轮机设计参数 空气流量"})],
    ),
    "vllm no newline": Case(
        '</think><tool_call>{"name": "get_weather", "arguments": {"city": "Dallas", "unit": "fahrenheit"}}</tool_call>',
        [("get_weather", {"city": "Dallas", "unit": "fahrenheit"})],
    ),
    "vllm content around call": Case(
        '</think>Let me check. <tool_call>{"name": "get_weather", "arguments": {"city": "Dallas"}}</tool_call>',
        [("get_weather", {"city": "Dallas"})],
    ),
    "vllm unclosed final call": Case(
        '</think><tool_call>\n{"name": "get_weather", "arguments": {"city": "Dallas"}}',
        [("get_weather", {"city": "Dallas"})],
    ),
    "vllm reasoning only": Case("This is a reasoning section", answer=""),
    "vllm reasoning and content": Case(
        "This is a reasoning section</think>This is the rest", answer="This is the rest"
    ),
    "vllm think open and close": Case(
        "<think>This is a reasoning section</think>This is the rest", answer="This is the rest"
    ),
    "vllm empty answer": Case("Reasoning</think>", answer=""),
    # SGLang (Qwen 2.5 detector)
    "sglang parameters key": Case(
        '</think><tool_call>\n{"name": "get_weather", "parameters": {"city": "Paris"}}\n</tool_call>',
        [("get_weather", {"city": "Paris"})],
    ),
    "sglang normal text then call": Case(
        'Thought.</think>Sure, let me help.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Tokyo"}}\n</tool_call>',
        [("get_weather", {"city": "Tokyo"})],
    ),
    "sglang unknown tool": Case(
        '</think><tool_call>\n{"name": "unknown_tool", "arguments": {"x": 1}}\n</tool_call>',
        told="unknown tool",
    ),
    "sglang malformed json": Case(
        '</think><tool_call>\n{"name": "get_weather", "arguments": {"city": }\n</tool_call>',
        told="not valid JSON",
    ),
    "sglang two calls no separator": Case(
        '</think><tool_call>{"name": "get_weather", "arguments": {"city": "A"}}</tool_call>'
        '<tool_call>{"name": "get_weather", "arguments": {"city": "B"}}</tool_call>',
        [("get_weather", {"city": "A"}), ("get_weather", {"city": "B"})],
    ),
    # Qwen-Agent (nous parser, json5)
    "qwen-agent json5": Case(
        "</think><tool_call>\n{'name': 'get_weather', 'arguments': {'city': 'Rome',}}\n</tool_call>",
        [("get_weather", {"city": "Rome"})],
    ),
    "qwen-agent incomplete call": Case(
        '</think><tool_call>\n{"name": "get_weather", "arguments": {"city": "Ro',
        told="ended inside a <tool_call>",
    ),
    "qwen-agent two think closes": Case(
        "Reasoning.</think>\nMore.</think>\n\nAnswer.", answer="More.\n\nAnswer."
    ),
    "qwen-agent tool_response invented": Case(
        '</think><tool_call>\n{"name": "echo", "arguments": {"text": "a"}}\n</tool_call>\n'
        "<tool_response>\nmade up\n</tool_response>",
        [("echo", {"text": "a"})],
    ),
}


@both
@pytest.mark.parametrize("chunk", [1, 3, 100_000])
@pytest.mark.parametrize("name", sorted(PEER_CASES))
def test_peer_style_cases(name: str, placement: str, chunk: int, tmp_path: Path) -> None:
    case = PEER_CASES[name]
    result, backend = run([case.output, FOLLOW], placement, chunk, tmp_path)
    assert result.finish_reason == "completed", result.detail
    if case.answer is not None:
        assert result.answer == case.answer and result.tool_calls == []
        assert backend.remaining == 1  # the output ended the run by itself
        return
    assert result.answer == "All done."
    assert ran(result) == case.calls
    if case.told is not None:
        assert case.told in backend.observations[0]
