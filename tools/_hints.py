"""Resolving the type hints of a tool's parameters where ``@tool`` was applied.

With ``from __future__ import annotations`` a hint is a string, to be evaluated in the
function's module, its closure, and (for a class defined in the same function as the tool)
the local names of the scope that applied ``@tool``. :func:`caller_namespace` captures the
latter; :func:`resolve_hint` evaluates one hint with a message that says what to do when it
cannot be.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, get_type_hints


def caller_namespace() -> dict[str, Any] | None:
    """A copy of the local names of the caller of the function that calls this (the scope
    that applied ``@tool``); ``None`` at module level."""
    frame = inspect.currentframe()
    try:
        caller = frame.f_back.f_back if frame is not None and frame.f_back is not None else None
        if caller is None or caller.f_locals is caller.f_globals:
            return None
        return dict(caller.f_locals)
    finally:
        del frame


def closure_namespace(fn: Callable[..., Any]) -> dict[str, Any]:
    """The free variables ``fn`` closes over that are bound, by name."""
    fn = inspect.unwrap(fn)
    code = getattr(fn, "__code__", None)
    cells = getattr(fn, "__closure__", None) or ()
    found: dict[str, Any] = {}
    for var, cell in zip(code.co_freevars if code is not None else (), cells, strict=False):
        try:
            found[var] = cell.cell_contents
        except ValueError:  # not bound yet
            continue
    return found


def resolve_hint(
    fn: Callable[..., Any], tool_name: str, param: str, annotation: Any, localns: Mapping[str, Any]
) -> Any:
    """One parameter's annotation evaluated as :func:`typing.get_type_hints` would.

    Only parameters are resolved (the return annotation is never needed).

    Raises:
        TypeError: the hint names something that is not defined, or cannot be evaluated.
    """

    def probe() -> None: ...

    probe.__annotations__ = {param: annotation}
    globalns = getattr(inspect.unwrap(fn), "__globals__", {})
    try:
        hints = get_type_hints(
            probe, globalns=globalns, localns=dict(localns) or None, include_extras=True
        )
        return hints[param]
    except NameError as exc:
        raise TypeError(
            f"tool {tool_name!r}: cannot resolve the type hint {annotation!r} of parameter "
            f"{param!r} ({exc}); define that type at module level (or import it there), so "
            "the hint can be evaluated when the tool is built"
        ) from exc
    except Exception as exc:
        raise TypeError(
            f"tool {tool_name!r}: the type hint {annotation!r} of parameter {param!r} cannot "
            f"be evaluated: {type(exc).__name__}: {exc}"
        ) from exc
