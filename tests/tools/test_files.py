"""Workspace file tools: SECURITY.md group E (0 files touched outside the workspace)."""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

import pytest

import tools.files as files
from tools.base import ToolContext, ToolError
from tools.display import escape_for_display, has_unsafe_characters
from tools.files import FileToolError, list_dir, read_file, write_file
from tools.registry import builtin


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A workspace with a sibling-prefix folder ``ws-evil`` and a file beside it."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (tmp_path / "ws-evil").mkdir()
    (tmp_path / "ws-evil" / "secret.txt").write_text("secret")
    (tmp_path / "outside.txt").write_text("outside")
    (workspace / "notes.txt").write_text("hello\n")
    return workspace


def ctx_for(workspace: Path, **settings: object) -> ToolContext:
    return ToolContext(workspace=workspace, settings=settings)


def read(ws: Path, path: str, **settings: object) -> str:
    return str(read_file.invoke(read_file.validate({"path": path}), ctx_for(ws, **settings)))


def write(ws: Path, path: str, content: str, **settings: object) -> str:
    args = write_file.validate({"path": path, "content": content})
    return str(write_file.invoke(args, ctx_for(ws, **settings)))


def ls(ws: Path, path: str = ".", **settings: object) -> str:
    return str(list_dir.invoke(list_dir.validate({"path": path}), ctx_for(ws, **settings)))


