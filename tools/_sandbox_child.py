"""The sandbox child: runs one piece of model-written code under RestrictedPython, then exits.

Started by :mod:`tools._sandbox_run` as ``python -I -B _sandbox_child.py LIMITS_JSON`` in a
fresh scratch folder, a new session and a clean environment. It is self-contained (standard
library and RestrictedPython only; ``-I`` keeps the project off ``sys.path``): the sandbox's
compile-time and run-time rules, ``_sandbox_compile.py`` and ``_sandbox_policy.py`` beside
it, are loaded by file path when this module is imported, before any layer closes the file
system.

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
(CPU, address space, file size, processes, core dumps);
RestrictedPython's compile-time checks with the sandbox's own (no annotations, every call
rewritten so its result is screened); its run-time guards, a small set of builtins, and
imports limited to an allowlist of names per module (:mod:`tools._sandbox_policy`).
"""

from __future__ import annotations

import decimal
import importlib.util
import json
import os
import resource
import signal
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any


def _load(name: str) -> ModuleType:
    """The module ``name``.py beside this file, loaded by path (the project is not on
    ``sys.path`` in the child) and registered in ``sys.modules``."""
    if name in sys.modules:
        return sys.modules[name]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # Its bytecode is cached beside it (``-B`` would compile it afresh on every run, about as
    # long as the rest of the start), before any code is read or any layer applied.
    before, sys.dont_write_bytecode = sys.dont_write_bytecode, False
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = before
    return module


if TYPE_CHECKING:
    from tools import _sandbox_compile as sandbox_compile
    from tools import _sandbox_policy as sandbox_policy
else:
    sandbox_compile = _load("_sandbox_compile")
    sandbox_policy = _load("_sandbox_policy")

ALLOWED_MODULES = sandbox_policy.ALLOWED_MODULES
"""The modules code may import (each limited to the names :data:`sandbox_policy.ALLOWED`
lists); the kernel layer imports them before it closes the file system."""
MAX_FRAMES = 5
RECURSION_LIMIT = 2000
"""Every call in the code adds a frame of the screen's: about 1,000 levels for the code."""


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
    output = _Output(int(limits["max_output_chars"]))

    def failure(kind: str, message: str) -> dict[str, Any]:
        return {"ok": False, "error": kind, "message": message, "output": output.text(),
                "dropped": output.dropped}  # fmt: skip

    compiled = sandbox_compile.compile_code(code, "<python>")
    if isinstance(compiled, str):
        return failure("compile", compiled)
    namespace = sandbox_policy.Policy().namespace(output, _Writes())
    sys.setrecursionlimit(RECURSION_LIMIT)
    value: object = None
    try:
        exec(compiled.body, namespace)
        if compiled.tail is not None:
            value = eval(compiled.tail, namespace)
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
    status = main()
    sys.stdout.flush()
    # The envelope is out: skip the interpreter's teardown (module and object finalisation
    # takes milliseconds and does nothing the parent needs; no file of the run is open).
    os._exit(status)
