"""The public face: a curated __all__, and an import that stays light."""

from __future__ import annotations

import subprocess
import sys
import types

import agent


def test_all_is_sorted_and_complete() -> None:
    public = {
        n
        for n in dir(agent)
        if not n.startswith("_")
        and n not in {"annotations"}
        # submodules become attributes once anything imports them (agent.tasks, agent.cli …)
        and not isinstance(getattr(agent, n), types.ModuleType)
    }
    assert set(agent.__all__) == {*public, "__version__"}
    assert list(agent.__all__) == sorted(agent.__all__)


def test_import_agent_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, agent, agent.cli; "
        "print(sorted(m for m in ('llama_cpp', 'textual', 'httpx', 'rich', 'huggingface_hub') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
