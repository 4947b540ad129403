"""Resolve tool specifications (built-in names, ``Tool`` objects, plain functions) to tools.

Built-ins are named here and imported lazily, so that naming ``calculator`` does not import
httpx, and ``import tools`` stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from tools.base import Tool, make_tool
from tools.errors import ToolError
from tools.errors import UnknownToolError as UnknownToolError  # re-exported

BUILTINS: dict[str, str] = {
    "calculator": "tools.calculator:calculator",
    "python": "tools.python_tool:python",
    "web_search": "tools.web_search:web_search",
    "fetch_url": "tools.fetch:fetch_url",
    "read_file": "tools.files:read_file",
    "write_file": "tools.files:write_file",
    "list_dir": "tools.files:list_dir",
}
"""Built-in tool names and where each lives (``module:attribute``, a :class:`Tool`)."""

ToolSpec = str | Tool | Callable[..., Any]


def builtin(name: str) -> Tool:
    """Load the built-in tool called ``name``.

    Raises:
        UnknownToolError: ``name`` is not a built-in; the message lists the built-ins.
    """
    try:
        target = BUILTINS[name]
    except KeyError:
        raise UnknownToolError(
            f"unknown tool {name!r}; built-in tools are: {', '.join(sorted(BUILTINS))}"
        ) from None
    module_name, attr = target.split(":")
    loaded = getattr(importlib.import_module(module_name), attr)
    if not isinstance(loaded, Tool):
        raise TypeError(f"{target} is not a Tool")
    return loaded


class ToolRegistry:
    """The tools of one agent, by name, in declaration order."""

    def __init__(self, specs: Iterable[ToolSpec] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: ToolSpec) -> Tool:
        """Add a built-in name, a :class:`Tool`, or a typed function (wrapped with ``@tool``).

        Raises:
            UnknownToolError: an unknown built-in name.
            ValueError: two tools with the same name.
        """
        if isinstance(spec, str):
            item = builtin(spec)
        elif isinstance(spec, Tool):
            item = spec
        elif callable(spec):
            item = make_tool(spec)
        else:
            raise TypeError(f"a tool must be a name, a Tool or a function, got {spec!r}")
        if item.name in self._tools and self._tools[item.name] is not item:
            raise ValueError(f"two tools are named {item.name!r}; rename one")
        self._tools[item.name] = item
        return item

    def get(self, name: str) -> Tool:
        """The tool called ``name``.

        Raises:
            UnknownToolError: with the list of valid names, for the model to correct itself.
        """
        try:
            return self._tools[name]
        except KeyError:
            valid = ", ".join(self._tools) or "(none: no tools are available in this run)"
            raise UnknownToolError(f"unknown tool {name!r}; valid tools are: {valid}") from None

    def names(self) -> list[str]:
        return list(self._tools)

    def specs(self) -> list[dict[str, Any]]:
        """Declarations for the chat template, in order."""
        return [t.spec() for t in self._tools.values()]

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools


def _numbers(
    tool: str, *allowed: str, flags: tuple[str, ...] = ()
) -> Callable[[Mapping[str, Any]], None]:
    """A check for settings that are non-negative numbers among ``allowed``, or booleans
    among ``flags``."""

    def check(settings: Mapping[str, Any]) -> None:
        unknown = sorted(set(settings) - set(allowed) - set(flags))
        if unknown:
            known = ", ".join(sorted((*allowed, *flags))) or "none"
            raise ToolError(f"unknown {tool} settings {unknown}; known: {known}")
        for name, value in settings.items():
            if name in flags:
                if not isinstance(value, bool):
                    raise ToolError(f"{tool} setting {name} must be true or false, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ToolError(f"{tool} setting {name} must be a number >= 0, got {value!r}")

    return check


def _python(settings: Mapping[str, Any]) -> None:
    from tools.python_tool import PythonLimits

    PythonLimits.from_settings(settings)


def _fetch(settings: Mapping[str, Any]) -> None:
    from tools.fetch import FetchSettings

    FetchSettings.from_settings(settings)


SETTINGS_CHECKS: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "calculator": _numbers("calculator"),
    "python": _python,
    "web_search": _numbers(
        "web_search", "retries", "backoff_seconds", "timeout", "max_query_chars"
    ),
    "fetch_url": _fetch,
    "read_file": _numbers("read_file", "max_read_bytes", flags=("allow_hard_links",)),
    "write_file": _numbers(
        "write_file", "max_write_bytes", flags=("allow_sensitive", "allow_hard_links")
    ),
    "list_dir": _numbers("list_dir", "max_entries"),
}
"""How each built-in validates its ``tool_settings`` (the same checks the tool makes when it
runs, so that a typo is caught when the agent is made instead of at the first call)."""


def check_tool_settings(
    settings: Mapping[str, Mapping[str, Any]], tool_names: Iterable[str] = ()
) -> None:
    """Check per-tool settings: each key names a built-in (or one of ``tool_names``, whose
    settings are the tool's own business) and a built-in's settings are ones it knows.

    Raises:
        ToolError: the first problem, naming the tool and the setting.
    """
    others = set(tool_names)
    for name, values in settings.items():
        check = SETTINGS_CHECKS.get(name)
        if check is None:
            if name in others:
                continue
            raise ToolError(
                f"settings for {name!r}, which is not a tool here; built-in tools are: "
                f"{', '.join(sorted(BUILTINS))}"
            )
        if not isinstance(values, Mapping):
            raise ToolError(f"the settings of {name!r} must be a table of names and values")
        check(values)
