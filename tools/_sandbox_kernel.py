"""The kernel layer of the python sandbox: the child confines itself before it runs any code.

Self-contained (standard library and ``ctypes`` only): the sandbox child runs with ``-I``,
without the project on ``sys.path``, and loads this file by path. :func:`confine` applies
to the calling process (single-threaded), in the order no_new_privs, Landlock, uid, seccomp:

* **an unprivileged uid** (layer ``uid``: no uid or gid 0 left). When started as root:
  ``setgroups([])``, then gid and uid 65534 (nobody/nogroup), real, effective and saved, so
  root cannot be regained. The caller makes the scratch folder owned by that uid
  (:func:`tools._sandbox_run.run_process` does). The drop comes after Landlock (its rule
  paths are opened while still root: an interpreter under a 0700 ``/root`` stays reachable
  for the rule) and before seccomp (which refuses the setuid family).
* **no_new_privs** (``prctl(PR_SET_NO_NEW_PRIVS)``): nothing can gain privileges by exec.
* **Landlock** (raw syscalls 444-446, the same on x86_64 and aarch64; the ABI is probed with
  ``LANDLOCK_CREATE_RULESET_VERSION``). Every file-system right the ABI knows is handled;
  read-only (read, list) beneath the paths given (the Python standard library, the packages
  the child imports, the child's own files), read-write beneath the scratch folder, nothing
  anywhere else: no ``/proc``, no home, no workspace, no ``/etc``. From ABI 4 TCP bind and
  connect are denied too (``landlock_net``), and from ABI 6 signals and abstract unix sockets
  are scoped to the sandbox (``landlock_scope``).
* **seccomp**: a BPF filter written here by hand (no libseccomp: it would have to be found
  and loaded by ``ctypes`` on every machine, and a fresh machine after ``make`` may lack it,
  while the filter below is ~170 instructions of plain data). It kills the process if the
  audit architecture is not the one it was built for (x86_64 or aarch64), refuses x32
  syscall numbers, answers EPERM to ``execve``, process creation (``clone3``: ENOSYS, so
  libc falls back to ``clone``, which is refused), sockets, ``ptrace``, signals to any other
  process, mounts and namespaces, keyrings, ``bpf``, ``perf_event_open``, ``userfaultfd``,
  ``io_uring``, ``setsid``/``setpgid``, module and kexec calls, ``chown`` and the setuid
  family, and terminal injection (``ioctl`` TIOCSTI, TIOCLINUX).

Each step that fails is recorded and the next is still tried; :class:`Report` says which
layers were applied and why the others were not. The caller decides what is required and
refuses to run code without it (the child does; the parent checks again). Resource limits,
the session and the process group are set elsewhere (the child's ``set_limits`` and
``run_process``). Run as a script (``python -I -B _sandbox_kernel.py``) it confines itself
in its working directory and prints its report as JSON: the probe behind
:func:`tools._sandbox_layers.kernel_layers`.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

NOBODY = 65534
"""The uid and gid the sandbox runs as when it was started as root."""

KERNEL_LAYERS = ("uid", "no_new_privs", "landlock", "landlock_net", "landlock_scope", "seccomp")

_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
# Access rights of Landlock's file system, by the ABI that introduced them.
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1, 2, 4, 8
_FS_REMOVE_DIR, _FS_REMOVE_FILE, _FS_MAKE_CHAR, _FS_MAKE_DIR = 16, 32, 64, 128
_FS_MAKE_REG, _FS_MAKE_SOCK, _FS_MAKE_FIFO, _FS_MAKE_BLOCK = 256, 512, 1024, 2048
_FS_MAKE_SYM = 4096
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_FILE_ONLY_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_READ_ONLY = _FS_READ_FILE | _FS_READ_DIR
_READ_WRITE = (
    _READ_ONLY | _FS_WRITE_FILE | _FS_REMOVE_DIR | _FS_REMOVE_FILE | _FS_MAKE_DIR | _FS_MAKE_REG
    | _FS_MAKE_SYM | _FS_REFER | _FS_TRUNCATE
)  # fmt: skip
"""In the scratch folder: no execute, no devices, sockets or FIFOs."""
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2  # ABI 4
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1, 2  # ABI 6

_PR_SET_NO_NEW_PRIVS, _PR_GET_NO_NEW_PRIVS = 38, 39
_SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC = 1, 1
_RET_KILL_PROCESS, _RET_ERRNO, _RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
_LD_ABS_W, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
_EPERM, _ENOSYS = 1, 38
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C


@dataclass(frozen=True)
class _Arch:
    audit: int
    seccomp_nr: int
    x32_bit: int | None
    numbers: dict[str, int]


# Denied with EPERM; names missing on an architecture (fork on aarch64) do not exist there.
_DENIED = (
    "execve", "execveat", "fork", "vfork", "clone", "socket", "socketpair", "connect", "bind",
    "listen", "accept", "accept4", "ptrace", "process_vm_readv", "process_vm_writev",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_send_signal", "pidfd_open", "pidfd_getfd",
    "kcmp", "process_madvise", "mount", "umount2", "unshare", "setns", "pivot_root", "chroot",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "name_to_handle_at", "open_by_handle_at", "keyctl", "add_key", "request_key", "bpf",
    "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "setsid", "setpgid", "personality", "init_module", "finit_module", "delete_module",
    "reboot", "kexec_load", "kexec_file_load", "swapon", "swapoff", "acct", "quotactl",
    "syslog", "vhangup", "iopl", "ioperm", "settimeofday", "clock_settime", "adjtimex",
    "clock_adjtime", "sethostname", "setdomainname", "fanotify_init", "lookup_dcookie",
    "move_pages", "migrate_pages", "chown", "fchown", "lchown", "fchownat", "setuid", "setgid",
    "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid",
    "capset",
)  # fmt: skip
_OWN_PROCESS_ONLY = ("kill", "tkill", "tgkill")
"""Allowed only with the process's own pid as first argument (``os.abort`` signals itself)."""

