"""The sandbox child: runs one piece of model-written code under RestrictedPython, then exits.

Started by :mod:`tools._sandbox_run` as ``python -I -B _sandbox_child.py LIMITS_JSON`` in a
fresh scratch folder, a new session and a clean environment. It is self-contained (standard
library and RestrictedPython only; ``-I`` keeps the project off ``sys.path``).

Protocol (only JSON crosses the boundary, never pickles):

* ``argv[1]``: the limits, ``{"cpu_seconds", "wall_seconds", "memory_bytes",
  "max_file_bytes", "max_output_chars", "max_source_bytes", "kernel"}``; they are applied
  first thing, then the kernel layer (``kernel`` is ``null`` under ``os_sandbox="off"``, else
  ``{"require": [layer, ...]}``), all before stdin is read.
* stdin: ``{"code": "..."}``.
* stdout: exactly one line, ``{"ok": true, "output": ..., "dropped": N, "result": JSON text
  or null}`` or ``{"ok": false, "error": KIND, "message": ..., "output": ..., "dropped": N}``
  with KIND one of ``compile``, ``runtime``, ``memory``, ``cpu``, ``timeout``, ``result``,
  ``output_limit``, ``input``, ``unavailable`` (a required kernel layer could not be
  applied; no code was read or run). Every envelope carries ``"layers"``: those applied.

Layers, outermost first: the parent's process group and wall-clock kill; the kernel layer,
applied here before the code is read (:mod:`tools._sandbox_kernel`: no_new_privs, Landlock,
uid 65534 when started as root, seccomp; what the code may import is imported first, as the
confined process may no longer read the interpreter's files); the resource limits set here
(CPU, address space, file size, processes, core dumps); RestrictedPython's compile
time checks and run-time guards; a small set of builtins; imports limited to pure modules,
each seen through a read-only proxy that refuses private names, denied functions and any
sub-module that is not itself allowed (``statistics.sys`` is refused).
"""

from __future__ import annotations

import builtins as real_builtins
import decimal
import importlib
import json
import operator
import resource
import signal
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

ALLOWED_MODULES = frozenset(
    {
        "math", "statistics", "json", "re", "datetime", "itertools", "collections",
        "collections.abc", "fractions", "decimal", "random", "string", "functools",
        "operator", "time",
    }
)  # fmt: skip
# Functions that read or write attributes by a name given at run time, outside the guards.
DENIED = {
    "operator": frozenset({"attrgetter", "methodcaller"}),
    "functools": frozenset({"update_wrapper", "wraps"}),
    "string": frozenset({"Formatter"}),
}
MAX_FRAMES = 5


class _CpuLimit(BaseException):
    """Raised by the SIGXCPU handler: the soft CPU limit was reached."""


class _WallLimit(BaseException):
    """Raised by the SIGALRM handler: the wall-clock limit was reached."""


def _raise(exc: type[BaseException]) -> Any:
    def handler(signum: int, frame: object) -> None:
        raise exc()

    return handler


