"""Expectation checks on answers: each kind passing and failing, and the math comparison."""

from __future__ import annotations

from typing import Any

import pytest

from agent.events import ToolCallRecord
from agent.tasks.expect import Expect, check, extract_boxed, math_equal, parse_json_answer


def run_check(answer: str, calls: list[ToolCallRecord] | None = None, **expect: Any) -> list[Any]:
    return [(r.kind, r.ok) for r in check(Expect(**expect), answer, calls or [])]


def test_equals_ignores_surrounding_whitespace_only() -> None:
    assert run_check("  Hello, Ada!\n", equals="Hello, Ada!") == [("equals", True)]
    assert run_check("Hello,  Ada!", equals="Hello, Ada!") == [("equals", False)]
    assert run_check("hello, ada!", equals="Hello, Ada!") == [("equals", False)]
    assert run_check("hello, ada!", equals="Hello, Ada!", ignore_case=True) == [("equals", True)]


def test_contains_one_or_all() -> None:
    assert run_check("x = 391", contains="391") == [("contains", True)]
    assert run_check("x = 391", contains=["391", "x"]) == [("contains", True)]
    (result,) = check(Expect(contains=["391", "392", "393"]), "x = 391", [])
    assert not result.ok and result.detail == "not in the answer: '392', '393'"
    assert run_check("DENIED", contains="denied", ignore_case=True) == [("contains", True)]


def test_regex_searches_anywhere() -> None:
    assert run_check("the answer is 42.", regex=r"\b42\b") == [("regex", True)]
    assert run_check("the answer is 420.", regex=r"\b42\b") == [("regex", False)]
    assert run_check("PARIS", regex="paris", ignore_case=True) == [("regex", True)]


def test_json_schema_whole_answer_or_fenced_block() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "required": ["n"],
        "properties": {"n": {"type": "integer"}},
    }
    assert run_check('{"n": 3}', json_schema=schema) == [("json_schema", True)]
    assert run_check('Here:\n```json\n{"n": 3}\n```\nDone.', json_schema=schema) == [
        ("json_schema", True)
    ]
    (wrong,) = check(Expect(json_schema=schema), '{"n": "three"}', [])
    assert not wrong.ok and wrong.detail.startswith("at n: 'three' is not of type 'integer'")
    (missing,) = check(Expect(json_schema=schema), "{}", [])
    assert not missing.ok and "'n' is a required property" in missing.detail
    (prose,) = check(Expect(json_schema=schema), "n is 3", [])
    assert not prose.ok and "not JSON" in prose.detail
    (bad_block,) = check(Expect(json_schema=schema), "```\n{n: 3}\n```", [])
    assert not bad_block.ok and "code block of the answer is not JSON" in bad_block.detail


def test_parse_json_answer() -> None:
    assert parse_json_answer(" [1, 2] ") == [1, 2]
    with pytest.raises(ValueError, match="no ``` code block"):
        parse_json_answer("nothing")


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("so \\boxed{13}.", "13"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed { 7 }", "7"),
        ("\\boxed{unclosed", None),
        ("\\boxed{5} and a broken \\boxed{", "5"),
        ("no box", None),
    ],
)
def test_extract_boxed(text: str, found: str | None) -> None:
    assert extract_boxed(text) == found


@pytest.mark.parametrize(
    ("found", "expected", "same"),
    [
        ("144", "144", True),
        ("144.0", "144", True),
        ("1,000", "1000", True),
        ("$ 12 $", "12", True),
        ("\\dfrac{1}{2}", "\\frac{1}{2}", True),
        ("\\left(1, 2\\right)", "(1,2)", True),
        ("\\text{Paris}", "Paris", True),
        ("5.", "5", True),
        ("143", "144", False),
        ("\\frac{1}{3}", "\\frac{1}{2}", False),
        ("x", "X", False),
    ],
)
def test_math_equal(found: str, expected: str, same: bool) -> None:
    assert math_equal(found, expected) is same


def test_boxed_check_reports_what_it_found() -> None:
    (ok,) = check(Expect(boxed="144"), "12 * 12 = \\boxed{144}", [])
    assert ok.ok and ok.detail == "boxed '144'"
    (wrong,) = check(Expect(boxed="144"), "\\boxed{143}", [])
    assert not wrong.ok and wrong.detail == "boxed '143'"
    (none,) = check(Expect(boxed="144"), "144", [])
    assert not none.ok and "no \\boxed" in none.detail
    assert run_check("\\boxed{X}", boxed="x", ignore_case=True) == [("boxed", True)]


def record(name: str, output: str | None = "ok", error: str | None = None) -> ToolCallRecord:
    return ToolCallRecord("call_1", name, {}, "thinking", output=output, error=error)


def test_tool_called_needs_a_successful_run() -> None:
    calls = [record("calculator"), record("write_file", None, "denied")]
    assert run_check("", calls, tool_called="calculator") == [("tool_called", True)]
    (result,) = check(Expect(tool_called=["calculator", "write_file", "python"]), "", calls)
    assert not result.ok
    assert result.detail == (
        "never ran successfully: write_file, python (called, but with errors: write_file)"
    )


def test_every_check_is_reported_in_order() -> None:
    results = check(
        Expect(
            tool_called="calculator",
            boxed="5",
            json_schema={"type": "number"},
            regex="5",
            contains="5",
            equals="5",
        ),
        "5",
        [],
    )
    assert [(r.kind, r.ok) for r in results] == [
        ("equals", True),
        ("contains", True),
        ("regex", True),
        ("json_schema", True),
        ("boxed", False),
        ("tool_called", False),
    ]
    assert results[0].to_dict() == {
        "kind": "equals",
        "ok": True,
        "expected": "5",
        "detail": "the answer is exactly that",
    }
