"""@tool: schema from hints and docstring, validation before the call, sync and async."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
from pathlib import Path
from typing import Any, Literal, Optional

import pydantic
import pytest

from agent.events import ToolCall
from agent.executor import PreparedCall, ToolExecutor, format_output
from tools.base import Tool, ToolArgumentError, ToolContext, make_tool, tool
from tools.output import cap, neutralise
from tools.registry import BUILTINS, ToolRegistry, UnknownToolError


@tool
def search(query: str, max_results: int = 5, mode: Literal["fast", "deep"] = "fast") -> list[str]:
    """Search the notes.

    Longer explanation.

    Args:
        query: What to look for.
        max_results: How many results to return.
        mode: Speed or depth.
    """
    return [query] * max_results


def test_schema_is_derived_from_hints_and_docstring() -> None:
    assert isinstance(search, Tool)
    assert search.name == "search"
    assert search.description == "Search the notes.\n\nLonger explanation."
    params = search.parameters
    assert params["type"] == "object" and params["additionalProperties"] is False
    assert params["required"] == ["query"]
    assert params["properties"]["query"] == {"type": "string", "description": "What to look for."}
    assert params["properties"]["max_results"]["default"] == 5
    assert params["properties"]["mode"]["enum"] == ["fast", "deep"]
    assert "title" not in str(params)


def test_validation_errors_name_the_problem() -> None:
    with pytest.raises(ToolArgumentError, match="'query' is a required property"):
        search.validate({})
    with pytest.raises(ToolArgumentError, match="max_results: 'x' is not of type 'integer'"):
        search.validate({"query": "a", "max_results": "x"})
    with pytest.raises(ToolArgumentError, match="'nope' is not one of"):
        search.validate({"query": "a", "mode": "nope"})
    with pytest.raises(ToolArgumentError, match="must be a JSON object"):
        search.validate(["a"])
    assert search.validate({"query": "a"}) == {"query": "a"}


def test_context_parameter_is_injected_not_declared(tmp_path: object) -> None:
    @tool(risk="dangerous", timeout=3)
    def where(ctx: ToolContext) -> str:
        """Say the workspace."""
        return str(ctx.workspace)

    assert where.parameters["properties"] == {} and where.risk == "dangerous" and where.timeout == 3
    from pathlib import Path

    assert where.invoke({}, ToolContext(workspace=Path("/w"))) == "/w"


def test_async_tools_run() -> None:
    @tool
    async def later(x: int) -> int:
        """Double later.

        Args:
            x: A number.
        """
        await asyncio.sleep(0)
        return 2 * x

    assert later.invoke({"x": 4}) == 8


def test_untyped_parameters_are_refused() -> None:
    def bad(x):  # type: ignore[no-untyped-def]
        """No hints."""

    with pytest.raises(TypeError, match="needs a type hint"):
        tool(bad)


def test_registry_resolves_builtins_functions_and_reports_unknown_names() -> None:
    def shout(text: str) -> str:
        """Shout.

        Args:
            text: Text.
        """
        return text.upper()

    registry = ToolRegistry(["calculator", shout, search])
    assert registry.names() == ["calculator", "shout", "search"]
    with pytest.raises(UnknownToolError, match="valid tools are: calculator, shout, search"):
        registry.get("nope")
    with pytest.raises(UnknownToolError, match="built-in tools are"):
        ToolRegistry(["nope"])
    with pytest.raises(ValueError, match="two tools are named"):
        ToolRegistry([search, tool(name="search")(shout)])


def test_every_builtin_loads_with_a_description() -> None:
    registry = ToolRegistry(list(BUILTINS))
    for t in registry:
        assert t.description and t.parameters["type"] == "object"
    risks = {t.name: t.risk for t in registry}
    assert risks == {
        "calculator": "safe",
        "python": "dangerous",
        "web_search": "safe",
        "fetch_url": "dangerous",
        "read_file": "safe",
        "write_file": "dangerous",
        "list_dir": "safe",
    }


@pytest.mark.parametrize(
    "text",
    [
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
        "</tool_response>",
        "<tool_call>",
        "</tool_call>",
        "<think>",
        "</think>",
        "<TOOL_CALL>",
        "< /think >",
        "<| im_start |>",
        "<tools>",
    ],
)
def test_neutralise_defuses_every_special_tag(text: str) -> None:
    out = neutralise(f"a{text}b")
    assert text not in out and "&lt;" in out


def test_neutralise_leaves_ordinary_text() -> None:
    text = "if a < b and c > d: <div>x</div> <thinking>"
    assert neutralise(text) == text


def test_cap_marks_what_was_cut() -> None:
    assert cap("abc", 5) == "abc"
    assert cap("abcdef", 2) == "ab\n[… output truncated: 4 of 6 characters cut]"


class Point(pydantic.BaseModel):
    x: int
    y: int = 0


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Even(pydantic.BaseModel):
    n: int

    @pydantic.field_validator("n")
    @classmethod
    def _even(cls, n: int) -> int:
        if n % 2:
            raise ValueError("n must be even")
        return n


@dataclasses.dataclass
class Row:
    day: datetime.date
    point: Point


@tool
def describe(
    p: Point,
    color: Color,
    when: datetime.date,
    path: list[Point],
    until: datetime.date | None = None,
    tags: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Describe typed arguments.

    Args:
        p: A point.
        color: A color.
        when: A day.
        path: Points.
        until: Optional day.
        tags: Labels.
    """
    assert isinstance(p, Point) and isinstance(color, Color) and isinstance(when, datetime.date)
    assert all(isinstance(q, Point) for q in path) and isinstance(tags, tuple)
    assert until is None or isinstance(until, datetime.date)
    return {"sum": p.x + p.y, "color": color.name, "weekday": when.isoweekday(), "n": len(path)}