def set_limits(limits: dict[str, Any]) -> None:
    """Apply the resource limits to this process (and anything it could start)."""
    cpu = max(1, int(-(-float(limits["cpu_seconds"]) // 1)))  # whole seconds, rounded up
    wanted = [
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, int(limits["memory_bytes"]), int(limits["memory_bytes"])),
        (resource.RLIMIT_FSIZE, int(limits["max_file_bytes"]), int(limits["max_file_bytes"])),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_NPROC, 0, 0),  # no new processes (not enforced for root)
        (resource.RLIMIT_NOFILE, 64, 64),
    ]
    for which, soft, hard in wanted:
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            _, current_hard = resource.getrlimit(which)
            if current_hard != resource.RLIM_INFINITY and current_hard < hard:
                resource.setrlimit(which, (min(soft, current_hard), current_hard))
    signal.signal(signal.SIGXCPU, _raise(_CpuLimit))
    signal.signal(signal.SIGALRM, _raise(_WallLimit))
    signal.setitimer(signal.ITIMER_REAL, float(limits["wall_seconds"]))


class _Output:
    """Printed text shared by every ``print`` in the run, kept up to a character cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def write(self, text: str) -> None:
        text = str(text)
        room = self.cap - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(room, len(text))
        self.dropped += max(0, len(text) - max(room, 0))

    def text(self) -> str:
        return "".join(self.parts)


class _Modules:
    """Imports limited to :data:`ALLOWED_MODULES`, each seen through a read-only proxy."""

    def __init__(self) -> None:
        self.proxies: dict[str, object] = {}

    def proxy(self, module: ModuleType) -> object:
        name = module.__name__
        if name not in self.proxies:
            self.proxies[name] = self._make_proxy(module)
        return self.proxies[name]

    def screen(self, value: Any) -> Any:
        """``value``, except that a real module never reaches the code: an allowed one is
        replaced by its proxy, any other is refused. Applied to every attribute, item and
        iterated value the code obtains, whatever route led there."""
        if isinstance(value, ModuleType):
            if value.__name__ not in ALLOWED_MODULES:
                raise AttributeError(f"the module {value.__name__!r} is not available")
            return self.proxy(value)
        return value

    def _make_proxy(self, module: ModuleType) -> object:
        # The module is held in closures, not in an attribute: nothing reachable names it.
        name, denied = module.__name__, DENIED.get(module.__name__, frozenset())

        def get(self_: object, attr: str) -> Any:
            if attr.startswith("_") or attr in denied:
                raise AttributeError(f"{name}.{attr} is not available in the sandbox")
            value = getattr(module, attr, _MISSING)
            if value is _MISSING:
                # A fresh error, raised outside any except block: the one getattr raises
                # carries the real module in its ``obj`` (and would in ``__context__``).
                raise AttributeError(f"module {name!r} has no attribute {attr!r}")
            if isinstance(value, ModuleType):
                if value.__name__ not in ALLOWED_MODULES:
                    raise AttributeError(f"{name}.{attr} is not available in the sandbox")
                return self.proxy(value)
            return value

        def refuse(self_: object, attr: str, value: object = None) -> None:
            raise AttributeError(f"module {name!r} is read-only in the sandbox")

        namespace = {
            "__slots__": (),
            "__getattr__": get,
            "__setattr__": refuse,
            "__delattr__": refuse,
            "__repr__": lambda self_: f"<module {name!r} (read-only)>",
        }
        return type("module", (), namespace)()

    def import_(
        self, name: str, globals: object = None, locals: object = None, fromlist: Any = (),
        level: int = 0,
    ) -> object:  # fmt: skip
        """The sandbox's ``__import__``."""
        if level != 0:
            raise ImportError("relative imports are not available in the sandbox")
        if name not in ALLOWED_MODULES:
            raise ImportError(
                f"import of {name!r} is not allowed in the sandbox; available modules: "
                + ", ".join(sorted(ALLOWED_MODULES))
            )
        module = importlib.import_module(name)
        if not fromlist and "." in name:  # `import a.b` binds `a`
            module = importlib.import_module(name.partition(".")[0])
        return self.proxy(module)


class _ItemsOnly:
    """What ``_write_`` returns for objects the code did not create: items, not attributes."""

    __slots__ = ("target",)
    target: Any

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "target", target)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.target[key] = value

    def __delitem__(self, key: Any) -> None:
        del self.target[key]

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(
            f"cannot set attributes of {type(self.target).__name__} objects in the sandbox; "
            "only instances of classes defined in the code can be changed"
        )

    def __delattr__(self, name: str) -> None:
        self.__setattr__(name, None)


class _Writes:
    """Attribute writes are allowed on classes the code defined and their instances only.

    Item writes (``d[k] = v``) are allowed everywhere: ``operator.setitem`` could do them
    anyway, and no object reachable from the sandbox has items worth protecting.
    """

    def __init__(self) -> None:
        self.classes: set[type] = set()
        self.writable_types: tuple[type, ...] = (decimal.Context,)  # getcontext().prec = 50

    def make_class(
        self, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kw: Any
    ) -> type:
        """The ``__metaclass__`` RestrictedPython puts on every class statement."""
        cls = type(name, bases, namespace, **kw)
        self.classes.add(cls)
        return cls

    def guard(self, obj: Any) -> Any:
        """RestrictedPython's ``_write_``: the object itself, or a wrapper that refuses."""
        if type(obj) in self.classes or (isinstance(obj, type) and obj in self.classes):
            return obj
        if type(obj) in self.writable_types:
            return obj
        return _ItemsOnly(obj)

    def setattr(self, obj: Any, name: str, value: Any) -> None:
        if not isinstance(name, str) or name.startswith("_"):
            raise AttributeError(f"cannot set the attribute {name!r} in the sandbox")
        setattr(self.guard(obj), name, value)

    def delattr(self, obj: Any, name: str) -> None:
        if not isinstance(name, str) or name.startswith("_"):
            raise AttributeError(f"cannot delete the attribute {name!r} in the sandbox")
        delattr(self.guard(obj), name)