def snapshot(root: Path, skip: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every entry under ``root`` except the workspace: kind/mode and content or link target."""
    state: dict[str, tuple[int, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == skip or skip in Path(dirpath).parents:
            dirnames.clear()
            continue
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            if full == skip:
                continue
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                state[str(full)] = (info.st_mode, os.readlink(full))
            elif stat.S_ISREG(info.st_mode):
                state[str(full)] = (info.st_mode, full.read_bytes())
            else:
                state[str(full)] = (info.st_mode, b"")
    return state


def test_round_trip_inside_the_workspace(ws: Path) -> None:
    assert write(ws, "out/deep/report.md", "# Report\nline 2\n") == (
        "created 'out/deep/report.md' (16 bytes)"
    )
    assert read(ws, "out/deep/report.md") == "# Report\nline 2\n"
    assert write(ws, "./out/deep/report.md", "v2") == "replaced 'out/deep/report.md' (2 bytes)"
    assert (ws / "out" / "deep" / "report.md").read_text() == "v2"
    listing = ls(ws)
    assert listing.splitlines() == ["the workspace: 2 entries", "notes.txt  (6 bytes)", "out/"]
    assert ls(ws, "out/deep").splitlines()[1] == "report.md  (2 bytes)"
    assert [p.name for p in (ws / "out" / "deep").iterdir()] == ["report.md"]  # no temp left


def test_symlinks_inside_the_workspace_are_followed(ws: Path) -> None:
    (ws / "docs").mkdir()
    (ws / "docs" / "a.txt").write_text("A")
    (ws / "alias").symlink_to("docs")
    (ws / "a-link").symlink_to("docs/a.txt")
    assert read(ws, "alias/a.txt") == "A"
    assert read(ws, "a-link") == "A"
    write(ws, "a-link", "B")  # replaces the file the link resolves to, link kept
    assert (ws / "docs" / "a.txt").read_text() == "B"
    assert (ws / "a-link").is_symlink()
    assert "a-link  (a symbolic link)" in ls(ws)


ESCAPES = [
    "../outside.txt",
    "../ws-evil/secret.txt",
    "sub/../../outside.txt",
    "/etc/passwd",
    "~/outside.txt",
    "link-out",
    "dir-out/secret.txt",
    "sibling/secret.txt",
    "dir-out/new.txt",
    "root-link/etc/hostname",
]


def make_escape_links(ws: Path, tmp_path: Path) -> None:
    (ws / "link-out").symlink_to(tmp_path / "outside.txt")
    (ws / "dir-out").symlink_to(tmp_path / "ws-evil")
    (ws / "sibling").symlink_to("../ws-evil")
    (ws / "root-link").symlink_to("/")


@pytest.mark.parametrize("path", ESCAPES)
def test_paths_leading_outside_are_refused(ws: Path, tmp_path: Path, path: str) -> None:
    make_escape_links(ws, tmp_path)
    before = snapshot(tmp_path, ws)
    with pytest.raises(FileToolError) as reading:
        read(ws, path)
    with pytest.raises(FileToolError) as writing:
        write(ws, path, "pwned")
    for caught in (reading, writing):
        assert any(word in str(caught.value) for word in ("outside", "'..'", "absolute"))
    assert snapshot(tmp_path, ws) == before
    assert (tmp_path / "outside.txt").read_text() == "outside"
    assert not (tmp_path / "ws-evil" / "new.txt").exists()


@pytest.mark.parametrize("path", ["../ws-evil", "dir-out", "/", ".."])
def test_listing_outside_is_refused(ws: Path, tmp_path: Path, path: str) -> None:
    make_escape_links(ws, tmp_path)
    with pytest.raises(FileToolError):
        ls(ws, path)


def test_link_swapped_in_after_the_check_is_not_followed(
    ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Resolve while "notes.txt" is a regular file, then swap it for a link to outside
    # before the open: O_NOFOLLOW makes the open fail instead of following the link.
    real_locate = files._locate
    located = real_locate(ctx_for(ws), "notes.txt")
    (ws / "notes.txt").unlink()
    (ws / "notes.txt").symlink_to(tmp_path / "outside.txt")
    monkeypatch.setattr(files, "_locate", lambda *a, **k: located)
    with pytest.raises(FileToolError, match="symbolic link"):
        read(ws, "notes.txt")
    with pytest.raises(FileToolError, match="symbolic link"):
        write(ws, "notes.txt", "pwned")
    assert (tmp_path / "outside.txt").read_text() == "outside"
    # The same holds for a folder swapped for a link on the way down.
    (ws / "d").mkdir()
    located_dir = real_locate(ctx_for(ws), "d/x.txt")
    (ws / "d").rmdir()
    (ws / "d").symlink_to(tmp_path / "ws-evil")
    monkeypatch.setattr(files, "_locate", lambda *a, **k: located_dir)
    with pytest.raises(FileToolError, match="not a folder"):
        write(ws, "d/x.txt", "pwned")
    assert not (tmp_path / "ws-evil" / "x.txt").exists()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("a\x00b", "NUL byte"),
        ("x" * 300, "longer than 255 bytes"),
        ("/".join(["d" * 200] * 25), "the limit is 4096"),
        (".", "workspace folder itself"),
        ("", "workspace folder itself"),
        ("./", "workspace folder itself"),
    ],
)
def test_bad_path_text_is_refused(ws: Path, path: str, message: str) -> None:
    with pytest.raises(FileToolError, match=message):
        write(ws, path, "x")
    assert sorted(p.name for p in ws.iterdir()) == ["notes.txt"]


def test_fifo_socket_and_device_are_refused_without_blocking(ws: Path) -> None:
    os.mkfifo(ws / "fifo")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(ws / "sock"))
        with pytest.raises(FileToolError, match="FIFO"):
            read(ws, "fifo")  # would block forever if opened for reading
        with pytest.raises(FileToolError, match="FIFO"):
            write(ws, "fifo", "x")
        with pytest.raises(FileToolError, match="socket"):
            read(ws, "sock")
        listing = ls(ws)
    assert "fifo  (a FIFO (named pipe))" in listing
    (ws / "zero").symlink_to("/dev/zero")
    with pytest.raises(FileToolError, match="outside"):
        read(ws, "zero")
    try:
        os.mknod(ws / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        return  # creating a device needs CAP_MKNOD
    with pytest.raises(FileToolError, match="device"):
        read(ws, "null")


def test_reads_are_capped(ws: Path) -> None:
    (ws / "big.txt").write_bytes(b"a" * 300_000)
    text = read(ws, "big.txt")
    assert text.startswith("a" * 200_000)
    assert text.endswith("[… file truncated: showing the first 200000 of 300000 bytes]")
    small = read(ws, "big.txt", read_file={"max_read_bytes": 10})
    assert small.startswith("a" * 10 + "\n[…")


def test_binary_files_are_refused(ws: Path) -> None:
    (ws / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    with pytest.raises(FileToolError, match="binary"):
        read(ws, "img.png")


def test_a_write_that_fails_halfway_leaves_the_old_file(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def half_then_full_disk(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "_write_all", half_then_full_disk)
    with pytest.raises(FileToolError, match="No space left on device"):
        write(ws, "notes.txt", "new content " * 1000)
    assert (ws / "notes.txt").read_text() == "hello\n"
    assert sorted(p.name for p in ws.iterdir()) == ["notes.txt"]  # temp file removed


def test_write_limits_and_folders(ws: Path) -> None:
    with pytest.raises(FileToolError, match="the limit is 5 bytes"):
        write(ws, "a.txt", "123456", write_file={"max_write_bytes": 5})
    (ws / "dir").mkdir()
    with pytest.raises(FileToolError, match="a folder"):
        write(ws, "dir", "x")
    with pytest.raises(FileToolError, match="not a folder"):
        write(ws, "notes.txt/child.txt", "x")
    with pytest.raises(FileToolError, match="lone surrogates"):
        write(ws, "s.txt", "\udc80")
    with pytest.raises(FileToolError, match="use list_dir"):
        read(ws, "dir")
    with pytest.raises(FileToolError, match="does not exist"):
        read(ws, "missing.txt")
    with pytest.raises(FileToolError, match="does not exist"):
        ls(ws, "missing")


def test_control_and_bidi_names(ws: Path) -> None:
    for name in ("evil\u202etxt.exe", "two\nlines", "bell\x07", "zero\u200bwidth"):
        with pytest.raises(FileToolError, match="control or invisible") as caught:
            write(ws, name, "x")
        assert name not in str(caught.value)  # shown escaped, never raw
    (ws / "evil\u202etxt.exe").write_text("x")
    (ws / "new\nline").write_text("x")
    listing = ls(ws)
    assert "evil\\u202etxt.exe" in listing and "\u202e" not in listing
    assert "new\\nline" in listing
    assert read(ws, "evil\u202etxt.exe") == "x"  # existing files stay readable
    with pytest.raises(FileToolError) as caught:
        read(ws, "missing\u202e\x1b[2J")
    assert "\\u202e\\x1b[2J" in str(caught.value)


def test_listing_is_capped_and_sorted(ws: Path) -> None:
    for i in range(12):
        (ws / f"f{i:02}").write_text("")
    lines = ls(ws, list_dir={"max_entries": 5}).splitlines()
    assert lines[0] == "the workspace: 13 entries"
    assert lines[1:6] == [f"f{i:02}  (0 bytes)" for i in range(5)]
    assert lines[-1] == "[… 8 more entries not shown]"
    (ws / "empty").mkdir()
    assert ls(ws, "empty") == "'empty': 0 entries (empty)"
    with pytest.raises(FileToolError, match="not a folder"):
        ls(ws, "notes.txt")


def test_missing_workspace(tmp_path: Path) -> None:
    with pytest.raises(FileToolError, match="does not exist"):
        read(tmp_path / "nope", "a.txt")


def test_escape_for_display() -> None:
    assert escape_for_display("plain/path.txt") == "plain/path.txt"
    assert escape_for_display("café/日本.txt") == "café/日本.txt"
    assert escape_for_display("a\nb\tc\rd") == "a\\nb\\tc\\rd"
    assert escape_for_display("\x1b]52;c;ZXZpbA==\x07") == "\\x1b]52;c;ZXZpbA==\\x07"
    assert escape_for_display("\u202e\u2066\u200b\ufeff\u2028") == (
        "\\u202e\\u2066\\u200b\\ufeff\\u2028"
    )
    assert escape_for_display("bad\udcff") == "bad\\udcff"
    assert escape_for_display("\x85\x9b") == "\\x85\\x9b"
    assert has_unsafe_characters("x\u202e") and not has_unsafe_characters("café")


def test_risk_levels_and_registry() -> None:
    assert builtin("read_file") is read_file and read_file.risk == "safe"
    assert builtin("list_dir") is list_dir and list_dir.risk == "safe"
    assert builtin("write_file") is write_file and write_file.risk == "dangerous"
    assert isinstance(FileToolError("x"), ToolError)
    assert list_dir.parameters["properties"]["path"]["default"] == "."
