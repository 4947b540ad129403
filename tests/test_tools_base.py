"""@tool: schema from hints and docstring, validation before the call, sync and async."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest

from tools.base import Tool, ToolArgumentError, ToolContext, tool
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
