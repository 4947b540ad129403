"""The kernel layer of the python sandbox (issue 11): attacks from inside a confined child.

RestrictedPython is bypassed on purpose: each attack runs as plain Python in a child that
confined itself with :func:`tools._sandbox_kernel.enter`, exactly as the sandbox child does,
so these tests show what the kernel alone stops. A control run of the same script without
the layer shows that every attack would otherwise succeed (the tests can fail).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import tools._sandbox_layers as layers
from tests.conftest import HANG_BOUND
from tools import _sandbox_kernel as kernel
from tools._sandbox_budget import BudgetCancelled, BudgetError, SandboxBudget
from tools._sandbox_run import ProcessOutcome, run_process
from tools.python_tool import (
    PythonLimits,
    SandboxBusyError,
    SandboxUnavailableError,
    _interpret,
    run_code,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the kernel layer is Linux's")

FAST = PythonLimits(cpu_seconds=2, wall_seconds=5)

ATTACKS = r"""
import ctypes, ctypes.util, importlib.util, json, os, signal, socket, sys, time
kernel_path, config = sys.argv[1], json.loads(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
if config["confine"]:
    spec = importlib.util.spec_from_file_location("_sandbox_kernel", kernel_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    applied = module.enter(config["require"], [], [])
else:
    applied = []
results = {"applied": applied, "uid": os.getuid()}

def attempt(name, action):
    if name in config["skip"]:
        return
    try:
        results[name] = "escaped: " + repr(action())[:200]
    except OSError as exc:
        results[name] = "blocked: " + type(exc).__name__

def read(path):
    with open(path) as f:
        return f.read()

def write(path):
    with open(path, "w") as f:
        f.write("pwned")
    return path

def forked():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid

def system():
    status = os.system("touch " + config["marker"])
    if not os.path.exists(config["marker"]):
        raise PermissionError("nothing ran (status %d)" % status)
    return status

def connect():
    s = socket.socket()
    s.settimeout(2)
    s.connect(("127.0.0.1", config["port"]))
    s.sendall(b"hello")
    return "connected"

def ptrace():
    if libc.ptrace(16, os.getppid(), None, None) != 0:  # PTRACE_ATTACH
        raise OSError(ctypes.get_errno(), "ptrace")
    return "attached"

def inside():
    with open("inside.txt", "w") as f:
        f.write("ok")
    return read("inside.txt")

attempt("parent_environ", lambda: read("/proc/%d/environ" % os.getppid()))
attempt("outside_file", lambda: read(config["secret_file"]))
attempt("workspace_file", lambda: read(config["workspace_file"]))
attempt("etc_passwd", lambda: read("/etc/passwd"))
attempt("write_outside", lambda: write(config["outside_dir"] + "/written.txt"))
attempt("fork", forked)
attempt("system", system)
attempt("execve", lambda: os.execv("/bin/true", ["true"]))
attempt("connect", connect)
attempt("signal_parent", lambda: os.kill(os.getppid(), 0))
attempt("signal_other", lambda: os.kill(config["victim"], signal.SIGTERM))
attempt("setsid", os.setsid)
attempt("ptrace", ptrace)
attempt("inside_scratch", inside)
print(json.dumps(results))
"""

PARENT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from tools._sandbox_run import run_process
outcome = run_process(json.loads(sys.argv[2]), b"", wall_seconds=float(sys.argv[3]))
sys.stdout.write(outcome.stdout.decode() + outcome.stderr.decode())
"""
"""A parent that holds a secret in its own environment (``/proc/<pid>/environ`` shows the
environment a process started with, so the secret must be there from its start)."""

ATTACK_NAMES = [
    "parent_environ", "outside_file", "workspace_file", "etc_passwd", "write_outside", "fork",
    "system", "execve", "connect", "signal_parent", "signal_other", "setsid", "ptrace",
]  # fmt: skip


def run_attacks(tmp_path: Path, *, confine: bool) -> dict[str, Any]:
    """Run :data:`ATTACKS` in a child of a parent with a secret; return what it reports."""
    open_dir = tmp_path / "open"  # world-readable and writable: only the kernel layer can stop
    open_dir.mkdir()
    open_dir.chmod(0o777)
    secret_file = open_dir / "shadow"
    secret_file.write_text("root:$6$secret-hash")
    secret_file.chmod(0o644)
    workspace_file = open_dir / "workspace.env"
    workspace_file.write_text("API_KEY=sk-workspace")
    workspace_file.chmod(0o644)
    script = open_dir / "attacks.py"
    script.write_text(ATTACKS)
    script.chmod(0o644)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    victim = subprocess.Popen(["sleep", str(4 * HANG_BOUND)])
    try:
        config = {
            "confine": confine,
            # Unconfined, these would stop the parent or replace the script: not tried.
            "skip": [] if confine else ["execve", "ptrace"],
            "require": list(layers.required_layers("auto")),
            "marker": str(open_dir / "marker"),
            "port": listener.getsockname()[1],
            "secret_file": str(secret_file),
            "workspace_file": str(workspace_file),
            "outside_dir": str(open_dir),
            "victim": victim.pid,
        }
        child = [sys.executable, "-I", "-B", str(script), str(kernel.__file__), json.dumps(config)]
        repo = str(Path(kernel.__file__).parent.parent)
        env = {"PATH": "/usr/bin:/bin", "QWQ_PARENT_SECRET": "hunter2-parent-secret"}
        done = subprocess.run(
            [sys.executable, "-c", PARENT, repo, json.dumps(child), str(HANG_BOUND)],
            env=env,
            capture_output=True,
            timeout=2 * HANG_BOUND,
            check=False,
        )
        report: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[0])
        report["victim_alive"] = victim.poll() is None
        report["marker_exists"] = (open_dir / "marker").exists()
        report["written_exists"] = (open_dir / "written.txt").exists()
        return report
    finally:
        victim.kill()
        victim.wait()
        listener.close()


def test_every_attack_from_inside_a_confined_child_fails(tmp_path: Path) -> None:
    report = run_attacks(tmp_path, confine=True)
    assert set(layers.required_layers("auto")) <= set(report["applied"])
    escaped = {k: report[k] for k in ATTACK_NAMES if not report[k].startswith("blocked")}
    assert escaped == {}
    assert report["victim_alive"] and not report["marker_exists"]
    assert not report["written_exists"]
    assert report["inside_scratch"] == "escaped: 'ok'"  # writing in scratch still works
    if os.geteuid() == 0:
        assert report["uid"] == kernel.NOBODY


def test_without_the_kernel_layer_the_same_attacks_succeed(tmp_path: Path) -> None:
    """The control: the harness sees an escape when there is one."""
    report = run_attacks(tmp_path, confine=False)
    assert "hunter2-parent-secret" in report["parent_environ"]
    for name in ("outside_file", "workspace_file", "write_outside", "fork", "system"):
        assert report[name].startswith("escaped"), (name, report[name])
    assert report["connect"] == "escaped: 'connected'"
    assert report["signal_parent"] == "escaped: None"


def test_the_real_child_reports_its_layers_and_runs_code() -> None:
    assert run_code("print(1)", FAST).output == "1\n"
    probe = layers.kernel_layers()
    assert set(layers.required_layers("auto")) <= set(probe["applied"])
    assert probe["landlock_abi"] >= 1


def test_a_layer_that_fails_in_the_child_stops_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import tools.python_tool as python_tool

    def require(mode: str) -> tuple[str, ...]:
        return (*layers.required_layers("auto"), "imaginary")

    monkeypatch.setattr(python_tool, "required_layers", require)
    monkeypatch.setattr(python_tool, "check_available", lambda mode: None)
    with pytest.raises(SandboxUnavailableError, match="imaginary: not applied"):
        run_code("print('ran')", FAST)


def test_the_parent_refuses_a_result_without_the_required_layers() -> None:
    envelope = {"ok": True, "output": "hi", "dropped": 0, "result": None}
    outcome = ProcessOutcome("exited", 0, json.dumps(envelope).encode(), b"", False, 1, 0.0)
    with pytest.raises(SandboxUnavailableError, match="did not report the required layers"):
        _interpret(outcome, FAST, check_layers=True)
    envelope["layers"] = list(layers.required_layers("auto"))
    outcome = ProcessOutcome("exited", 0, json.dumps(envelope).encode(), b"", False, 1, 0.0)
    assert _interpret(outcome, FAST, check_layers=True).output == "hi"


def test_a_machine_without_the_kernel_layer_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    import tools.python_tool as python_tool

    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError("a process was started")

    unavailable = {"applied": [], "errors": {"landlock": "ABI 0"}, "landlock_abi": 0}
    monkeypatch.setattr(layers, "_probed", unavailable)
    monkeypatch.setattr(python_tool, "run_process", no_process)
    with pytest.raises(SandboxUnavailableError, match="os_sandbox='off'") as caught:
        run_code("1", FAST)
    assert "landlock: ABI 0" in str(caught.value)


def test_off_runs_without_the_layer_and_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(layers, "_warned_off", False)
    off = PythonLimits(cpu_seconds=2, wall_seconds=5, os_sandbox="off")
    with caplog.at_level(logging.WARNING, logger=layers.__name__):
        assert run_code("6 * 7", off).result == 42
        assert run_code("6 * 7", off).result == 42
    warnings = [r for r in caplog.records if "SECURITY WARNING" in r.getMessage()]
    assert len(warnings) == 1 and "os_sandbox='off'" in warnings[0].getMessage()


# -- the seccomp filter, instruction by instruction -------------------------------------------


def run_bpf(prog: list[tuple[int, int, int, int]], arch: int, nr: int, *args: int) -> int:
    """A classic-BPF interpreter for the instructions the filter uses."""
    data = [nr, arch, 0, 0] + [word for a in (*args, 0, 0, 0, 0, 0, 0)[:6] for word in
                               (a & 0xFFFFFFFF, a >> 32)]  # fmt: skip
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        if code == 0x20:
            acc = data[k // 4]
        elif code == 0x15:
            pc += jt if acc == k else jf
        elif code == 0x35:
            pc += jt if acc >= k else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        pc += 1


@pytest.mark.parametrize("name", ["x86_64", "aarch64"])
def test_the_filter_decides_as_documented(name: str) -> None:
    arch = kernel.ARCHES[name]
    prog = kernel.seccomp_program(arch, pid=4242)
    n = arch.numbers
    eperm, allow, kill = 0x50001, 0x7FFF0000, 0x80000000
    assert run_bpf(prog, 0x40000003, n["execve"]) == kill  # i386 syscalls: killed
    assert run_bpf(prog, arch.audit, n["execve"]) == eperm
    assert run_bpf(prog, arch.audit, n["clone3"]) == 0x50000 | 38  # ENOSYS
    for denied in ("clone", "socket", "ptrace", "setsid", "unshare", "setresuid", "bpf"):
        assert run_bpf(prog, arch.audit, n[denied]) == eperm, denied
    assert run_bpf(prog, arch.audit, n["kill"], 4242, 6) == allow
    assert run_bpf(prog, arch.audit, n["kill"], 1, 9) == eperm
    assert run_bpf(prog, arch.audit, n["kill"], (-4242) & 0xFFFFFFFF, 9) == eperm
    assert run_bpf(prog, arch.audit, n["tgkill"], 4242, 4242, 6) == allow
    assert run_bpf(prog, arch.audit, n["ioctl"], 0, 0x5412) == eperm
    assert run_bpf(prog, arch.audit, n["ioctl"], 0, 0x5401) == allow  # TCGETS
    assert run_bpf(prog, arch.audit, 0) == allow  # read (x86_64) / io_setup (aarch64)
    if arch.x32_bit is not None:
        assert run_bpf(prog, arch.audit, arch.x32_bit | 59) == kill


@pytest.mark.parametrize(
    ("name", "header"),
    [("x86_64", "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
     ("aarch64", "/usr/include/asm-generic/unistd.h")],
)  # fmt: skip
def test_syscall_numbers_match_the_kernel_headers(name: str, header: str) -> None:
    if not Path(header).exists():
        pytest.skip(f"{header} is not installed")
    text = Path(header).read_text()
    numbers = {m[0]: int(m[1]) for m in re.findall(r"#define __NR_(\w+)\s+(\d+)\b", text)}
    table = kernel.ARCHES[name].numbers
    assert {k: v for k, v in table.items() if numbers.get(k) != v} == {}


# -- the budget across calls --------------------------------------------------------------------


def test_the_budget_caps_sandboxes_running_at_once() -> None:
    budget, peak, lock = SandboxBudget(), [0], threading.Lock()

    def one() -> None:
        with budget.slot(100, max_sandboxes=2, total_memory_mb=4096, wait_seconds=HANG_BOUND):
            with lock:
                peak[0] = max(peak[0], budget.running)
            time.sleep(0.05)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_BOUND)
    assert peak[0] == 2 and budget.running == 0 and budget.memory_mb == 0


def test_the_budget_caps_total_memory_and_bounds_the_wait() -> None:
    budget = SandboxBudget()
    big: dict[str, Any] = {"max_sandboxes": 8, "total_memory_mb": 1024}
    with budget.slot(600, wait_seconds=1, **big):
        with (
            pytest.raises(BudgetError, match="total_memory_mb") as caught,
            budget.slot(600, wait_seconds=0.2, **big),
        ):
            pass
        assert caught.value.waited < HANG_BOUND
        cancel = threading.Event()
        threading.Timer(0.1, cancel.set).start()
        with (
            pytest.raises(BudgetCancelled),
            budget.slot(600, wait_seconds=4 * HANG_BOUND, cancel_event=cancel, **big),
        ):
            pass
    with (
        pytest.raises(BudgetError, match="more than the total"),
        budget.slot(2048, wait_seconds=1, **big),
    ):
        pass


def test_a_python_call_over_budget_waits_then_fails_clearly() -> None:
    from tools._sandbox_budget import BUDGET

    limits = PythonLimits(cpu_seconds=1, wall_seconds=0.5, max_sandboxes=1)
    with (
        BUDGET.slot(512, max_sandboxes=1, total_memory_mb=2048, wait_seconds=1),
        pytest.raises(SandboxBusyError, match="max_sandboxes"),
    ):
        run_code("1", limits)
    assert run_code("1", limits).result == 1


def test_budget_settings_are_validated() -> None:
    from tools.base import ToolError

    assert PythonLimits.from_settings({"max_sandboxes": 2}).max_sandboxes == 2
    with pytest.raises(ToolError, match="total_memory_mb must be a positive number"):
        PythonLimits.from_settings({"total_memory_mb": 0})


def test_the_scratch_folder_belongs_to_the_sandbox_uid_as_root() -> None:
    script = "import os; print(os.stat('.').st_uid)"
    outcome = run_process([sys.executable, "-I", "-c", script], b"", wall_seconds=HANG_BOUND)
    expected = kernel.NOBODY if os.geteuid() == 0 else os.geteuid()
    assert int(outcome.stdout) == expected


# -- qwq-agent tools ------------------------------------------------------------------------


def test_qwq_agent_tools_shows_the_layers_of_this_machine(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.cli import main

    assert main(["tools"]) == 0
    out = capsys.readouterr().out
    assert "[on ] seccomp" in out and "[on ] Landlock:" in out
    assert "runs with the kernel layer" in out
    assert main(["tools", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)["python_sandbox"]
    assert status["missing"] == [] and "seccomp" in status["applied"]
    broken = {"applied": ["no_new_privs"], "errors": {"seccomp": "EPERM"}, "landlock_abi": 0}
    monkeypatch.setattr(layers, "_probed", broken)
    assert main(["tools"]) == 0
    out = capsys.readouterr().out
    assert (
        "[off] seccomp: no exec, fork, sockets, ptrace, signals to others, mounts, setsid (EPERM)"
        in out
    )
    assert "will refuse to run" in out and "os_sandbox='off'" in out
