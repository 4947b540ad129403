"""The ``python`` tool: model-written code, run in a separate, limited process.

RestrictedPython only rewrites code; it is not a sandbox and has no limits. So each call
starts a fresh child process (:mod:`tools._sandbox_child`) that compiles the code with
RestrictedPython's policy *there*, under its own resource limits, in a new session with a
clean environment and an empty scratch folder; the parent enforces the wall-clock deadline
and kills the whole process group (:mod:`tools._sandbox_run`). Code goes in as JSON on stdin
and one JSON line comes back: printed output, the value of the last expression (JSON values
only; anything else is refused, never pickled), or a typed error. Nothing persists between
calls: every call is a new process.

Settings (``ctx.settings_for("python")``), defaults from SECURITY.md:

=====================  ========  ==================================================
``cpu_seconds``        5         CPU time (RLIMIT_CPU, whole seconds, rounded up)
``wall_seconds``       10        wall-clock time, killed by the parent
``memory_mb``          512       address space (RLIMIT_AS)
``max_source_bytes``   100000    source size, checked before anything is started
``max_output_chars``   19000     printed output kept (the rest is cut, with a marker)
``max_file_bytes``     1048576   largest file the child may write (RLIMIT_FSIZE)
``os_sandbox``         "auto"    "auto": the kernel layer is required; "require": and
                                 bubblewrap too; "off": neither (a loud warning)
``max_sandboxes``      4         sandboxes running at once, across all calls
``total_memory_mb``    2048      their memory limits together (a call waits for room)
=====================  ========  ==================================================

The kernel is the wall (:mod:`tools._sandbox_kernel`: no_new_privs, Landlock, uid 65534 as
root, seccomp; :mod:`tools._sandbox_layers` says what each ``os_sandbox`` value requires).
The child applies it before reading the code and reports the layers it applied; where a
required layer is missing the call is refused before any code runs, by the parent when the
machine's probe lacks it, by the child when it fails to apply, and by the parent again when
the child's report lacks it. Every run holds a slot of the process-wide
:data:`tools._sandbox_budget.BUDGET` while it runs.

Errors are :class:`PythonSandboxError` subclasses, one per kind (compile, runtime, timeout,
CPU, memory, crash, output limit, result not JSON, source too large); each carries the
output printed before it (``.output``) and the message shows it too.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar, get_args

from tools._sandbox_budget import BUDGET, BudgetCancelled, BudgetError
from tools._sandbox_layers import OsSandbox, check_available, missing_from, required_layers
from tools._sandbox_run import ProcessOutcome, os_layer, run_process
from tools.base import ToolCancelledError, ToolContext, ToolError, tool

CHILD = Path(__file__).with_name("_sandbox_child.py")


class PythonSandboxError(ToolError):
    """The code did not run to a result; ``kind`` says why, ``output`` is what it printed."""

    kind: ClassVar[str] = "sandbox"

    def __init__(self, message: str, output: str = "") -> None:
        if output:
            message += "\n\nOutput printed before this:\n" + output
        super().__init__(message)
        self.output = output
        self.pid: int | None = None  # the child's pid and process group id (gone by now)


class SourceTooLargeError(PythonSandboxError):
    kind = "source_too_large"


class PythonCompileError(PythonSandboxError):
    kind = "compile"


class PythonRuntimeError(PythonSandboxError):
    kind = "runtime"


class PythonTimeoutError(PythonSandboxError):
    kind = "timeout"


class PythonCpuLimitError(PythonTimeoutError):
    kind = "cpu"


class PythonMemoryError(PythonSandboxError):
    kind = "memory"


class PythonCrashError(PythonSandboxError):
    kind = "crashed"


class PythonOutputLimitError(PythonSandboxError):
    kind = "output_limit"


class PythonResultError(PythonSandboxError):
    kind = "result"


class SandboxUnavailableError(PythonSandboxError):
    kind = "unavailable"


class SandboxBusyError(PythonSandboxError):
    kind = "busy"


@dataclass(frozen=True)
class PythonLimits:
    """The limits of one run; see the module docstring for each field."""

    cpu_seconds: float = 5.0
    wall_seconds: float = 10.0
    memory_mb: int = 512
    max_source_bytes: int = 100_000
    max_output_chars: int = 19_000
    """Under the 20,000 characters a result may place in the context, so that the marker
    saying how much was cut, and the result, are not themselves cut."""
    max_file_bytes: int = 1 << 20
    os_sandbox: OsSandbox = "auto"
    max_sandboxes: int = 4
    total_memory_mb: int = 2048

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> PythonLimits:
        """Build limits from the tool's settings; unknown keys or bad values raise ``ToolError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ToolError(f"unknown python settings {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for name, value in settings.items():
            if name == "os_sandbox":
                if value not in get_args(OsSandbox):
                    raise ToolError(f"python setting os_sandbox must be one of "
                                    f"{get_args(OsSandbox)}, got {value!r}")  # fmt: skip
                values[name] = value
            elif isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ToolError(f"python setting {name} must be a positive number, got {value!r}")
            else:
                values[name] = value
        return cls(**values)

    def for_child(self) -> dict[str, Any]:
        return {
            "cpu_seconds": self.cpu_seconds,
            "wall_seconds": self.wall_seconds,
            "memory_bytes": int(self.memory_mb * 1024 * 1024),
            "max_file_bytes": int(self.max_file_bytes),
            "max_output_chars": int(self.max_output_chars),
            "max_source_bytes": int(self.max_source_bytes),
            "kernel": None
            if self.os_sandbox == "off"
            else {"require": list(required_layers(self.os_sandbox))},
        }


