"""Running the sandbox child process: clean environment, scratch folder, deadline, group kill.

:func:`run_process` starts a command in a new session (so it leads its own process group),
with an environment that holds nothing of the parent's (no secrets, no proxies), in a fresh
scratch folder that is removed afterwards. It feeds stdin, reads stdout and stderr up to a
byte cap, and returns when the process has exited, the wall-clock deadline has passed, or the
cancel event is set. In every case the whole process group is killed with SIGKILL *before*
the leader is reaped, so nothing the child started outlives the call and the group id cannot
have been reused in between.

:func:`os_layer` decides whether bubblewrap (``bwrap``) wraps the child: only for
``os_sandbox="require"`` (see :mod:`tools._sandbox_layers`), with every namespace unshared
and a minimal bind set: the interpreter's installation, the system libraries, the child's two
files, and the scratch folder (no ``/`` bind, so no home, no ``/etc``, no workspace).

When the parent runs as root the scratch folder is given to uid/gid 65534, the unprivileged
identity the child drops to (:mod:`tools._sandbox_kernel`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tools._sandbox_kernel import NOBODY
from tools._sandbox_layers import OsSandbox

log = logging.getLogger(__name__)

Ending = Literal["exited", "wall_timeout", "cancelled"]

_POLL_SECONDS = 0.05
_bwrap_works: bool | None = None
_bwrap_lock = threading.Lock()


@dataclass(frozen=True)
class ProcessOutcome:
    """What happened to one child process."""

    ending: Ending
    """``exited`` on its own, or killed at the ``wall_timeout``, or killed when ``cancelled``."""
    returncode: int | None
    """Exit status; negative for a signal (``-11`` is SIGSEGV). ``None`` is never returned."""
    stdout: bytes
    stderr: bytes
    stdout_overflow: bool
    """More than the byte cap was written to stdout; the rest was discarded."""
    pid: int
    """The child's pid, which was also its process group id (gone by the time this returns)."""
    seconds: float


def clean_env(scratch: str) -> dict[str, str]:
    """The child's whole environment: nothing inherited from the parent."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": scratch,
        "TMPDIR": scratch,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }


def _has_exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it (its pid stays reserved)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _open_pidfd(pid: int) -> int | None:
    """A pidfd of ``pid`` (readable once it has exited), or ``None`` where there is none."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:
        return None
    return fd