def test_arguments_are_converted_to_the_annotated_types() -> None:
    args = {
        "p": {"x": 1, "y": 2},
        "color": "blue",
        "when": "2024-01-01",
        "path": [{"x": 3}, {"x": 4, "y": 5}],
        "until": "2024-02-01",
        "tags": ["a"],
    }
    assert describe.validate(args) is args
    assert describe.invoke(args) == {"sum": 3, "color": "BLUE", "weekday": 1, "n": 2}
    minimal = {"p": {"x": 1}, "color": "red", "when": "2024-01-02", "path": []}
    assert describe.invoke(describe.validate(minimal))["weekday"] == 2


def test_only_given_arguments_are_passed_and_plain_types_are_unchanged() -> None:
    default = ["the function's own default"]

    @tool
    def echo(
        n: int, items: list[int], mode: Literal["a", "b"] = "a", extra: list[str] = default
    ) -> dict[str, Any]:
        """Echo.

        Args:
            n: A number.
            items: Numbers.
            mode: A mode.
            extra: Strings.
        """
        return {"n": n, "items": items, "mode": mode, "extra_is_default": extra is default}

    assert echo.invoke({"n": 1, "items": [1, 2]}) == {
        "n": 1,
        "items": [1, 2],
        "mode": "a",
        "extra_is_default": True,
    }
    assert echo.invoke({"n": 1, "items": [], "mode": "b"})["mode"] == "b"
    assert search.invoke({"query": "q", "max_results": 2}) == ["q", "q"]
    # jsonschema still decides what is a valid integer: no "5" -> 5 coercion.
    with pytest.raises(ToolArgumentError, match="n: '5' is not of type 'integer'"):
        echo.validate({"n": "5", "items": []})


def test_conversion_errors_are_argument_errors() -> None:
    bad_date = {"p": {"x": 1}, "color": "red", "when": "2024-13-45", "path": []}
    with pytest.raises(ToolArgumentError, match=r"invalid arguments for 'describe': when: .*date"):
        describe.validate(bad_date)
    with pytest.raises(ToolArgumentError, match="got '2024-13-45'"):
        describe.invoke(bad_date)

    @tool
    def halve(e: Even) -> int:
        """Halve.

        Args:
            e: An even number.
        """
        return e.n // 2

    with pytest.raises(ToolArgumentError, match="e/n: Value error, n must be even"):
        halve.validate({"e": {"n": 3}})
    assert halve.invoke({"e": {"n": 4}}) == 2


def test_conversion_errors_reach_the_model_as_validation_results() -> None:
    from tools.registry import ToolRegistry

    executor = ToolExecutor(ToolRegistry([describe]), ToolContext())
    try:
        call = ToolCall(
            id="c1",
            name="describe",
            arguments={"p": {"x": 1}, "color": "red", "when": "2024-02-30", "path": []},
            placement="answer",
        )
        result = executor.prepare(call)
        assert not isinstance(result, PreparedCall)
        assert result.error_type == "validation" and "when:" in (result.error or "")
        good = ToolCall(
            id="c2",
            name="describe",
            arguments={**call.arguments, "when": "2024-02-29"},
            placement="answer",
        )
        prepared = executor.prepare(good)
        assert isinstance(prepared, PreparedCall)
        (done,) = executor.run([prepared])
        assert (
            done.error is None and done.output == '{"sum": 1, "color": "RED", "weekday": 4, "n": 0}'
        )
    finally:
        executor.shutdown()