@dataclass(frozen=True)
class SandboxResult:
    """A successful run."""

    output: str
    """What the code printed (at most ``max_output_chars``)."""
    dropped: int
    """Characters printed beyond the cap and dropped."""
    result: Any
    """The value of the last expression, a JSON value (``None`` when there was none)."""
    pid: int
    """The child's pid and process group id (already gone)."""
    seconds: float

    def render(self) -> str:
        """The text the model reads."""
        parts = []
        if self.output or self.dropped:
            text = self.output.rstrip("\n")
            if self.dropped:
                text += f"\n[… output truncated: {self.dropped} more characters were printed]"
            parts.append(text if self.result is None else "Output:\n" + text)
        if self.result is not None:
            try:
                shown = json.dumps(self.result, ensure_ascii=False)
            except RecursionError:
                shown = json.dumps("(a value nested too deeply to show)")
            parts.append("Result: " + _clean(shown))
        if not parts:
            return "(no output: print() what you need, or end the code with an expression)"
        return "\n\n".join(parts)


def _clean(text: str) -> str:
    """Replace lone surrogates (valid in JSON, not in UTF-8) with U+FFFD."""
    return text.encode("utf-8", "replace").decode("utf-8")


_ERRORS: dict[str, type[PythonSandboxError]] = {
    cls.kind: cls
    for cls in (
        PythonCompileError,
        PythonRuntimeError,
        PythonTimeoutError,
        PythonCpuLimitError,
        PythonMemoryError,
        PythonOutputLimitError,
        PythonResultError,
        SandboxUnavailableError,
    )
}
_TITLES = {
    "compile": "the code was refused before running",
    "runtime": "the code raised an exception",
    "timeout": "the code was stopped at the wall-clock limit",
    "cpu": "the code was stopped at the CPU time limit",
    "memory": "the code was stopped at the memory limit",
    "output_limit": "the result is too large",
    "result": "the result cannot be returned",
    "unavailable": "the sandbox refused to run the code",
}


def _interpret(
    outcome: ProcessOutcome, limits: PythonLimits, *, check_layers: bool = False
) -> SandboxResult:
    """The result, or the error, that the child's envelope describes.

    With ``check_layers`` (:func:`run_code` sets it for the real child), an envelope that does
    not report every layer ``limits.os_sandbox`` requires is refused: a child that ran
    without its walls is not trusted with a result.
    """
    if outcome.ending == "cancelled":
        raise ToolCancelledError("the python run was cancelled; its processes were stopped")
    if outcome.ending == "wall_timeout":
        raise PythonTimeoutError(
            f"the code ran longer than the wall-clock limit of {limits.wall_seconds:g} s and "
            "was stopped; make it faster or do less in one call"
        )
    if outcome.stdout_overflow:
        raise PythonOutputLimitError("the sandbox process wrote more than its output limit")
    envelope: dict[str, Any] | None = None
    lines = outcome.stdout.strip().splitlines()
    if lines:
        try:
            loaded = json.loads(lines[-1])
            envelope = loaded if isinstance(loaded, dict) else None
        except ValueError:
            envelope = None
    if envelope is None:
        raise _no_envelope(outcome, limits)
    output = _clean(str(envelope.get("output", "")))
    missing = missing_from(envelope.get("layers"), limits.os_sandbox) if check_layers else []
    if missing and envelope.get("error") != "unavailable":
        raise SandboxUnavailableError(
            f"the sandbox process did not report the required layers {missing} as applied, so "
            "its result is refused; see `qwq-agent tools` for the layers this machine offers"
        )
    if not envelope.get("ok"):
        kind = str(envelope.get("error"))
        error = _ERRORS.get(kind, PythonCrashError)
        title = _TITLES.get(kind, "the sandbox failed")
        detail = _clean(str(envelope.get("message", "")))
        if kind == "cpu":
            detail = f"more than {limits.cpu_seconds:g} s of CPU time"
        elif kind == "timeout":
            detail = f"more than {limits.wall_seconds:g} s of wall-clock time"
        elif kind == "memory":
            detail = f"more than {limits.memory_mb} MiB of memory; use less data at once"
        raise error(f"{title}: {detail}", output)
    result_text = envelope.get("result")
    try:
        result = None if result_text is None else json.loads(str(result_text))
    except (ValueError, RecursionError):
        raise PythonResultError(
            "the result cannot be returned: the value of the last expression is nested too "
            "deeply; return a flatter value or print it",
            output,
        ) from None
    return SandboxResult(
        output=output,
        dropped=int(envelope.get("dropped", 0)),
        result=result,
        pid=outcome.pid,
        seconds=outcome.seconds,
    )