_X86_64 = _Arch(0xC000003E, 317, 0x40000000, dict(
    execve=59, execveat=322, fork=57, vfork=58, clone=56, clone3=435, socket=41,
    socketpair=53, connect=42, bind=49, listen=50, accept=43, accept4=288, ptrace=101,
    process_vm_readv=310, process_vm_writev=311, rt_sigqueueinfo=129, rt_tgsigqueueinfo=297,
    pidfd_send_signal=424, pidfd_open=434, pidfd_getfd=438, kcmp=312, process_madvise=440,
    mount=165, umount2=166, unshare=272, setns=308, pivot_root=155, chroot=161, open_tree=428,
    move_mount=429, fsopen=430, fsconfig=431, fsmount=432, fspick=433, mount_setattr=442,
    name_to_handle_at=303, open_by_handle_at=304, keyctl=250, add_key=248, request_key=249,
    bpf=321, perf_event_open=298, userfaultfd=323, io_uring_setup=425, io_uring_enter=426,
    io_uring_register=427, setsid=112, setpgid=109, personality=135, init_module=175,
    finit_module=313, delete_module=176, reboot=169, kexec_load=246, kexec_file_load=320,
    swapon=167, swapoff=168, acct=163, quotactl=179, syslog=103, vhangup=153, iopl=172,
    ioperm=173, settimeofday=164, clock_settime=227, adjtimex=159, clock_adjtime=305,
    sethostname=170, setdomainname=171, fanotify_init=300, lookup_dcookie=212, move_pages=279,
    migrate_pages=256, chown=92, fchown=93, lchown=94, fchownat=260, setuid=105, setgid=106,
    setreuid=113, setregid=114, setresuid=117, setresgid=119, setgroups=116, setfsuid=122,
    setfsgid=123, capset=126, kill=62, tkill=200, tgkill=234, ioctl=16,
))  # fmt: skip
_AARCH64 = _Arch(0xC00000B7, 277, None, dict(
    execve=221, execveat=281, clone=220, clone3=435, socket=198, socketpair=199, connect=203,
    bind=200, listen=201, accept=202, accept4=242, ptrace=117, process_vm_readv=270,
    process_vm_writev=271, rt_sigqueueinfo=138, rt_tgsigqueueinfo=240, pidfd_send_signal=424,
    pidfd_open=434, pidfd_getfd=438, kcmp=272, process_madvise=440, mount=40, umount2=39,
    unshare=97, setns=268, pivot_root=41, chroot=51, open_tree=428, move_mount=429,
    fsopen=430, fsconfig=431, fsmount=432, fspick=433, mount_setattr=442,
    name_to_handle_at=264, open_by_handle_at=265, keyctl=219, add_key=217, request_key=218,
    bpf=280, perf_event_open=241, userfaultfd=282, io_uring_setup=425, io_uring_enter=426,
    io_uring_register=427, setsid=157, setpgid=154, personality=92, init_module=105,
    finit_module=273, delete_module=106, reboot=142, kexec_load=104, kexec_file_load=294,
    swapon=224, swapoff=225, acct=89, quotactl=60, syslog=116, vhangup=58,
    settimeofday=170, clock_settime=112, adjtimex=171, clock_adjtime=266, sethostname=161,
    setdomainname=162, fanotify_init=262, lookup_dcookie=18, move_pages=239,
    migrate_pages=238, fchown=55, fchownat=54, setuid=146, setgid=144, setreuid=145,
    setregid=143, setresuid=147, setresgid=149, setgroups=159, setfsuid=151, setfsgid=152,
    capset=91, kill=129, tkill=130, tgkill=131, ioctl=29,
))  # fmt: skip
ARCHES = {"x86_64": _X86_64, "aarch64": _AARCH64}


