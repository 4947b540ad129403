"""``qwq-agent tools``: the built-in tools with their risk, and the python sandbox's layers.

The layers are those this machine actually applies: a throwaway child confines itself with
the kernel layer and reports what took (:func:`tools.kernel_layers`), so a
container that forbids Landlock or seccomp shows it here before a run fails on it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

LAYER_TEXT = {
    "no_new_privs": "no_new_privs: nothing the code starts can gain privileges",
    "landlock": "Landlock: files read-only from the interpreter, read-write in scratch only",
    "landlock_net": "Landlock TCP: bind and connect refused",
    "landlock_scope": "Landlock scopes: no signals or abstract sockets out of the sandbox",
    "uid": "unprivileged uid (65534 when the agent runs as root)",
    "seccomp": "seccomp: no exec, fork, sockets, ptrace, signals to others, mounts, setsid",
}


def sandbox_status() -> dict[str, Any]:
    """What ``os_sandbox="auto"`` gets on this machine: layers applied, missing, and why."""
    from tools import bwrap_available, kernel_layers, required_layers

    probe = kernel_layers()
    applied = [x for x in probe.get("applied", []) if isinstance(x, str)]
    required = list(required_layers("auto"))
    return {
        "applied": applied,
        "required": required,
        "missing": [x for x in required if x not in applied],
        "errors": probe.get("errors", {}),
        "landlock_abi": probe.get("landlock_abi", 0),
        "bubblewrap": bwrap_available(),
    }


def run_tools(args: argparse.Namespace) -> int:
    """Print the tools table and the sandbox layers (``--json``: one object with both)."""
    from tools import BUILTINS, builtin

    rows = []
    for name in BUILTINS:
        t = builtin(name)
        rows.append({"name": t.name, "risk": t.risk, "description": t.description.split("\n")[0]})
    status = sandbox_status()
    if args.json:
        print(json.dumps({"tools": rows, "python_sandbox": status}, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['risk']:<9}  {r['description']}")
    print(f"\npython sandbox layers on this machine (Landlock ABI {status['landlock_abi']}):")
    for layer, text in LAYER_TEXT.items():
        mark = "on " if layer in status["applied"] else "off"
        why = status["errors"].get(layer)
        print(f"  [{mark}] {text}" + (f" ({why})" if why and mark == "off" else ""))
    print(f"  [{'on ' if status['bubblewrap'] else 'off'}] bubblewrap "
          "(only with os_sandbox='require')")  # fmt: skip
    if status["missing"]:
        print(f"\nThe python tool will refuse to run: {status['missing']} missing. Opt out "
              "with the python setting os_sandbox='off' (not a sandbox).")  # fmt: skip
    else:
        print("\nThe python tool runs with the kernel layer (os_sandbox='auto').")
    return 0
