"""Workspace file tools: ``read_file``, ``write_file`` and ``list_dir``, confined to one folder.

Every path the model sends is relative to ``ctx.workspace`` and is checked in three steps:

1. the text: no NUL byte, not absolute, no ``..`` component, at most 4,096 bytes in all and
   255 per name (and, for writes, no control or invisible characters in names);
2. the resolved location: symbolic links are followed and the result must stay inside the
   resolved workspace (``Path.is_relative_to``, so a sibling ``../ws-evil`` never matches);
3. the opening: the resolved path is walked from the workspace one name at a time with
   ``O_NOFOLLOW`` (a link swapped in after step 2 is refused, not followed), and only regular
   files are read or replaced: FIFOs, sockets and devices are refused before opening.

Writes are atomic: the content goes to a temporary file in the same folder, is flushed to
disk, then ``os.replace`` puts it in place; if anything fails, the old file is untouched and
the temporary file is removed. The workspace folder itself is never written or replaced.

Writes to places that configure programs which run later (``.git/``, hook and editor folders,
virtualenvs, ``.envrc``, ``.env*``, shell rc files: :mod:`tools._sensitive`) are refused unless
``write_file.allow_sensitive`` is true; the approval of such a write says so either way.
A file with more than one hard link is neither read nor replaced (unless
``allow_hard_links`` is true for that tool): its other name may be outside the workspace,
which makes reading it the same escape as a symbolic link out.

Settings (``ctx.settings_for(tool name)``): ``read_file.max_read_bytes`` (200,000),
``write_file.max_write_bytes`` (5,000,000), ``list_dir.max_entries`` (500),
``write_file.allow_sensitive`` and ``{read,write}_file.allow_hard_links`` (false).
Every refusal is a :class:`FileToolError` whose message shows the path escaped
(:func:`tools.display.escape_for_display`) and says what to do instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tools._sensitive import sensitive_reason
from tools.base import ToolContext, ToolError, tool
from tools.display import escape_for_display, has_unsafe_characters

DEFAULT_MAX_READ_BYTES = 200_000
DEFAULT_MAX_WRITE_BYTES = 5_000_000
DEFAULT_MAX_ENTRIES = 500
MAX_PATH_BYTES = 4_096
MAX_NAME_BYTES = 255

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class FileToolError(ToolError):
    """A file operation was refused or failed; the message says why and what to do."""


def _show(path: str) -> str:
    shown = escape_for_display(path)
    return "'" + (shown if len(shown) <= 200 else shown[:200] + "…") + "'"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def _workspace(ctx: ToolContext) -> Path:
    try:
        root = Path(ctx.workspace).resolve(strict=True)
    except (OSError, RuntimeError):
        raise FileToolError(
            f"the workspace folder {_show(str(ctx.workspace))} does not exist"
        ) from None
    if not root.is_dir():
        raise FileToolError(f"the workspace {_show(str(root))} is not a folder")
    return root


def _parts(path: str, *, for_write: bool) -> tuple[str, ...]:
    """Check the text of a workspace-relative path; return its names (``.`` and empties dropped)."""
    if "\x00" in path:
        raise FileToolError(f"the path {_show(path)} contains a NUL byte; remove it")
    try:
        encoded = os.fsencode(path)
    except UnicodeEncodeError:
        raise FileToolError(
            f"the path {_show(path)} cannot be encoded for the file system"
        ) from None
    if len(encoded) > MAX_PATH_BYTES:
        raise FileToolError(f"the path is {len(encoded)} bytes long; the limit is {MAX_PATH_BYTES}")
    if path.startswith(("/", "~")):
        raise FileToolError(
            f"the path {_show(path)} is absolute; use a path relative to the workspace, "
            "like 'notes/todo.txt'"
        )
    names = tuple(p for p in path.split("/") if p not in ("", "."))
    for name in names:
        if name == "..":
            raise FileToolError(
                f"the path {_show(path)} uses '..'; paths must stay inside the workspace"
            )
        if len(os.fsencode(name)) > MAX_NAME_BYTES:
            raise FileToolError(
                f"the name {_show(name[:60])}… is longer than {MAX_NAME_BYTES} bytes; shorten it"
            )
        if for_write and has_unsafe_characters(name):
            raise FileToolError(
                f"the name {_show(name)} contains control or invisible characters; "
                "choose a name with visible characters only"
            )
    return names


def _locate(
    ctx: ToolContext, path: str, *, for_write: bool = False
) -> tuple[Path, tuple[str, ...]]:
    """Resolve ``path`` (following links) and return the workspace and the names inside it."""
    root = _workspace(ctx)
    names = _parts(path, for_write=for_write)
    try:
        target = root.joinpath(*names).resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops, unreadable folders
        raise FileToolError(f"cannot resolve {_show(path)}: {exc}") from None
    if not target.is_relative_to(root):
        raise FileToolError(
            f"the path {_show(path)} leads outside the workspace (through a symbolic link); "
            "only files inside the workspace can be used"
        )
    return root, target.relative_to(root).parts


def _open_folder(root: Path, names: tuple[str, ...], path: str, *, create: bool = False) -> int:
    """Open the folder ``root/names`` one name at a time, never following a link."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in names:
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise FileToolError(f"the folder of {_show(path)} does not exist") from None
                os.mkdir(name, 0o755, dir_fd=fd)
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise FileToolError(
                        f"{_show(name)} in {_show(path)} is not a folder (or was replaced by a "
                        "link while being checked)"
                    ) from None
                raise
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _os_error(action: str, path: str, exc: OSError) -> FileToolError:
    return FileToolError(f"cannot {action} {_show(path)}: {exc.strerror or exc}")


