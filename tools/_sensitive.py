"""Places in a workspace where a written file configures a program that runs later.

Replacing ``.git/config`` (a ``core.fsmonitor`` command), a hook, ``.envrc``, a shell rc file
or a virtualenv's ``bin/activate`` makes the user's next ``git status``, ``cd`` or
``source`` run what the model wrote. ``write_file`` refuses such places unless its
``allow_sensitive`` setting is on, and the approval of a write says when a path is one.

Matching is on the resolved path (links followed, ``..`` gone), one name at a time, after the
normalisations other file systems apply when they look a name up: Unicode NFKC and case
folding (macOS, Windows), trailing dots and spaces and NTFS stream suffixes (``.git.``,
``.git::$INDEX_ALLOCATION``) and 8.3 short names (``GIT~1``) all count as ``.git``.

Sensitive, with the reason shown:

* a version-control folder anywhere on the path: ``.git`` (also a ``.git`` file, as in
  worktrees), ``.hg``, ``.svn``, ``.bzr``, ``.jj``, ``_darcs``, ``.pijul``, ``CVS``;
* an editor, tool or hook folder: ``.vscode``, ``.idea``, ``.husky``, ``.githooks``,
  ``.devcontainer``, ``.direnv``;
* a virtualenv: a folder named ``.venv`` or ``venv``, or any folder holding a ``pyvenv.cfg``;
* a file that configures a tool or a shell: ``.envrc``, ``.env`` and ``.env.*`` (read by
  dotenv, docker compose, direnv), ``.pre-commit-config.yaml``, ``.gitmodules``,
  ``.gitconfig``, ``pyvenv.cfg``, ``.npmrc``, ``.pypirc``, ``.netrc``, and the rc and profile
  files of bash, zsh, sh, ksh, csh, fish and readline.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

_VCS_FOLDERS = frozenset({".git", ".hg", ".svn", ".bzr", ".jj", "_darcs", ".pijul", "cvs"})
_TOOL_FOLDERS = frozenset({".vscode", ".idea", ".husky", ".githooks", ".devcontainer", ".direnv"})
_VENV_FOLDERS = frozenset({".venv", "venv"})
_CONFIG_FILES = frozenset(
    {
        ".envrc",
        ".env",
        ".pre-commit-config.yaml",
        ".pre-commit-config.yml",
        ".gitmodules",
        ".gitconfig",
        "pyvenv.cfg",
        ".npmrc",
        ".pypirc",
        ".netrc",
        ".inputrc",
        ".bashrc",
        ".bash_profile",
        ".bash_login",
        ".bash_logout",
        ".profile",
        ".zshrc",
        ".zshenv",
        ".zprofile",
        ".zlogin",
        ".zlogout",
        ".kshrc",
        ".mkshrc",
        ".cshrc",
        ".tcshrc",
        ".login",
        ".logout",
        "config.fish",
    }
)
_SHORT_NAME = re.compile(r"^([^~]{1,6})~\d+$")  # 8.3 names: GIT~1 is .git on Windows


def normalise(name: str) -> str:
    """``name`` as a case-insensitive, stream- and trailing-dot-ignoring file system sees it."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    folded = folded.split(":", 1)[0]  # NTFS alternate data streams: ".git::$INDEX_ALLOCATION"
    return folded.rstrip(". ") or folded


def _matches(name: str, names: frozenset[str]) -> bool:
    if name in names:
        return True
    short = _SHORT_NAME.match(name)
    return short is not None and short.group(1) in {n.replace(".", "")[:6] for n in names}


def sensitive_reason(root: Path, names: tuple[str, ...]) -> str | None:
    """Why writing ``root/names`` (a resolved path inside the workspace ``root``) is
    sensitive, or ``None`` when it is not. Existing folders on the way are looked into
    (a ``pyvenv.cfg`` marks a virtualenv whatever its name)."""
    folder = root
    for index, raw in enumerate(names):
        name = normalise(raw)
        last = index == len(names) - 1
        shown = "/".join(names[: index + 1]) + ("" if last else "/")
        if _matches(name, _VCS_FOLDERS):
            return f"{shown} is version-control data (its config and hooks run commands)"
        if not last and _matches(name, _TOOL_FOLDERS):
            return f"{shown} is an editor, tool or hook folder (its files can run commands)"
        if not last and _matches(name, _VENV_FOLDERS):
            return f"{shown} is a virtualenv (its scripts run when it is activated or used)"
        if os.path.isfile(folder / "pyvenv.cfg"):
            where = "/".join(names[:index]) + "/" if index else "the workspace"
            return f"{where} is a virtualenv (it holds a pyvenv.cfg)"
        if last and (_matches(name, _CONFIG_FILES) or name.startswith(".env.")):
            return f"{shown} configures a shell or a tool that runs it (direnv, dotenv, git …)"
        folder = folder / raw
    return None