_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow,
    "<<=": operator.ilshift, ">>=": operator.irshift, "&=": operator.iand,
    "|=": operator.ior, "^=": operator.ixor, "@=": operator.imatmul,
}  # fmt: skip
_EXTRA_BUILTINS = (
    "list", "dict", "set", "frozenset", "tuple", "enumerate", "zip", "map", "filter", "sorted",
    "reversed", "sum", "min", "max", "any", "all", "iter", "next", "bin", "format", "bytes",
    "StopAsyncIteration", "RecursionError", "TimeoutError", "NotImplemented",
)  # fmt: skip


_MISSING = object()
_EXCEPTION_ATTRIBUTES = frozenset(
    {"args", "name", "msg", "errno", "strerror", "filename", "filename2", "lineno", "offset",
     "text", "end_lineno", "end_offset", "value", "code", "reason", "start", "end", "encoding",
     "with_traceback", "add_note", "exceptions", "message", "doc", "pos", "colno"}
)  # fmt: skip
"""What code may read of an exception: its plain data. Not ``obj`` (an AttributeError's real
object, a module when raised by a module's getattr) nor anything not listed."""


def _policy(output: _Output) -> dict[str, Any]:
    """The globals of a run: restricted builtins and RestrictedPython's guard functions."""
    from RestrictedPython.Guards import (
        guarded_iter_unpack_sequence,
        guarded_unpack_sequence,
        safe_builtins,
        safer_getattr_raise,
    )
    from RestrictedPython.PrintCollector import PrintCollector

    modules = _Modules()

    def guarded_getattr(obj: object, name: str, *default: object) -> Any:
        if len(default) > 1:
            raise TypeError("getattr expected at most 3 arguments")
        if isinstance(obj, BaseException) and name not in _EXCEPTION_ATTRIBUTES:
            raise AttributeError(f"{type(obj).__name__}.{name} is not available in the sandbox")
        return modules.screen(safer_getattr_raise(obj, name, *default))  # type: ignore[no-untyped-call]

    def guarded_hasattr(obj: object, name: str) -> bool:
        try:
            guarded_getattr(obj, name)
        except AttributeError:
            return False
        return True

    class SharedPrint(PrintCollector):  # type: ignore[misc]
        """Every ``print`` (module level and in functions) writes to the one capped output."""

        def __init__(self, _getattr_: object = None) -> None:
            self._getattr_ = _getattr_

        def write(self, text: str) -> None:
            output.write(text)

        def __call__(self) -> str:
            return output.text()

    writes, printer = _Writes(), SharedPrint(guarded_getattr)
    builtins = dict(safe_builtins)
    builtins.update({name: getattr(real_builtins, name) for name in _EXTRA_BUILTINS})
    builtins.update(
        __import__=modules.import_,
        getattr=guarded_getattr,
        hasattr=guarded_hasattr,
        setattr=writes.setattr,
        delattr=writes.delattr,
    )
    return {
        "__builtins__": builtins,
        "__name__": "__sandbox__",
        "__metaclass__": writes.make_class,
        "_getattr_": guarded_getattr,
        "_getitem_": lambda obj, key: modules.screen(obj[key]),
        "_getiter_": lambda obj: map(modules.screen, iter(obj)),
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": writes.guard,
        "_apply_": lambda fn, *args, **kwargs: fn(*args, **kwargs),
        "_inplacevar_": lambda op, x, y: _INPLACE[op](x, y),
        "_print_": lambda _getattr_=None: printer,
        "_print": printer,
    }


def _short_traceback(exc: BaseException, lines: list[str]) -> str:
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<python>"]
    shown = ["Traceback (most recent call last):"]
    if len(frames) > MAX_FRAMES:
        shown.append(f"  [… {len(frames) - MAX_FRAMES} earlier frames]")
    for frame in frames[-MAX_FRAMES:]:
        where = "<module>" if frame.name == "<module>" else frame.name
        shown.append(f"  line {frame.lineno}, in {where}")
        lineno = frame.lineno or 0
        if 0 < lineno <= len(lines):
            shown.append("    " + lines[lineno - 1].strip()[:200])
    try:
        detail = str(exc)
    except BaseException:
        detail = "(its message could not be shown)"
    shown.append(f"{type(exc).__name__}: {detail[:500]}".rstrip(": "))
    return "\n".join(shown)


