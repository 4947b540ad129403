"""write_file refuses places that configure programs which run later, and hard-linked files.

The attack (issue 11): with write_file approved in a git checkout, replacing ``.git/config``
with a ``core.fsmonitor`` command made the user's next ``git status`` run it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agent import Agent
from agent.events import ToolCall
from models.scripted import ScriptedBackend, call
from tools.base import ToolContext, ToolError
from tools.files import read_file, write_file
from tools.registry import check_tool_settings

FSMONITOR = "[core]\n\tfsmonitor = touch /tmp/pwned\n"


def ctx(root: Path, **settings: Any) -> ToolContext:
    return ToolContext(workspace=root, settings=settings)


def write(root: Path, path: str, content: str = FSMONITOR, **settings: Any) -> Any:
    return write_file.invoke({"path": path, "content": content}, ctx(root, **settings))


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    (tmp_path / ".git" / "hooks").mkdir(parents=True)
    (tmp_path / ".git" / "config").write_text("[core]\n\tbare = false\n")
    (tmp_path / "env" / "bin").mkdir(parents=True)
    (tmp_path / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    return tmp_path


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".git/hooks/pre-commit",
        ".GIT/config",  # case-insensitive file systems
        ".Git/HOOKS/post-checkout",
        ".git./config",  # Windows drops trailing dots and spaces
        ".git /config",
        ".git::$INDEX_ALLOCATION/config",  # NTFS stream syntax
        "GIT~1/config",  # 8.3 short name
        ".\uff47\uff49\uff54/config",  # fullwidth letters: NFKC makes them .git
        "sub/module/.git/config",
        ".git",  # a .git file (worktrees, submodules)
        ".hg/hgrc",
        ".svn/entries",
        ".bzr/branch.conf",
        ".jj/repo/config.toml",
        ".envrc",
        ".env",
        ".env.local",
        ".vscode/settings.json",
        ".vscode/tasks.json",
        ".idea/workspace.xml",
        ".venv/bin/activate",
        "venv/lib/python3.12/site-packages/evil.pth",
        "env/bin/activate",  # any folder holding a pyvenv.cfg
        "env/lib/evil.pth",
        ".husky/pre-commit",
        ".githooks/pre-push",
        ".pre-commit-config.yaml",
        ".gitmodules",
        ".bashrc",
        ".zshrc",
        ".profile",
        ".bash_profile",
        "home/.config/fish/config.fish",
    ],
)
def test_sensitive_places_are_refused(checkout: Path, path: str) -> None:
    before = {p: p.read_bytes() for p in checkout.rglob("*") if p.is_file()}
    with pytest.raises(ToolError, match=r"refusing to write .*allow_sensitive"):
        write(checkout, path)
    after = {p: p.read_bytes() for p in checkout.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.parametrize(
    "path",
    [".gitignore", "src/.gitattributes", "gitnotes/x.md", ".environment", "venvs.txt", "docs/a.md"],
)
def test_ordinary_places_are_written(checkout: Path, path: str) -> None:
    assert "created" in write(checkout, path, "hello")
    assert (checkout / path).read_text() == "hello"


def test_links_are_followed_before_matching(checkout: Path) -> None:
    (checkout / "docs").symlink_to(".git")
    (checkout / "notes.txt").symlink_to(".git/config")
    for path in ("docs/config", "notes.txt"):
        with pytest.raises(ToolError, match=r"\.git/.*version-control"):
            write(checkout, path)
    assert "bare = false" in (checkout / ".git" / "config").read_text()


def test_the_setting_allows_them(checkout: Path) -> None:
    result = write(checkout, ".git/config", write_file={"allow_sensitive": True})
    assert "replaced" in result
    assert (checkout / ".git" / "config").read_text() == FSMONITOR


def test_the_setting_is_checked() -> None:
    check_tool_settings({"write_file": {"allow_sensitive": True, "allow_hard_links": False}})
    check_tool_settings({"read_file": {"allow_hard_links": True}})
    with pytest.raises(ToolError, match="allow_sensitive must be true or false, got 'yes'"):
        check_tool_settings({"write_file": {"allow_sensitive": "yes"}})


def test_a_hard_linked_file_is_neither_replaced_nor_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "id_rsa"
    secret.write_text("PRIVATE KEY")
    root = tmp_path / "ws"
    root.mkdir()
    os.link(secret, root / "key.txt")
    with pytest.raises(ToolError, match=r"refusing to read 'key\.txt': it has 2 hard links"):
        read_file.invoke({"path": "key.txt"}, ctx(root))
    with pytest.raises(ToolError, match=r"refusing to replace 'key\.txt': it has 2 hard links"):
        write(root, "key.txt", "x")
    assert secret.read_text() == "PRIVATE KEY" and (root / "key.txt").read_text() == "PRIVATE KEY"
    allowed = ctx(root, read_file={"allow_hard_links": True})
    assert read_file.invoke({"path": "key.txt"}, allowed) == "PRIVATE KEY"


def test_the_approval_says_the_path_is_sensitive(checkout: Path) -> None:
    asked: list[tuple[str, str | None]] = []

    def callback(request: ToolCall, reason: str | None = None) -> bool:
        asked.append((request.arguments["path"], reason))
        return True

    turns = [
        call("write_file", path=".git/config", content=FSMONITOR),
        call("write_file", path="notes.md", content="hi"),
        "Done.\n</think>\n\nDone.",
    ]
    backend = ScriptedBackend(turns)
    agent = Agent(
        backend,
        tools=["write_file"],
        workspace=checkout,
        approval="ask",
        approval_callback=callback,
        transcript=False,
    )
    agent.run("configure git")
    (sensitive, why), (ordinary, nothing) = asked
    assert sensitive == ".git/config" and ordinary == "notes.md" and nothing is None
    assert why is not None and why.startswith("sensitive path: .git/ is version-control data")
    assert "it will be refused" in why
    assert "refusing to write '.git/config'" in backend.observations[0]
    assert "bare = false" in (checkout / ".git" / "config").read_text()
