"""The tool protocol: a typed Python function becomes a tool the model can call.

``@tool`` reads a function's signature and Google-style docstring and derives the tool's name,
description and JSON Schema (through pydantic; never written by hand). Arguments the model
sends are validated against that schema (jsonschema) before the function runs; a validation
failure is a :class:`ToolArgumentError` whose message the model can read and act on.

A parameter annotated with :class:`ToolContext` is not part of the schema: the executor
injects the run's context there (workspace folder, cancellation, limits).

Contract of :meth:`Tool.invoke`: returns the function's result (any JSON-serialisable value or
a string) or raises; sync and async functions are both accepted.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_type_hints, overload

Risk = Literal["safe", "dangerous"]
"""``"dangerous"`` tools (side effects, code, network) go through the approval policy."""

F = TypeVar("F", bound=Callable[..., Any])


class ToolError(Exception):
    """A tool failed in a way the model should hear about; the message is shown to the model.

    Tools raise this (or a subclass) for expected failures: a refused path, a timeout, a
    blocked address. Any other exception is reported too, with its type name.
    """


class ToolArgumentError(ToolError):
    """The arguments do not match the tool's schema."""


class ToolCancelledError(ToolError):
    """The run was cancelled while the tool ran."""


@dataclass
class ToolContext:
    """What a running tool may know about its run. Injected, never sent by the model."""

    workspace: Path = field(default_factory=Path.cwd)
    """The only folder file tools may touch (resolved, absolute)."""
    cancel_event: threading.Event = field(default_factory=threading.Event)
    """Set when the run is cancelled; long-running tools poll it and stop."""
    state: dict[str, Any] = field(default_factory=dict)
    """Per-run scratch space for tools (e.g. a sandbox session); dropped at the end of the run."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Per-tool settings by tool name (limits such as ``{"python": {"cpu_seconds": 5}}``)."""

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def settings_for(self, tool_name: str) -> Mapping[str, Any]:
        """This tool's settings (an empty mapping when none were given)."""
        value = self.settings.get(tool_name, {})
        return value if isinstance(value, Mapping) else {}


@dataclass
class Tool:
    """A callable the model may use, with the schema it is told about."""

    name: str
    description: str
    parameters: dict[str, Any]
    """JSON Schema of the arguments object (``type: object``)."""
    fn: Callable[..., Any]
    risk: Risk = "safe"
    timeout: float | None = 60.0
    """Seconds the executor waits for a result before reporting a timeout (``None``: no limit)."""
    context_param: str | None = None
    """Name of the parameter that receives the :class:`ToolContext`, if any."""
    _validator: Any = field(default=None, repr=False, compare=False)

    def spec(self) -> dict[str, Any]:
        """The declaration the chat template puts inside ``<tools>``."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def validate(self, arguments: Any) -> dict[str, Any]:
        """Check ``arguments`` against the schema; return them or raise :class:`ToolArgumentError`.

        The message lists every problem with its location, in the model's terms.
        """
        if not isinstance(arguments, dict):
            raise ToolArgumentError(
                f"arguments for {self.name!r} must be a JSON object, got "
                f"{type(arguments).__name__}: {_short(arguments)}"
            )
        if self._validator is None:
            from jsonschema import Draft202012Validator

            self._validator = Draft202012Validator(self.parameters)
        errors = sorted(self._validator.iter_errors(arguments), key=lambda e: list(e.path))
        if errors:
            lines = []
            for error in errors[:10]:
                where = "/".join(str(p) for p in error.path) or "(arguments)"
                lines.append(f"{where}: {error.message}")
            expected = json.dumps(self.parameters.get("properties", {}), ensure_ascii=False)
            raise ToolArgumentError(
                f"invalid arguments for {self.name!r}: "
                + "; ".join(lines)
                + f". Expected properties: {_short(expected, 600)}"
            )
        return arguments

    def invoke(self, arguments: Mapping[str, Any], context: ToolContext | None = None) -> Any:
        """Run the tool on already-validated arguments, blocking; async tools get a loop."""
        kwargs = dict(arguments)
        if self.context_param is not None:
            kwargs[self.context_param] = context if context is not None else ToolContext()
        result = self.fn(**kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


@overload
def tool(fn: F, /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    risk: Risk = "safe",
    timeout: float | None = 60.0,
) -> Callable[[F], Tool]: ...


def tool(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    risk: Risk = "safe",
    timeout: float | None = 60.0,
) -> Tool | Callable[[F], Tool]:
    """Turn a typed function with a Google-style docstring into a :class:`Tool`.

    Usable bare (``@tool``) or with options (``@tool(risk="dangerous", timeout=30)``).
    Every parameter needs a type hint; its ``Args:`` entry becomes its description.

    Raises:
        TypeError: a parameter has no type hint, or a type pydantic cannot describe.
    """

    def wrap(f: F) -> Tool:
        return make_tool(f, name=name, description=description, risk=risk, timeout=timeout)

    return wrap(fn) if fn is not None else wrap


def make_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    risk: Risk = "safe",
    timeout: float | None = 60.0,
) -> Tool:
    """The function behind :func:`tool`, for building tools programmatically."""
    import docstring_parser
    import pydantic

    doc = docstring_parser.parse(inspect.getdoc(fn) or "")
    arg_docs = {p.arg_name: (p.description or "").strip() for p in doc.params}
    summary = "\n\n".join(x for x in (doc.short_description, doc.long_description) if x)
    hints = get_type_hints(fn)
    fields: dict[str, Any] = {}
    context_param: str | None = None
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {fn.__name__!r}: *args and **kwargs cannot be described")
        if param.name not in hints:
            raise TypeError(f"tool {fn.__name__!r}: parameter {param.name!r} needs a type hint")
        if hints[param.name] is ToolContext:
            context_param = param.name
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (
            hints[param.name],
            pydantic.Field(default, description=arg_docs.get(param.name) or None),
        )
    model = pydantic.create_model(f"{fn.__name__}_args", **fields)
    schema = _clean_schema(model.model_json_schema())
    return Tool(
        name=name or fn.__name__,
        description=(description or summary or fn.__name__).strip(),
        parameters=schema,
        fn=fn,
        risk=risk,
        timeout=timeout,
        context_param=context_param,
    )


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's titles, forbid unknown arguments, keep ``$defs`` if any."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: strip(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))
            }
        if isinstance(node, list):
            return [strip(x) for x in node]
        return node

    cleaned: dict[str, Any] = strip(schema)
    cleaned.setdefault("properties", {})
    cleaned["additionalProperties"] = False
    out: dict[str, Any] = {"type": "object", "properties": cleaned["properties"]}
    if cleaned.get("required"):
        out["required"] = cleaned["required"]
    out["additionalProperties"] = False
    if "$defs" in cleaned:
        out["$defs"] = cleaned["$defs"]
    return out