@dataclass
class Report:
    """What :func:`confine` did."""

    applied: list[str] = field(default_factory=list)
    """The layers now in force, names from :data:`KERNEL_LAYERS`."""
    errors: dict[str, str] = field(default_factory=dict)
    """Layers that were tried and not applied, with the reason."""
    landlock_abi: int = 0

    def as_json(self) -> dict[str, object]:
        return {"applied": self.applied, "errors": self.errors, "landlock_abi": self.landlock_abi}


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> int:
    if result < 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")
    return result


def landlock_abi() -> int:
    """The Landlock ABI version the kernel offers; 0 when it offers none (no side effect)."""
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    version = libc.syscall(
        ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET), None, ctypes.c_size_t(0),
        ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION),
    )  # fmt: skip
    return max(0, int(version))


def interpreter_paths() -> list[str]:
    """What the interpreter reads after start-up: its standard library (lib-dynload is in it)."""
    return [sysconfig.get_paths()["stdlib"]]


def drop_uid() -> None:
    """Become uid/gid :data:`NOBODY` with no supplementary groups, for good."""
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    if os.getresuid() != (NOBODY,) * 3 or os.getresgid() != (NOBODY,) * 3 or os.getgroups():
        raise OSError(f"the uid drop did not take: uids {os.getresuid()}, gids {os.getresgid()}")


def no_new_privs() -> None:
    libc = _libc()
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(_PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1:
        raise OSError("no_new_privs did not take")


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock(abi: int, read_only: Iterable[str], read_write: Iterable[str]) -> list[str]:
    """Confine the file system (and, from ABI 4/6, TCP and scopes); returns the layers applied.

    Paths that do not exist are skipped (an optional package that is not installed).
    no_new_privs must already be set.
    """
    if abi < 1:
        raise OSError("the kernel offers no Landlock (ABI 0)")
    handled_fs = _FS_BY_ABI[max(v for v in _FS_BY_ABI if v <= abi)]
    words = [handled_fs]
    if abi >= 4:
        words.append(_NET_BIND_TCP | _NET_CONNECT_TCP)
    if abi >= 6:
        words.append(_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL)
    attr = (ctypes.c_uint64 * len(words))(*words)
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    ruleset = _check(
        libc.syscall(ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET), ctypes.byref(attr),
                     ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0)),
        "landlock_create_ruleset",
    )  # fmt: skip
    try:
        rules = [(p, _READ_ONLY) for p in read_only] + [(p, _READ_WRITE) for p in read_write]
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                if not os.path.isdir(path):
                    rights &= _FILE_ONLY_RIGHTS
                beneath = _PathBeneath(rights & handled_fs, fd)
                _check(
                    libc.syscall(ctypes.c_long(_SYS_LANDLOCK_ADD_RULE), ctypes.c_int(ruleset),
                                 ctypes.c_int(_LANDLOCK_RULE_PATH_BENEATH),
                                 ctypes.byref(beneath), ctypes.c_uint32(0)),
                    f"landlock_add_rule({path!r})",
                )  # fmt: skip
            finally:
                os.close(fd)
        _check(
            libc.syscall(ctypes.c_long(_SYS_LANDLOCK_RESTRICT_SELF), ctypes.c_int(ruleset),
                         ctypes.c_uint32(0)),
            "landlock_restrict_self",
        )  # fmt: skip
    finally:
        os.close(ruleset)
    return (
        ["landlock"]
        + (["landlock_net"] if abi >= 4 else [])
        + (["landlock_scope"] if abi >= 6 else [])
    )