def _wait_for_exit(exit_fd: int | None, seconds: float) -> None:
    """Wait up to ``seconds`` for the child to exit: on its pidfd, so the wait ends the moment
    it does (the output pipes close a moment before the exit is visible), else by sleeping."""
    if exit_fd is None:
        time.sleep(min(seconds, 0.01))
    else:
        select.select([exit_fd], [], [], max(seconds, 0.0))


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run_process(
    argv: Sequence[str],
    stdin_data: bytes,
    *,
    wall_seconds: float,
    os_prefix: Callable[[str], list[str]] | None = None,
    cancel_event: threading.Event | None = None,
    max_stdout_bytes: int = 4 << 20,
    max_stderr_bytes: int = 64 << 10,
) -> ProcessOutcome:
    """Run ``argv`` in a new session and scratch folder; see the module docstring.

    ``os_prefix``, given the scratch folder, returns a command that wraps ``argv`` (the OS
    layer from :func:`os_layer`).
    """
    started = time.monotonic()
    deadline = started + wall_seconds
    scratch = tempfile.mkdtemp(prefix="qwq-sandbox-")
    try:
        if os.geteuid() == 0:
            os.chown(scratch, NOBODY, NOBODY)  # the child drops to this uid; mode stays 0700
        command = [*(os_prefix(scratch) if os_prefix else []), *argv]
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=scratch,
            env=clean_env(scratch),
            start_new_session=True,
            close_fds=True,
        )
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        pid = proc.pid
        exit_fd = _open_pidfd(pid)  # readable once the child has exited (Linux 5.3+)
        out, err = bytearray(), bytearray()
        overflow = False
        ending: Ending = "exited"
        try:
            os.set_blocking(proc.stdin.fileno(), False)
            pending = memoryview(stdin_data)
            with selectors.DefaultSelector() as selector:
                if pending:
                    selector.register(proc.stdin, selectors.EVENT_WRITE)
                else:
                    proc.stdin.close()
                selector.register(proc.stdout, selectors.EVENT_READ, (out, max_stdout_bytes))
                selector.register(proc.stderr, selectors.EVENT_READ, (err, max_stderr_bytes))
                exited_at: float | None = None
                while selector.get_map():
                    now = time.monotonic()
                    if cancel_event is not None and cancel_event.is_set():
                        ending = "cancelled"
                        break
                    if now >= deadline:
                        ending = "wall_timeout"
                        break
                    if exited_at is None and _has_exited(pid):
                        exited_at = now
                    elif exited_at is not None and now - exited_at > 0.2:
                        break  # the child is gone; something it left holds the pipes open
                    for key, _ in selector.select(min(_POLL_SECONDS, deadline - now)):
                        if key.fileobj is proc.stdin:
                            try:
                                pending = pending[os.write(proc.stdin.fileno(), pending[:65536]) :]
                            except BlockingIOError:
                                continue
                            except BrokenPipeError:
                                pending = pending[:0]
                            if not pending:
                                selector.unregister(proc.stdin)
                                proc.stdin.close()
                            continue
                        chunk = os.read(key.fd, 65536)
                        if not chunk:
                            selector.unregister(key.fileobj)
                            continue
                        buffer, cap = key.data
                        room = max(0, cap - len(buffer))
                        buffer += chunk[:room]
                        if len(chunk) > room and key.fileobj is proc.stdout:
                            overflow = True
            if ending == "exited":
                while not _has_exited(pid):
                    if cancel_event is not None and cancel_event.is_set():
                        ending = "cancelled"
                        break
                    now = time.monotonic()
                    if now >= deadline:
                        ending = "wall_timeout"
                        break
                    _wait_for_exit(exit_fd, min(_POLL_SECONDS, deadline - now))
        finally:
            _kill_group(pid)  # before reaping: the group id cannot be reused until then
            proc.wait()
            if exit_fd is not None:
                os.close(exit_fd)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                stream.close()
        return ProcessOutcome(
            ending=ending,
            returncode=proc.returncode,
            stdout=bytes(out),
            stderr=bytes(err),
            stdout_overflow=overflow,
            pid=pid,
            seconds=time.monotonic() - started,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


CHILD_FILES = ("child", "kernel", "policy", "compile")
"""The files ``tools/_sandbox_NAME.py`` the child runs or loads by path."""


def bwrap_prefix(scratch: str) -> list[str]:
    """The bubblewrap command that wraps the child: a minimal root, no network, own PIDs.

    Bound read-only: the interpreter's installation (``sys.base_prefix``, and ``sys.prefix``
    for a virtual environment), the system library folders (``/lib`` and friends, as links
    where they are links), and the two files of the child; bound writable: ``scratch``, the
    working directory. ``/dev`` is bubblewrap's minimal one; there is no ``/proc``, ``/etc``
    or home. As root, bwrap keeps only CAP_SETUID/CAP_SETGID, which the child needs to drop
    to uid 65534, and CAP_DAC_OVERRIDE, to enter the scratch folder that uid owns (all lost
    with the drop); otherwise every capability is dropped.
    """
    here = Path(__file__).parent
    # As root, no user namespace: in one, the scratch folder's owner (uid 65534) would not be
    # mapped and could not be entered; the child drops to that uid itself.
    unshare = (
        ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        if os.geteuid() == 0
        else ["--unshare-all"]
    )
    args = ["bwrap", *unshare, "--die-with-parent", "--new-session", "--dev", "/dev"]
    for folder in ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/lib32"):
        if os.path.islink(folder):
            args += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            args += ["--ro-bind", folder, folder]
    own_files = [str(here / f"_sandbox_{name}.py") for name in CHILD_FILES]
    for path in [*sorted({sys.base_prefix, sys.prefix}), *own_files]:
        args += ["--ro-bind", path, path]
    args += ["--bind", scratch, scratch, "--chdir", scratch, "--cap-drop", "ALL"]
    if os.geteuid() == 0:  # DAC_OVERRIDE: to enter the scratch folder, owned by uid 65534
        for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_DAC_OVERRIDE"):
            args += ["--cap-add", cap]
    return args


def bwrap_available() -> bool:
    """Whether ``bwrap`` is installed and can create its namespaces here (probed once)."""
    global _bwrap_works
    with _bwrap_lock:
        if _bwrap_works is None:
            _bwrap_works = False
            if shutil.which("bwrap") is not None:
                try:
                    probe = subprocess.run(
                        [*bwrap_prefix(tempfile.gettempdir()), sys.executable, "-I", "-c", ""],
                        capture_output=True,
                        timeout=10,
                        check=False,
                    )
                    _bwrap_works = probe.returncode == 0
                except (OSError, subprocess.TimeoutExpired):
                    _bwrap_works = False
        return _bwrap_works


def os_layer(mode: OsSandbox) -> Callable[[str], list[str]] | None:
    """The bubblewrap prefix (a function of the scratch folder) for ``"require"``, else ``None``.

    Raises:
        RuntimeError: ``mode`` is ``"require"`` and bubblewrap cannot be used here.
    """
    if mode != "require":
        return None
    if bwrap_available():
        return bwrap_prefix
    raise RuntimeError(
        "the python tool is configured with os_sandbox='require' but bubblewrap (bwrap) is not "
        "installed or cannot create namespaces on this machine; install bubblewrap, or use "
        "os_sandbox='auto' (the kernel layer without bubblewrap)"
    )