def _read_bytes(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` (a separate function so tests can make it fail halfway)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


@tool(capabilities={"reads_private"})
def read_file(path: str, ctx: ToolContext) -> str:
    """Read a text file from the workspace.

    Large files are cut after the first 200,000 bytes, with a note saying so.

    Args:
        path: The file's path relative to the workspace, e.g. "notes/todo.txt".
    """
    settings = ctx.settings_for("read_file")
    limit = int(settings.get("max_read_bytes", DEFAULT_MAX_READ_BYTES))
    root, names = _locate(ctx, path)
    if not names:
        raise FileToolError("that is the workspace folder itself; use list_dir to see its files")
    folder = _open_folder(root, names[:-1], path)
    try:
        info = os.stat(names[-1], dir_fd=folder, follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode):
            hint = "; use list_dir" if stat.S_ISDIR(info.st_mode) else ""
            raise FileToolError(f"{_show(path)} is {_kind(info.st_mode)}, not a file{hint}")
        fd = os.open(
            names[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder
        )
    except FileNotFoundError:
        raise FileToolError(f"{_show(path)} does not exist; list_dir shows what does") from None
    except OSError as exc:
        raise _os_error("read", path, exc) from None
    finally:
        os.close(folder)
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or opened.st_ino != info.st_ino:
            raise FileToolError(f"{_show(path)} changed while it was being opened; try again")
        _check_links(path, opened, settings, "read")
        data = _read_bytes(fd, limit + 1)
    except OSError as exc:
        raise _os_error("read", path, exc) from None
    finally:
        os.close(fd)
    if b"\x00" in data[:8192]:
        raise FileToolError(
            f"{_show(path)} looks binary (it contains NUL bytes); only text is read"
        )
    text = data[:limit].decode("utf-8", errors="replace")
    if len(data) > limit:
        text += f"\n[… file truncated: showing the first {limit} of {opened.st_size} bytes]"
    return text


@tool(risk="dangerous", capabilities=())
def write_file(path: str, content: str, ctx: ToolContext) -> str:
    """Create or replace a text file in the workspace (missing folders are created).

    The write is atomic: either the new content is there in full, or the old file is left
    as it was.

    Args:
        path: The file's path relative to the workspace, e.g. "out/report.md".
        content: The complete new content of the file (UTF-8 text).
    """
    settings = ctx.settings_for("write_file")
    limit = int(settings.get("max_write_bytes", DEFAULT_MAX_WRITE_BYTES))
    root, names = _locate(ctx, path, for_write=True)
    if not names:
        raise FileToolError("refusing to write the workspace folder itself; name a file inside it")
    reason = sensitive_reason(root, names)
    if reason is not None and settings.get("allow_sensitive") is not True:
        raise FileToolError(
            f"refusing to write {_show(path)}: {escape_for_display(reason)}. Write somewhere "
            "else; a person can allow such writes with the write_file setting allow_sensitive"
        )
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError:
        raise FileToolError("the content is not valid text (it has lone surrogates)") from None
    if len(data) > limit:
        raise FileToolError(f"the content is {len(data)} bytes; the limit is {limit} bytes")
    try:
        folder = _open_folder(root, names[:-1], path, create=True)
    except OSError as exc:
        raise _os_error("create the folder of", path, exc) from None
    try:
        return _replace(folder, names[-1], data, "/".join(names), settings)
    finally:
        os.close(folder)


def _replace(folder: int, name: str, data: bytes, path: str, settings: Mapping[str, Any]) -> str:
    mode = 0o644
    existed = False
    try:
        info = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _os_error("write", path, exc) from None
    else:
        if not stat.S_ISREG(info.st_mode):
            raise FileToolError(f"{_show(path)} is {_kind(info.st_mode)}; only files are written")
        _check_links(path, info, settings, "replace")
        mode, existed = stat.S_IMODE(info.st_mode), True
    temp = f".qwq-write-{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(
            temp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode,
            dir_fd=folder,
        )
    except OSError as exc:
        raise _os_error("write", path, exc) from None
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=folder)
        if isinstance(exc, OSError):
            raise _os_error("write", path, exc) from None
        raise
    verb = "replaced" if existed else "created"
    return f"{verb} {_show(path)} ({len(data)} bytes)"


def _check_links(path: str, info: os.stat_result, settings: Mapping[str, Any], verb: str) -> None:
    """Refuse a file with several hard links (another name of it may be outside)."""
    if info.st_nlink > 1 and settings.get("allow_hard_links") is not True:
        raise FileToolError(
            f"refusing to {verb} {_show(path)}: it has {info.st_nlink} hard links, and another "
            "of its names may be outside the workspace; copy the content to a new file instead"
        )


def _describe_write(arguments: Mapping[str, Any], ctx: ToolContext) -> str | None:
    """For the approval of a write: whether its path is sensitive, and what will happen."""
    path = arguments.get("path")
    if not isinstance(path, str):
        return None
    try:
        root, names = _locate(ctx, path, for_write=True)
    except FileToolError:
        return None  # the call will be refused with its own message
    reason = sensitive_reason(root, names) if names else None
    if reason is None:
        return None
    allowed = ctx.settings_for("write_file").get("allow_sensitive") is True
    outcome = (
        "writes there are allowed by the setting allow_sensitive"
        if allowed
        else "it will be refused (allow_sensitive is off)"
    )
    return f"sensitive path: {escape_for_display(reason)}; {outcome}"


write_file.describe_for_approval = _describe_write


@tool(capabilities={"reads_private"})
def list_dir(path: str = ".", *, ctx: ToolContext) -> str:
    """List a folder of the workspace: sub-folders end with "/", files show their size.

    Args:
        path: The folder relative to the workspace; "." is the workspace itself.
    """
    limit = int(ctx.settings_for("list_dir").get("max_entries", DEFAULT_MAX_ENTRIES))
    root, names = _locate(ctx, path)
    try:
        folder = _open_folder(root, names, path)
    except OSError as exc:
        raise _os_error("list", path, exc) from None
    try:
        with os.scandir(folder) as entries:
            items = sorted(entries, key=lambda e: e.name)
        lines = []
        for entry in items[:limit]:
            info = entry.stat(follow_symlinks=False)
            shown = escape_for_display(entry.name)
            if stat.S_ISDIR(info.st_mode):
                lines.append(shown + "/")
            elif stat.S_ISREG(info.st_mode):
                lines.append(f"{shown}  ({info.st_size} bytes)")
            else:
                lines.append(f"{shown}  ({_kind(info.st_mode)})")
    except OSError as exc:
        raise _os_error("list", path, exc) from None
    finally:
        os.close(folder)
    where = "the workspace" if not names else _show("/".join(names))
    header = f"{where}: {len(items)} entr{'y' if len(items) == 1 else 'ies'}"
    if len(items) > limit:
        lines.append(f"[… {len(items) - limit} more entries not shown]")
    return "\n".join([header, *lines]) if lines else header + " (empty)"