def seccomp_program(arch: _Arch, pid: int) -> list[tuple[int, int, int, int]]:
    """The BPF program as ``(code, jt, jf, k)`` instructions; see the module docstring."""
    prog = [(_LD_ABS_W, 0, 0, 4), (_JEQ_K, 1, 0, arch.audit), (_RET_K, 0, 0, _RET_KILL_PROCESS)]
    prog.append((_LD_ABS_W, 0, 0, 0))  # seccomp_data.nr
    if arch.x32_bit is not None:
        prog += [(_JGE_K, 0, 1, arch.x32_bit), (_RET_K, 0, 0, _RET_KILL_PROCESS)]
    prog += [(_JEQ_K, 0, 1, arch.numbers["clone3"]), (_RET_K, 0, 0, _RET_ERRNO | _ENOSYS)]
    for name in _DENIED:
        if name in arch.numbers:
            prog += [(_JEQ_K, 0, 1, arch.numbers[name]), (_RET_K, 0, 0, _RET_ERRNO | _EPERM)]
    arg0, arg1 = 16, 24  # low 32 bits of seccomp_data.args[0] and [1] (little-endian)
    for name in _OWN_PROCESS_ONLY:
        prog += [
            (_JEQ_K, 0, 4, arch.numbers[name]), (_LD_ABS_W, 0, 0, arg0),
            (_JEQ_K, 0, 1, pid), (_RET_K, 0, 0, _RET_ALLOW), (_RET_K, 0, 0, _RET_ERRNO | _EPERM),
        ]  # fmt: skip
    prog += [
        (_JEQ_K, 0, 4, arch.numbers["ioctl"]), (_LD_ABS_W, 0, 0, arg1),
        (_JEQ_K, 1, 0, _TIOCSTI), (_JEQ_K, 0, 1, _TIOCLINUX), (_RET_K, 0, 0, _RET_ERRNO | _EPERM),
    ]  # fmt: skip
    prog.append((_RET_K, 0, 0, _RET_ALLOW))
    return prog


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]  # fmt: skip


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def seccomp() -> None:
    """Install the filter of :func:`seccomp_program` (no_new_privs must already be set)."""
    machine = platform.machine().lower()
    arch = ARCHES.get("aarch64" if machine == "arm64" else machine)
    if arch is None or sys.maxsize < 2**32:
        raise OSError(f"no seccomp filter for the architecture {machine!r}")
    prog = seccomp_program(arch, os.getpid())
    filters = (_SockFilter * len(prog))(*(_SockFilter(*i) for i in prog))
    fprog = _SockFprog(len(prog), filters)
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    _check(
        libc.syscall(ctypes.c_long(arch.seccomp_nr), ctypes.c_uint(_SECCOMP_SET_MODE_FILTER),
                     ctypes.c_uint(_SECCOMP_FILTER_FLAG_TSYNC), ctypes.byref(fprog)),
        "seccomp(SECCOMP_SET_MODE_FILTER)",
    )  # fmt: skip


def confine(scratch: str, read_only: Sequence[str]) -> Report:
    """Apply every kernel layer this machine offers to the calling process; see the module
    docstring. Never raises for a layer that fails: the :class:`Report` says so."""
    report = Report()
    if sys.platform != "linux":
        report.errors["kernel"] = f"no kernel layer on {sys.platform!r}"
        return report
    try:
        report.landlock_abi = landlock_abi()
    except OSError as exc:  # no syscall() in this libc
        report.errors["landlock"] = str(exc)
    # Order: Landlock's paths are opened while still root (they may be under a 0700 /root);
    # the setuid family is allowed until the seccomp filter, which comes last.
    try:
        no_new_privs()
        report.applied.append("no_new_privs")
    except OSError as exc:
        report.errors["no_new_privs"] = str(exc)
    if "no_new_privs" in report.applied:
        try:
            report.applied += landlock(report.landlock_abi, read_only, [scratch])
        except OSError as exc:
            report.errors["landlock"] = str(exc)
    if 0 in os.getresuid():
        try:
            drop_uid()
        except OSError as exc:
            report.errors["uid"] = str(exc)
    if 0 not in os.getresuid() and 0 not in os.getresgid():
        report.applied.append("uid")  # runs unprivileged, whether dropped here or started so
    if "no_new_privs" in report.applied:
        try:
            seccomp()
            report.applied.append("seccomp")
        except OSError as exc:
            report.errors["seccomp"] = str(exc)
    return report


class Unconfined(Exception):
    """A layer the caller requires could not be applied; no code may run."""


def enter(require: Sequence[str], preload: Iterable[str], own_files: Iterable[str]) -> list[str]:
    """Import ``preload``, then :func:`confine` this process in its working directory.

    Imports come first because, once confined (and, as root, once uid 65534), the
    interpreter may no longer read its own installation. Read-only access is granted to the
    standard library, to the folders of every package in ``preload`` that lives outside it,
    and to ``own_files``.

    Returns:
        The layers applied (a superset of ``require``).

    Raises:
        Unconfined: a layer of ``require`` could not be applied; the message says which and why.
    """
    import importlib

    read_only = interpreter_paths()
    for name in preload:
        module = importlib.import_module(name)
        for folder in getattr(module, "__path__", ()):
            if not any(folder.startswith(p + os.sep) for p in read_only):
                read_only.append(folder)
    read_only += own_files
    report = confine(os.getcwd(), read_only)
    missing = [layer for layer in require if layer not in report.applied]
    if missing:
        reasons = "; ".join(f"{m}: {report.errors.get(m, 'not applied')}" for m in missing)
        raise Unconfined(f"required sandbox layers could not be applied ({reasons})")
    return report.applied


def _probe() -> int:
    """Confine this process in its working directory, check that it holds, print the report."""
    report = confine(os.getcwd(), interpreter_paths())
    print(json.dumps(report.as_json()))
    return 0


if __name__ == "__main__":
    sys.exit(_probe())
