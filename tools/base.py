"""The tool protocol: a typed Python function becomes a tool the model can call.

``@tool`` reads a function's signature and Google-style docstring and derives the tool's name,
description and JSON Schema (through pydantic; never written by hand). Arguments the model
sends are validated against that schema (jsonschema) before the function runs, then converted
to the annotated types by the pydantic model the schema came from (a ``BaseModel`` parameter
receives an instance, an ``Enum`` a member, a ``date`` a date); a failure of either step is a
:class:`ToolArgumentError` whose message the model can read and act on.

A parameter annotated with :class:`ToolContext` (or ``ToolContext | None``) is not part of the
schema: the executor injects the run's context there (workspace folder, cancellation, limits).

Contract of :meth:`Tool.invoke`: returns the function's result (a string as it is; any other
value JSON-compatible, dataclass and pydantic instances turned into plain data) or raises; sync
and async functions are both accepted. A :class:`Tool` is also callable as the plain function.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import threading
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
    overload,
)

from tools._hints import caller_namespace, closure_namespace, resolve_hint
from tools.capabilities import Capability, check_capabilities
from tools.errors import ToolArgumentError as ToolArgumentError  # re-exported
from tools.errors import ToolCancelledError as ToolCancelledError
from tools.errors import ToolError as ToolError

if TYPE_CHECKING:
    import pydantic

Risk = Literal["safe", "dangerous"]
"""``"dangerous"`` tools (side effects, code, network) go through the approval policy."""

F = TypeVar("F", bound=Callable[..., Any])


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
    """A callable the model may use, with the schema it is told about.

    Calling the tool itself (``add(1, 2)``) calls the underlying function with exactly the
    arguments given: no validation, no conversion, no context injection, and an async function
    returns its coroutine. So a decorated function still works as a plain function in your own
    code and tests; the agent goes through :meth:`validate` and :meth:`invoke` instead.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    """JSON Schema of the arguments object (``type: object``)."""
    fn: Callable[..., Any]
    risk: Risk = "safe"
    capabilities: Iterable[Capability] | None = None
    """What the tool does with data (:mod:`tools.capabilities`); ``None``: the default for
    ``risk``. Normalised to a ``frozenset`` when the tool is made (unknown names raise)."""
    timeout: float | None = 60.0
    """Seconds the executor waits for a result before reporting a timeout (``None``: no limit)."""
    context_param: str | None = None
    """Name of the parameter that receives the :class:`ToolContext`, if any."""
    args_model: type[pydantic.BaseModel] | None = field(default=None, repr=False, compare=False)
    """The pydantic model ``parameters`` came from (set by :func:`tool`). When set, arguments
    are converted through it before the call; when ``None`` (tools built by hand, such as MCP
    tools) they are passed as they are."""
    describe_for_approval: Callable[[Mapping[str, Any], ToolContext], str | None] | None = field(
        default=None, repr=False, compare=False
    )
    """Says what a person approving a call should know beyond its arguments (``write_file``:
    the path is sensitive); ``None`` or a ``None`` result: nothing."""
    _validator: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.capabilities = check_capabilities(self.capabilities, self.risk)

    def can(self, capability: Capability) -> bool:
        """Whether the tool declares ``capability`` (or has it by default for its risk)."""
        return capability in check_capabilities(self.capabilities, self.risk)

    def approval_note(self, arguments: Mapping[str, Any], context: ToolContext) -> str | None:
        """:attr:`describe_for_approval` for this call; a failure of it is itself the note."""
        if self.describe_for_approval is None:
            return None
        try:
            return self.describe_for_approval(arguments, context)
        except Exception as exc:  # the person should hear that the check itself failed
            return f"the tool could not describe this call ({type(exc).__name__}: {exc})"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function as it is (see the class docstring)."""
        return self.fn(*args, **kwargs)

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

        The JSON Schema check (jsonschema) comes first, then the conversion :meth:`convert`
        would do (so that, for instance, an impossible date is refused here too). The message
        lists every problem with its location, in the model's terms. The arguments are
        returned as given, not converted.
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
            raise self._argument_error(
                [f"{_where(error.path)}: {error.message}" for error in errors[:10]]
            )
        self.convert(arguments)
        return arguments

    def convert(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments for the function: ``arguments`` converted to the annotated types.

        Only the arguments given are returned (the function's own defaults apply to the rest).
        Conversion goes through :attr:`args_model` in pydantic's lax mode; it relies on
        :meth:`validate` having refused what the JSON Schema does not allow (``"5"`` for an
        integer). Without an :attr:`args_model` the arguments are returned as they are.

        Raises:
            ToolArgumentError: a value cannot be converted (an impossible date, a model's own
                validator refusing it); the message says where and why, as :meth:`validate`.
        """
        if self.args_model is None:
            return dict(arguments)
        import pydantic

        try:
            converted = self.args_model.model_validate(dict(arguments))
        except pydantic.ValidationError as exc:
            raise self._argument_error(
                [
                    f"{_where(e['loc'])}: {e['msg']} (got {_short(repr(e.get('input')), 80)})"
                    for e in exc.errors(include_url=False)[:10]
                ]
            ) from None
        except Exception as exc:  # a user validator's bug must stay an observation
            raise self._argument_error(
                [f"(arguments): could not be converted: {type(exc).__name__}: {exc}"]
            ) from exc
        given = converted.model_fields_set
        return {name: value for name, value in converted if name in given}

    def invoke(self, arguments: Mapping[str, Any], context: ToolContext | None = None) -> Any:
        """Run the tool on already-validated arguments, blocking; async tools get a loop.

        The arguments are converted first (:meth:`convert`, which may raise
        :class:`ToolArgumentError`); the result comes back through :func:`jsonable`.
        """
        kwargs = self.convert(arguments)
        if self.context_param is not None:
            kwargs[self.context_param] = context if context is not None else ToolContext()
        result = self.fn(**kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        return jsonable(result)

    def _argument_error(self, problems: list[str]) -> ToolArgumentError:
        expected = json.dumps(self.parameters.get("properties", {}), ensure_ascii=False)
        return ToolArgumentError(
            f"invalid arguments for {self.name!r}: "
            + "; ".join(problems)
            + f". Expected properties: {_short(expected, 600)}"
        )


def jsonable(value: Any) -> Any:
    """``value`` ready to be shown as JSON: dataclass and pydantic instances become plain data.

    Strings, and values holding no dataclass or pydantic instance (looked for in lists,
    tuples, sets and dict values, at any depth), are returned as they are. Otherwise the whole
    value goes through pydantic's ``to_jsonable_python`` (dates become ISO strings, unknown
    objects their ``repr``); should that fail (a cycle), the value is returned as it is.
    """
    if isinstance(value, str) or not _holds_model(value):
        return value
    from pydantic_core import to_jsonable_python

    try:
        return to_jsonable_python(value, fallback=repr)
    except (TypeError, ValueError):
        return value


def _holds_model(value: Any) -> bool:
    import pydantic

    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        if isinstance(item, pydantic.BaseModel) or (
            dataclasses.is_dataclass(item) and not isinstance(item, type)
        ):
            return True
        if isinstance(item, list | tuple | set | frozenset | dict) and id(item) not in seen:
            seen.add(id(item))
            stack.extend(item.values() if isinstance(item, dict) else item)
    return False


def _where(path: Any) -> str:
    return "/".join(str(p) for p in path) or "(arguments)"


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
    capabilities: Iterable[Capability] | None = None,
    timeout: float | None = 60.0,
) -> Callable[[F], Tool]: ...


