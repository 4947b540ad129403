"""Where the keys of a TOML file are: line and column for error messages.

``tomllib`` returns plain data without positions. :func:`key_places` scans the text once for
table headers (``[limits]``, ``[endpoints.local]``, ``[[mcp]]``, whose n-th occurrence is
index n) and ``key = value`` lines, and maps each key path, as pydantic writes it in an
error's ``loc`` (``("limits", "max_steps")``, ``("mcp", 0, "command")``), to where the key is
written. :func:`locate` finds a path or its nearest written ancestor. Lines inside multi-line
strings and arrays are skipped; keys inside inline tables are located at their table.
"""

from __future__ import annotations

import re

Place = tuple[int, int]
"""Line and column, both counted from 1."""
KeyPath = tuple[str | int, ...]

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_PART = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED = rf"{_PART}(?:\s*\.\s*{_PART})*"
_HEADER = re.compile(rf"^\s*(\[\[|\[)\s*({_DOTTED})\s*\]\]?")
_KEY = re.compile(rf"^\s*({_DOTTED})\s*=")
_PARTS = re.compile(_PART)


def _split(dotted: str) -> list[str]:
    return [p[1:-1] if p[:1] in "\"'" else p for p in _PARTS.findall(dotted)]


def key_places(text: str) -> dict[KeyPath, Place]:
    """Every table and key of ``text`` with where it is written (see the module docstring)."""
    places: dict[KeyPath, Place] = {}
    table: KeyPath = ()
    counts: dict[KeyPath, int] = {}
    open_multiline: str | None = None
    depth = 0
    for number, line in enumerate(text.splitlines(), 1):
        if open_multiline is not None:
            if line.count(open_multiline) % 2 == 1:
                open_multiline = None
            continue
        if depth > 0:
            depth += line.count("[") - line.count("]")
            continue
        header = _HEADER.match(line)
        if header is not None:
            path = _resolve(tuple(_split(header.group(2))), counts)
            if header.group(1) == "[[":
                counts[path] = counts.get(path, -1) + 1
                path = (*path, counts[path])
            table = path
            places.setdefault(table, (number, header.start(2) + 1))
            continue
        key = _KEY.match(line)
        if key is None:
            continue
        places.setdefault((*table, *_split(key.group(1))), (number, key.start(1) + 1))
        value = line[key.end() :]
        for quotes in ('"""', "'''"):
            if value.count(quotes) % 2 == 1:
                open_multiline = quotes
        if open_multiline is None and value.lstrip().startswith("["):
            depth = value.count("[") - value.count("]")
    return places


def _resolve(path: KeyPath, counts: dict[KeyPath, int]) -> KeyPath:
    """``path`` with the current index after each array of tables it goes through
    (``[mcp.env]`` after the second ``[[mcp]]`` is ``("mcp", 1, "env")``)."""
    resolved: list[str | int] = []
    for part in path:
        resolved.append(part)
        if tuple(resolved) in counts and len(resolved) < len(path):
            resolved.append(counts[tuple(resolved)])
    return tuple(resolved)


def locate(places: dict[KeyPath, Place], path: KeyPath) -> Place | None:
    """Where ``path`` is written, or its nearest ancestor that is (``None``: none is)."""
    for end in range(len(path), 0, -1):
        found = places.get(path[:end])
        if found is not None:
            return found
    return None