def run(code: str, limits: dict[str, Any]) -> dict[str, Any]:
    """Compile and run ``code``; return the envelope described in the module docstring."""
    import ast

    from RestrictedPython.compile import compile_restricted_eval, compile_restricted_exec

    output = _Output(int(limits["max_output_chars"]))

    def failure(kind: str, message: str) -> dict[str, Any]:
        return {"ok": False, "error": kind, "message": message, "output": output.text(),
                "dropped": output.dropped}  # fmt: skip

    try:
        tree = ast.parse(code, "<python>", "exec")
    except SyntaxError as exc:
        return failure("compile", f"line {exc.lineno}: {exc.msg}")
    except (RecursionError, MemoryError, ValueError) as exc:
        return failure("compile", f"the code could not be parsed ({type(exc).__name__})")
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    assert last is None or isinstance(last, ast.Expr)
    try:
        compiled = compile_restricted_exec(tree, "<python>")
        errors = list(compiled.errors)
        tail = None
        if last is not None:
            tail = compile_restricted_eval(ast.Expression(last.value), "<python>")
            errors += tail.errors
    except (RecursionError, MemoryError) as exc:
        return failure("compile", f"the code is too deeply nested ({type(exc).__name__})")
    if errors or compiled.code is None or (tail is not None and tail.code is None):
        return failure("compile", "\n".join(errors) or "the code could not be compiled")
    namespace = _policy(output)
    value: object = None
    try:
        exec(compiled.code, namespace)
        if tail is not None and tail.code is not None:
            value = eval(tail.code, namespace)
    except _CpuLimit:
        return failure("cpu", "the CPU time limit was reached")
    except _WallLimit:
        return failure("timeout", "the wall-clock limit was reached")
    except MemoryError:
        return failure("memory", "the memory limit was reached (MemoryError)")
    except BaseException as exc:
        return failure("runtime", _short_traceback(exc, code.splitlines()))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if value is None:
        return {"ok": True, "output": output.text(), "dropped": output.dropped, "result": None}
    try:
        result = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return failure(
            "result",
            f"the value of the last expression ({type(value).__name__}) cannot be returned as "
            f"JSON ({str(exc)[:200]}); convert it (list(...), str(...)) or print it",
        )
    if len(result) > int(limits["max_output_chars"]):
        return failure(
            "output_limit",
            f"the value of the last expression is {len(result)} characters as JSON; the limit "
            f"is {limits['max_output_chars']}. Return or print a summary instead",
        )
    return {"ok": True, "output": output.text(), "dropped": output.dropped, "result": result}


_PRELOAD = (
    "ast", "traceback", "_strptime", "RestrictedPython", "RestrictedPython.compile",
    "RestrictedPython.Guards", "RestrictedPython.PrintCollector",
)  # fmt: skip
"""Imported before the kernel layer closes the file system (with ``ALLOWED_MODULES``)."""


def confine(kernel: dict[str, Any] | None) -> list[str]:
    """Apply the kernel layer (``tools/_sandbox_kernel.py``, loaded by path: the project is
    not on ``sys.path``) unless ``kernel`` is ``None`` (``os_sandbox="off"``); return the
    layers applied. Raises its ``Unconfined`` when a layer of ``kernel["require"]`` fails."""
    if kernel is None:
        return []
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_kernel.py")
    spec = importlib.util.spec_from_file_location("_sandbox_kernel", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    preload = [*_PRELOAD, *sorted(ALLOWED_MODULES)]
    layers: list[str] = module.enter(kernel["require"], preload, [path, os.path.abspath(__file__)])
    return layers


def main() -> int:
    limits = json.loads(sys.argv[1])
    set_limits(limits)
    try:
        layers = confine(limits.get("kernel"))
    except Exception as exc:  # Unconfined, or a kernel module that failed to load
        envelope = {"ok": False, "error": "unavailable", "message": str(exc), "output": "",
                    "dropped": 0, "layers": []}  # fmt: skip
        sys.stdout.write(json.dumps(envelope) + "\n")
        return 0
    raw = sys.stdin.buffer.read(int(limits["max_source_bytes"]) * 6 + 4096)
    sys.stdin.close()
    try:
        code = json.loads(raw)["code"]
        if not isinstance(code, str):
            raise TypeError("code must be a string")
        envelope = run(code, limits)
    except (ValueError, KeyError, TypeError) as exc:
        envelope = {"ok": False, "error": "input", "message": f"bad request: {exc}",
                    "output": "", "dropped": 0}  # fmt: skip
    except (_CpuLimit, _WallLimit) as exc:
        kind = "cpu" if isinstance(exc, _CpuLimit) else "timeout"
        envelope = {"ok": False, "error": kind, "message": f"the {kind} limit was reached",
                    "output": "", "dropped": 0}  # fmt: skip
    signal.signal(signal.SIGXCPU, signal.SIG_IGN)
    envelope["layers"] = layers
    sys.stdout.write(json.dumps(envelope) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