def tool(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    risk: Risk = "safe",
    capabilities: Iterable[Capability] | None = None,
    timeout: float | None = 60.0,
) -> Tool | Callable[[F], Tool]:
    """Turn a typed function with a Google-style docstring into a :class:`Tool`.

    Usable bare (``@tool``) or with options (``@tool(risk="dangerous", timeout=30)``).
    ``capabilities`` declares what the tool does with data (``{"reads_private"}``,
    ``{"sends_out", "untrusted_content"}`` …, see :mod:`tools.capabilities`); left out, a
    safe tool declares none and a dangerous one ``{"sends_out"}``.
    Every parameter needs a type hint; its ``Args:`` entry becomes its description. Hints are
    resolved in the function's module, closure and the scope that applies ``@tool`` (so a
    class defined in the same function works, even with ``from __future__ import
    annotations``).

    Raises:
        TypeError: a parameter has no type hint, a hint that cannot be resolved, or a type
            pydantic cannot describe.
    """
    namespace = caller_namespace()

    def wrap(f: F) -> Tool:
        return make_tool(
            f,
            name=name,
            description=description,
            risk=risk,
            capabilities=capabilities,
            timeout=timeout,
            namespace=namespace,
        )

    return wrap(fn) if fn is not None else wrap


def make_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    risk: Risk = "safe",
    capabilities: Iterable[Capability] | None = None,
    timeout: float | None = 60.0,
    namespace: Mapping[str, Any] | None = None,
) -> Tool:
    """The function behind :func:`tool`, for building tools programmatically.

    ``namespace`` adds names for resolving string type hints (the function's closure and
    module are always used); see :func:`tool` for what raises (and ``ValueError`` for an
    unknown capability).
    """
    import docstring_parser
    import pydantic

    tool_name = name or fn.__name__
    doc = docstring_parser.parse(inspect.getdoc(fn) or "")
    arg_docs = {p.arg_name: (p.description or "").strip() for p in doc.params}
    summary = "\n\n".join(x for x in (doc.short_description, doc.long_description) if x)
    localns = {**(namespace or {}), **closure_namespace(fn)}
    fields: dict[str, Any] = {}
    context_param: str | None = None
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {fn.__name__!r}: *args and **kwargs cannot be described")
        if param.annotation is param.empty:
            raise TypeError(f"tool {fn.__name__!r}: parameter {param.name!r} needs a type hint")
        hint = resolve_hint(fn, tool_name, param.name, param.annotation, localns)
        if _is_context_hint(hint):
            context_param = param.name
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (
            hint,
            pydantic.Field(default, description=arg_docs.get(param.name) or None),
        )
    model = pydantic.create_model(
        f"{fn.__name__}_args", __config__=pydantic.ConfigDict(extra="forbid"), **fields
    )
    schema = _clean_schema(model.model_json_schema())
    return Tool(
        name=tool_name,
        description=(description or summary or fn.__name__).strip(),
        parameters=schema,
        fn=fn,
        risk=risk,
        capabilities=capabilities,
        timeout=timeout,
        context_param=context_param,
        args_model=model,
    )


def _is_context_hint(hint: Any) -> bool:
    """``ToolContext``, ``ToolContext | None`` or ``Optional[ToolContext]``."""
    if hint is ToolContext:
        return True
    if get_origin(hint) in (Union, types.UnionType):
        return [a for a in get_args(hint) if a is not type(None)] == [ToolContext]
    return False


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
