"""Rendering a task file's prompt templates within bounds of time and size.

Every prompt of a task file is a Jinja2 template, rendered in a sandbox before any task runs
(:mod:`agent.tasks.planning`). A sandbox alone stops attribute walks, not work: ``range(10**9)``,
``'x' * 10**10``, nested loops, ``'a'|center(10**9)`` or a namespace that doubles a string in
a loop would hang the planner or exhaust memory, and ``include`` raised an uncaught error.
:class:`BoundedEnvironment` closes each of these; every breach is a :class:`TemplateLimitError`
(a :class:`jinja2.TemplateError`) that says which limit and what to do:

* ``include``, ``import``, ``from … import`` and ``extends`` are refused when the template is
  parsed (a prompt is one self-contained template);
* ``range`` yields at most :data:`MAX_RANGE` items;
* ``*`` (repetition), ``**`` and ``%`` (formatting) are checked before they compute: no text
  or list longer than :data:`MAX_CHARS`, no power of more than :data:`MAX_POWER_BITS` bits, no
  field width of :data:`MAX_NUMBER` or more;
* filters and calls get no whole-number argument above :data:`MAX_NUMBER` (widths, counts);
* the rendered text stops at :data:`MAX_CHARS` characters;
* rendering stops after :data:`RENDER_SECONDS` seconds: a tracer that follows only the
  template's own code checks the clock, and the size of the template's variables, on each of
  its lines (loops included), and is removed when rendering ends.
"""

from __future__ import annotations

import functools
import re
import sys
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from jinja2 import StrictUndefined, TemplateError, nodes
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

MAX_CHARS = 1_000_000
"""The longest rendered prompt, and the longest text or list a template may build."""
MAX_RANGE = 10_000
MAX_NUMBER = 1_000_000
"""The largest whole number a filter or call may get, and the widest format field."""
MAX_POWER_BITS = 4096
RENDER_SECONDS = 2.0
_TEMPLATE_FILE = "<template>"
_WIDE_FIELD = re.compile(r"\d{" + str(len(str(MAX_NUMBER))) + ",}")


class TemplateLimitError(TemplateError):
    """A prompt template went past one of the bounds of :mod:`agent.tasks.templates`."""


def _limit(what: str) -> TemplateLimitError:
    return TemplateLimitError(f"{what}; a task prompt must stay small and quick to render")


def _check_argument(value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_NUMBER:
        raise _limit(f"the number {value} is larger than {MAX_NUMBER:,}")
    if isinstance(value, str) and len(value) > MAX_CHARS:
        raise _limit(f"a text of {len(value):,} characters is longer than {MAX_CHARS:,}")


def _check_format(text: str) -> None:
    if _WIDE_FIELD.search(text):
        raise _limit(f"the format {text[:60]!r} has a field {MAX_NUMBER:,} or more wide")


def _guarded(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` refusing oversized whole-number arguments and wide format strings
    (``functools.wraps`` keeps Jinja2's pass-context markers)."""

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        for value in (*args, *kwargs.values()):
            _check_argument(value)
        if function.__name__ == "do_format" and args and isinstance(args[0], str):
            _check_format(args[0])
        return function(*args, **kwargs)

    return guarded


def _sized(value: Any) -> int:
    if isinstance(value, str | list | tuple | dict):
        return len(value)
    return 0


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The environment of task prompts: sandboxed, immutable, strict, and bounded (see the
    module docstring). Render with :meth:`render_bounded`."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
        self.filters = {name: _guarded(f) for name, f in self.filters.items()}
        self.globals["range"] = self._range
        self._deadline = 0.0

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
            keyword = {"Include": "include", "Extends": "extends"}.get(
                type(node).__name__, "import"
            )
            raise TemplateLimitError(
                f"line {node.lineno}: {{% {keyword} %}} is not available in task prompts; "
                "write the text into the prompt, or read it with prompt_file:"
            )
        return tree

    def _range(self, *args: int) -> Iterator[int]:
        span = range(*args)
        if len(span) > MAX_RANGE:
            raise _limit(f"range{args} has {len(span):,} numbers, more than {MAX_RANGE:,}")
        for number in span:
            if time.monotonic() > self._deadline:
                raise _limit(f"rendering took more than {RENDER_SECONDS} s")
            yield number

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for text, count in ((left, right), (right, left)):
                if isinstance(count, int) and _sized(text) * count > MAX_CHARS:
                    raise _limit(
                        f"repeating {type(text).__name__} of {_sized(text):,} {count:,} times "
                        f"makes more than {MAX_CHARS:,}"
                    )
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                bits = max(left.bit_length(), 1) * right
                if bits > MAX_POWER_BITS:
                    raise _limit(f"{left} ** {right} is a number of about {bits:,} bits")
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        for value in (*args, *kwargs.values()):
            _check_argument(value)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Every way to reach ``str.format`` (attribute, item, ``attr`` filter) comes here."""
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and getattr(value, "__name__", "") in ("format", "format_map"):
            _check_format(owner)  # "{:999999999}".format(1)
        return super().wrap_str_format(value)

    def render_bounded(self, text: str, inputs: dict[str, Any]) -> str:
        """``text`` rendered with ``inputs`` within the bounds of the module docstring.

        Raises:
            jinja2.TemplateError: the template is invalid, uses an undefined name, or breaks a
                bound (:class:`TemplateLimitError`).
            Exception: whatever else the template's own code raises (the caller reports it).
        """
        template = self.from_string(text)
        self._deadline = time.monotonic() + RENDER_SECONDS
        parts: list[str] = []
        size = 0
        previous = sys.gettrace()
        sys.settrace(self._trace)
        try:
            for part in template.generate(**inputs):
                size += len(part)
                if size > MAX_CHARS:
                    raise _limit(f"the rendered prompt is longer than {MAX_CHARS:,} characters")
                parts.append(part)
        finally:
            sys.settrace(previous)
        return "".join(parts)

    def _trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        """Follow only the template's code; on each of its lines check time and sizes."""
        if frame.f_code.co_filename != _TEMPLATE_FILE:
            return None
        return self._line

    def _line(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            if time.monotonic() > self._deadline:
                raise _limit(f"rendering took more than {RENDER_SECONDS} s")
            for value in frame.f_locals.values():
                values = _namespace(value).values() if isinstance(value, Namespace) else (value,)
                for item in values:
                    if _sized(item) > MAX_CHARS:
                        raise _limit(f"a value of {_sized(item):,} items or characters was built")
        return self._line


def _namespace(value: Namespace) -> dict[str, Any]:
    """The attributes of a Jinja2 ``namespace()`` (it hides them from ``__dict__``)."""
    attributes: dict[str, Any] = object.__getattribute__(value, "_Namespace__attrs")
    return attributes
