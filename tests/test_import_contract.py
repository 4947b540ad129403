"""The allowed import directions between the packages, checked on the source (``ast``).

::

    agent.cli ──> tui ──> agent (its public face: ``from agent import …`` only)
        │
        └──> agent.tasks ──> agent (the core) ──> models, tools
                                                    tools ──> models

``agent.cli`` is the only package that imports ``tui`` and nothing imports ``agent.cli``;
``agent.tasks`` is imported only by ``agent.cli``; the core never imports either; ``models``
and ``tools`` never import ``agent`` or ``tui``, and ``models`` never imports ``tools``
(``tools`` uses ``models`` for the QwQ control tokens and secret redaction). Every import
counts: at the top of a module, inside a function, or under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "models", "tools", "tui", "prompts")


def layer(module: str) -> str:
    """The layer of a project module: ``agent.cli``, ``agent.tasks``, ``agent`` (the core),
    ``models``, ``tools``, ``tui`` or ``prompts``."""
    parts = module.split(".")
    if parts[0] == "agent" and len(parts) > 1 and parts[1] in ("cli", "tasks"):
        return f"agent.{parts[1]}"
    return parts[0]


ALLOWED: dict[str, set[str]] = {
    "agent.cli": {"agent.cli", "agent.tasks", "agent", "tui", "models", "tools", "prompts"},
    "agent.tasks": {"agent.tasks", "agent", "models", "tools", "prompts"},
    "agent": {"agent", "models", "tools", "prompts"},
    "tui": {"tui", "agent"},
    "tools": {"tools", "models"},
    "models": {"models"},
    "prompts": {"prompts"},
}
"""For each layer, the layers its modules may import."""


def modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            yield ".".join(parts).removesuffix(".__init__"), path


def imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every project module (or package) that ``path`` imports, with its line."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            modules_named = [f"{base}.{alias.name}" for alias in node.names]
            found = [m for m in modules_named if is_module(m)]  # `from models import redact`
            yield from ((m, node.lineno) for m in found)
            if len(found) < len(modules_named):
                yield base, node.lineno


def is_module(name: str) -> bool:
    """Whether ``name`` is a module or package of the project."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def project_imports() -> Iterator[tuple[str, str, int]]:
    for module, path in modules():
        for target, line in imports(module, path):
            if target.split(".")[0] in PACKAGES:
                yield module, target, line


def test_every_module_has_a_layer_with_rules() -> None:
    assert {layer(module) for module, _ in modules()} == set(ALLOWED)


@pytest.mark.parametrize("source", sorted(ALLOWED))
def test_imports_go_only_the_allowed_directions(source: str) -> None:
    wrong = [
        f"{module}:{line} imports {target} ({layer(module)} -> {layer(target)})"
        for module, target, line in project_imports()
        if layer(module) == source and layer(target) not in ALLOWED[source]
    ]
    assert not wrong, "imports against the contract:\n" + "\n".join(wrong)


def test_the_tui_uses_only_the_public_face_of_agent() -> None:
    wrong = [
        f"{module}:{line} imports {target}"
        for module, target, line in project_imports()
        if layer(module) == "tui" and layer(target) == "agent" and target != "agent"
    ]
    assert not wrong, "the TUI imports past `from agent import …`:\n" + "\n".join(wrong)


def private_across_packages(module: str, target: str) -> bool:
    """Whether ``module`` imports a private module (a ``_name`` part) of another top-level
    package: ``agent.cli.tools`` importing ``tools._sandbox_layers``."""
    return target.split(".")[0] != module.split(".")[0] and any(
        part.startswith("_") for part in target.split(".")[1:]
    )


def test_no_package_imports_another_package_s_private_modules() -> None:
    """A package uses another through the names it exports (``from tools import
    kernel_layers``), never through its private modules."""
    wrong = [
        f"{module}:{line} imports {target}"
        for module, target, line in project_imports()
        if private_across_packages(module, target)
    ]
    assert not wrong, "imports of another package's private modules:\n" + "\n".join(wrong)
    assert private_across_packages("agent.cli.tools", "tools._sandbox_layers")
    assert not private_across_packages("tools.python_tool", "tools._sandbox_layers")


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The walk finds imports inside functions, relative ones and ``from pkg import mod``."""
    path = tmp_path / "mod.py"
    path.write_text(
        "def f():\n    from agent.cli.common import EXIT_OK\n"
        "from . import gguf_file\nfrom models import redact\nimport tui.app\n",
        encoding="utf-8",
    )
    found = sorted(target for target, _ in imports("models.llama.mod", path))
    assert found == ["agent.cli.common", "models.llama.gguf_file", "models.redact", "tui.app"]