def _no_envelope(outcome: ProcessOutcome, limits: PythonLimits) -> PythonSandboxError:
    code = outcome.returncode if outcome.returncode is not None else 0
    stderr = _clean(outcome.stderr.decode("utf-8", "replace")).strip()[-500:]
    if code < 0:
        number = -code
        if number in (signal.SIGXCPU, signal.SIGKILL):
            return PythonCpuLimitError(
                f"the code was stopped at the CPU time limit: more than {limits.cpu_seconds:g} s"
            )
        if number == signal.SIGXFSZ:
            return PythonCrashError(
                f"the code was stopped for writing a file over {limits.max_file_bytes} bytes"
            )
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return PythonCrashError(f"the sandbox process crashed ({name}) before it could report")
    if "MemoryError" in stderr:
        return PythonMemoryError(
            f"the sandbox ran out of memory (limit {limits.memory_mb} MiB) before it could report"
        )
    detail = f": {stderr}" if stderr else ""
    return PythonCrashError(
        f"the sandbox process exited with status {code} without a result{detail}"
    )


def run_code(
    code: str,
    limits: PythonLimits | None = None,
    cancel_event: threading.Event | None = None,
    *,
    child_argv: list[str] | None = None,
) -> SandboxResult:
    """Run ``code`` in a new sandbox process and return its result.

    ``child_argv`` replaces the child command (tests use it to run a child that crashes);
    such a child is not asked to report its layers.

    Raises:
        PythonSandboxError: a subclass per failure kind; ToolCancelledError when cancelled.
    """
    limits = limits or PythonLimits()
    size = len(code.encode("utf-8", "surrogatepass"))
    if size > limits.max_source_bytes:
        raise SourceTooLargeError(
            f"the code is {size} bytes; the limit is {limits.max_source_bytes} bytes. Send "
            "smaller pieces, or compute the data instead of writing it out"
        )
    try:
        check_available(limits.os_sandbox)
        prefix = os_layer(limits.os_sandbox)
    except RuntimeError as exc:
        raise SandboxUnavailableError(str(exc)) from None
    argv = child_argv or [
        sys.executable, "-I", "-B", str(CHILD), json.dumps(limits.for_child()),
    ]  # fmt: skip
    try:
        with BUDGET.slot(
            limits.memory_mb,
            max_sandboxes=limits.max_sandboxes,
            total_memory_mb=limits.total_memory_mb,
            wait_seconds=limits.wall_seconds,
            cancel_event=cancel_event,
        ):
            outcome = run_process(
                argv,
                json.dumps({"code": code}).encode("ascii"),
                wall_seconds=limits.wall_seconds + 1.0,  # the child stops itself at wall_seconds
                os_prefix=prefix,
                cancel_event=cancel_event,
                # JSON escaping can make one character of output up to 12 bytes (a pair).
                max_stdout_bytes=limits.max_output_chars * 16 + (1 << 16),
            )
    except BudgetCancelled:
        raise ToolCancelledError("the python run was cancelled while it waited to start") from None
    except BudgetError as exc:
        raise SandboxBusyError(f"the code was not started: {exc}") from None
    status = outcome.returncode
    if prefix is not None and status is not None and 128 < status <= 128 + 64:
        # bubblewrap reports a child killed by signal N as exit status 128 + N.
        outcome = replace(outcome, returncode=128 - status)
    try:
        return _interpret(outcome, limits, check_layers=child_argv is None)
    except PythonSandboxError as exc:
        exc.pid = outcome.pid
        raise


# no capabilities: the sandbox has no network and sees only its scratch folder
@tool(risk="dangerous", capabilities=(), timeout=None)  # enforces its own deadline, then kills
def python(code: str, ctx: ToolContext) -> str:
    """Run Python code in a sandbox and return what it prints and the value of its last line.

    Each call is a fresh process: variables do not persist between calls. Available
    modules: math, statistics, json, re, datetime, time, itertools, collections, fractions,
    decimal, random, string, functools, operator (their common functions; a name that is
    not available says what is). No files, network or other modules, and no type annotations
    (write `def f(x):`, not `def f(x: int) -> int:`). Limits: 5 s of CPU, 10 s in all,
    512 MiB of memory, 20,000 characters of output by default.

    Args:
        code: Python source. End with an expression to get its value back as JSON.
    """
    limits = PythonLimits.from_settings(ctx.settings_for("python"))
    return run_code(code, limits, ctx.cancel_event).render()
