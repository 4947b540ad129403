"""Which isolation layers the python sandbox requires, and which this machine offers.

The ``os_sandbox`` setting of the python tool (no silent downgrade):

* ``"auto"`` (the default): the kernel layer of :mod:`tools._sandbox_kernel` is required:
  no_new_privs, seccomp, Landlock, and uid 65534 when the agent runs as root. Landlock's TCP
  and scope rules (ABI 4 and 6) are applied where the kernel has them and not required
  (seccomp already refuses sockets and signals to other processes). Where a required layer
  is missing the python tool refuses, and says how to opt out.
* ``"require"``: the same, and bubblewrap (``bwrap``, with a minimal bind set, every
  namespace unshared) around the child as an extra layer; refused where bwrap cannot run.
* ``"off"``: RestrictedPython, resource limits, the session and the clean environment
  only. A loud warning is logged once per process.

:func:`kernel_layers` probes once per process, in a throwaway child that confines itself
exactly as the sandbox child does and reports what took; the sandbox child reports the
layers it applied with every result, and the parent refuses a result without them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

OsSandbox = Literal["auto", "off", "require"]
KERNEL_MODULE = Path(__file__).with_name("_sandbox_kernel.py")
OFF_WARNING = (
    "SECURITY WARNING: the python tool runs with os_sandbox='off': model-written code is "
    "confined only by RestrictedPython and resource limits, not by the kernel. It may read "
    "any file this user can read. Remove the os_sandbox setting to restore the kernel layer."
)

_probe_lock = threading.Lock()
_probed: dict[str, Any] | None = None
_warned_off = False


def required_layers(mode: OsSandbox) -> tuple[str, ...]:
    """The kernel layers a run in ``mode`` must have applied before any code runs."""
    if mode == "off":
        return ()
    base = ("no_new_privs", "landlock", "seccomp")
    return (*base, "uid") if os.geteuid() == 0 else base


def kernel_layers() -> dict[str, Any]:
    """``{"applied": [...], "errors": {layer: why}, "landlock_abi": N}`` on this machine.

    Probed once per process by a throwaway child (``python -I -B _sandbox_kernel.py``) that
    applies every kernel layer to itself; later calls return the same dict.
    """
    global _probed
    with _probe_lock:
        if _probed is None:
            _probed = _probe()
        return _probed


def _probe() -> dict[str, Any]:
    from tools._sandbox_run import run_process

    if sys.platform != "linux":
        return {"applied": [], "errors": {"kernel": f"no kernel layer on {sys.platform}"},
                "landlock_abi": 0}  # fmt: skip
    outcome = run_process([sys.executable, "-I", "-B", str(KERNEL_MODULE)], b"", wall_seconds=10)
    try:
        report = json.loads(outcome.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
        if isinstance(report, dict) and isinstance(report.get("applied"), list):
            return report
    except (ValueError, IndexError):
        pass
    detail = outcome.stderr.decode("utf-8", "replace").strip()[-300:]
    return {"applied": [], "errors": {"kernel": f"the probe failed ({outcome.ending}, status "
            f"{outcome.returncode}): {detail}"}, "landlock_abi": 0}  # fmt: skip


def check_available(mode: OsSandbox) -> None:
    """Refuse early when this machine lacks a layer ``mode`` requires; warn when ``off``.

    Raises:
        RuntimeError: a required layer is missing; the message names it, says why, and how
            to opt out.
    """
    global _warned_off
    if mode == "off":
        if not _warned_off:
            _warned_off = True
            log.warning(OFF_WARNING)
        return
    report = kernel_layers()
    applied = report.get("applied")
    errors = report.get("errors")
    missing = [
        x for x in required_layers(mode) if not isinstance(applied, list) or x not in applied
    ]
    if missing:
        why = errors if isinstance(errors, dict) else {}
        reasons = "; ".join(f"{m}: {why.get(m, 'not offered by this kernel')}" for m in missing)
        raise RuntimeError(
            f"the python tool needs the kernel sandbox, and this machine lacks {missing} "
            f"({reasons}). Run on a Linux kernel with seccomp and Landlock (5.13 or later, "
            "Landlock enabled in the LSM list), or opt out with the python tool setting "
            "os_sandbox='off' (RestrictedPython and resource limits only; not a sandbox)"
        )


def missing_from(envelope_layers: object, mode: OsSandbox) -> list[str]:
    """The layers ``mode`` requires that the child's envelope does not report as applied."""
    reported = envelope_layers if isinstance(envelope_layers, list) else []
    return [x for x in required_layers(mode) if x not in reported]