def test_optional_context_parameter_is_injected_not_declared() -> None:
    @tool
    def where(ctx: ToolContext | None = None) -> str:
        """Say the workspace."""
        return str(ctx.workspace) if ctx else "none"

    @tool
    def where_too(x: int, ctx: Optional[ToolContext] = None) -> str:  # noqa: UP045
        """Say the workspace.

        Args:
            x: Ignored.
        """
        return str(ctx.workspace) if ctx else "none"

    for t in (where, where_too):
        assert "ctx" not in t.parameters["properties"] and t.context_param == "ctx"
    assert where.invoke({}, ToolContext(workspace=Path("/w"))) == "/w"
    assert where_too.invoke({"x": 1}, ToolContext(workspace=Path("/v"))) == "/v"


def test_a_tool_is_callable_as_the_plain_function() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add.

        Args:
            a: One.
            b: Two.
        """
        return a + b

    @tool
    def where(ctx: ToolContext | None = None) -> str:
        """Say the workspace."""
        return "none" if ctx is None else str(ctx.workspace)

    @tool
    async def later(x: int) -> int:
        """Later.

        Args:
            x: A number.
        """
        return x

    assert add(1, 2) == 3 and add(b=2, a=1) == 3
    assert add("a", "b") == "ab"  # no validation, no conversion
    assert where() == "none"  # no context injection
    assert asyncio.run(later(7)) == 7
    p = Point(x=1)
    assert describe(p, Color.RED, datetime.date(2024, 1, 1), [p]) == {
        "sum": 1,
        "color": "RED",
        "weekday": 1,
        "n": 1,
    }


def test_dataclasses_and_models_are_rendered_as_json() -> None:
    @tool
    def point() -> Point:
        """A point."""
        return Point(x=1, y=2)

    @tool
    def rows() -> dict[str, list[Row]]:
        """Rows."""
        return {"rows": [Row(datetime.date(2024, 1, 2), Point(x=3))]}

    @tool
    def plain() -> list[Any]:
        """Plain."""
        return [1, "a", {"b": None}]

    @tool
    def text() -> str:
        """Text."""
        return "<b>as it is</b>"

    assert point.invoke({}) == {"x": 1, "y": 2}
    assert format_output(point.invoke({})) == '{"x": 1, "y": 2}'
    assert format_output(rows.invoke({})) == (
        '{"rows": [{"day": "2024-01-02", "point": {"x": 3, "y": 0}}]}'
    )
    assert plain.invoke({}) == [1, "a", {"b": None}]
    assert text.invoke({}) == "<b>as it is</b>"
    assert isinstance(point(), Point)  # calling the tool directly returns the model itself


def test_local_classes_resolve_where_tool_is_applied() -> None:
    class Inner(pydantic.BaseModel):
        v: int

    @tool
    def use(p: Inner) -> int:
        """Use a local class (annotations are strings in this module).

        Args:
            p: A local model.
        """
        return p.v

    assert use.parameters["properties"]["p"] == {
        "$ref": "#/$defs/Inner",
        "description": "A local model.",
    }
    assert use.invoke({"p": {"v": 5}}) == 5


def test_unresolvable_hints_say_what_to_do() -> None:
    class Inner(pydantic.BaseModel):
        v: int

    def f(p: Inner) -> None:
        """Inner is neither in the closure nor in the module."""

    with pytest.raises(
        TypeError,
        match=r"tool 'f': cannot resolve the type hint 'Inner' of "
        r"parameter 'p' \(name 'Inner' is not defined\); define that type at module",
    ):
        make_tool(f)

    def g(p: Inner) -> Inner:
        """Inner is in the closure."""
        return Inner(v=p.v + 1)

    assert make_tool(g).invoke({"p": {"v": 1}}) == {"v": 2}

    def h(p: int) -> Inner:  # type: ignore[empty-body]
        """Only the return annotation is local: it is not needed."""

    assert make_tool(h).parameters["properties"] == {"p": {"type": "integer"}}


def test_annotated_field_constraints_reach_the_schema_and_validation() -> None:
    from typing import Annotated

    from pydantic import Field

    @tool
    def repeat(
        text: Annotated[str, Field(min_length=1)], times: Annotated[int, Field(ge=1)]
    ) -> str:
        """Repeat text.

        Args:
            text: What to repeat.
            times: How often.
        """
        return text * times

    properties = repeat.parameters["properties"]
    assert properties["text"]["minLength"] == 1 and properties["times"]["minimum"] == 1
    assert properties["text"]["description"] == "What to repeat."
    with pytest.raises(ToolArgumentError, match="times"):
        repeat.validate({"text": "a", "times": 0})
    assert repeat.invoke({"text": "ab", "times": 2}) == "abab"
