"""Read a YAML configuration file safely, keeping where every value came from.

Contract of :func:`load_yaml`: the semantics of ``yaml.safe_load`` (plain data only: no
``!!python`` or custom tags, so nothing is ever constructed but mappings, lists and scalars),
with the traps of YAML closed, each a :class:`YamlLoadError` that names the file, and the line
and column where known:

* a file that is not UTF-8 (the byte offset becomes a line and column), over
  :data:`MAX_BYTES`, or empty (only comments counts as empty);
* tabs used for indentation (YAML allows spaces only);
* duplicate keys in a mapping (``safe_load`` silently keeps the last one);
* keys that are not text (``on:`` is the boolean ``True`` in YAML 1.1, ``1:`` a number);
* nesting deeper than :data:`MAX_DEPTH`, more than :data:`MAX_ALIASES` aliases (``*name``),
  or aliases that expand to more than :data:`MAX_NODES` values (the "billion laughs").

Along with the data comes a :class:`SourceMap`: for every path into the data (``("tasks", 0,
"id")``) the line and column of its value and of its key, and the source text of plain scalars,
so that a later schema check can say ``tasks.yaml:7:9: ... YAML read `yes` as a boolean``.
Merge keys (``<<: *defaults``) work as in ``safe_load``; explicit keys win over merged ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from agent.errors import InputError

MAX_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 40
MAX_ALIASES = 100
MAX_NODES = 100_000

DocPath = tuple[str | int, ...]
"""A path into the loaded data: mapping keys and list indexes."""

_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_SCALAR_TAGS = {
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp")
}


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a file, both numbers counted from 1."""

    line: int
    column: int


class YamlLoadError(InputError):
    """A file that cannot be used; ``str()`` is ``FILE:LINE:COLUMN: message``."""

    def __init__(self, path: str | Path, message: str, location: Location | None = None) -> None:
        self.path = str(path)
        self.message = message
        self.location = location
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path
        if self.location is not None:
            where += f":{self.location.line}:{self.location.column}"
        return f"{where}: {self.message}"


@dataclass
class SourceMap:
    """Where the values of a loaded document came from (see the module docstring)."""

    values: dict[DocPath, Location] = field(default_factory=dict)
    keys: dict[DocPath, Location] = field(default_factory=dict)
    plain: dict[DocPath, str] = field(default_factory=dict)
    """The source text of plain (unquoted) scalars: what the author wrote, e.g. ``1.10``."""

    def locate(self, path: DocPath, *, key: bool = False) -> Location | None:
        """The location of ``path``, or of its nearest ancestor that is in the file."""
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if key and prefix in self.keys:
                return self.keys[prefix]
            if prefix in self.values:
                return self.values[prefix]
        return None


class _LimitError(yaml.MarkedYAMLError):
    """A limit of this module was broken (depth, aliases, expansion, tags, keys)."""


def _fail(problem: str, node_or_mark: Node | yaml.Mark | None) -> _LimitError:
    mark = node_or_mark.start_mark if isinstance(node_or_mark, Node) else node_or_mark
    return _LimitError(problem=problem, problem_mark=mark)


class _Loader(yaml.SafeLoader):
    """``SafeLoader`` whose composer counts aliases and bounds the nesting depth."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def _mark(self) -> yaml.Mark:
        mark: yaml.Mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        return mark

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _fail(
                    f"more than {MAX_ALIASES} aliases (*name); write the values out instead",
                    self._mark(),
                )
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _fail(f"nested more than {MAX_DEPTH} levels deep", self._mark())
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


def dotted(path: DocPath) -> str:
    """``path`` as a person reads it: ``tasks[2].expect.contains``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "the file"


def _location(mark: yaml.Mark | None) -> Location | None:
    return Location(mark.line + 1, mark.column + 1) if mark is not None else None


def decode(path: Path, raw: bytes) -> str:
    """``raw`` as UTF-8 text (a leading BOM dropped).

    Raises:
        YamlLoadError: the bytes are not UTF-8; the error says where.
    """
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        byte = raw[exc.start : exc.start + 1].hex()
        raise YamlLoadError(
            path,
            f"the file is not valid UTF-8 (byte 0x{byte}); save it with the UTF-8 encoding",
            Location(line, column),
        ) from None


def load_yaml(path: str | Path) -> tuple[Any, SourceMap]:
    """Load one YAML document from ``path``; see the module docstring.

    Returns:
        The data (dicts, lists, scalars) and its :class:`SourceMap`.

    Raises:
        YamlLoadError: every problem with the file, with its location when known.
    """
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_BYTES:
            raise YamlLoadError(file, f"the file is {size} bytes; the limit is {MAX_BYTES}")
        raw = file.read_bytes()
    except OSError as exc:
        raise YamlLoadError(file, f"cannot read the file: {exc.strerror or exc}") from None
    text = decode(file, raw)
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # checks every character first
        node = loader.get_single_node()
        if node is None:
            raise YamlLoadError(file, "the file is empty (nothing but comments or blank lines)")
        source = SourceMap()
        data = _Builder(loader, source).build(node, (), 0)
        return data, source
    except yaml.MarkedYAMLError as exc:
        raise YamlLoadError(file, _explain(exc), _location(exc.problem_mark)) from None
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        where = Location(before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1)
        raise YamlLoadError(
            file,
            f"the character #x{exc.character:04x} is not allowed in YAML; remove it or "
            "write it as an escape inside double quotes",
            where,
        ) from None
    except yaml.YAMLError as exc:  # anything else PyYAML may raise
        raise YamlLoadError(file, f"not valid YAML: {exc}") from None
    except RecursionError:
        raise YamlLoadError(file, f"nested more than {MAX_DEPTH} levels deep") from None
    finally:
        if loader is not None:
            loader.dispose()


def _explain(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or str(exc)
    if "'\\t'" in problem or "tab" in problem:
        return "a tab character where YAML expects spaces; indent with spaces only"
    if exc.context:
        return f"{problem} ({exc.context})"
    return problem


class _Builder:
    """Turns composed nodes into data, recording positions and checking keys and sizes."""

    def __init__(self, loader: _Loader, source: SourceMap) -> None:
        self.loader = loader
        self.source = source
        self.count = 0

    def build(self, node: Node, path: DocPath, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _fail(f"aliases expand the document past {MAX_NODES} values", node)
        if depth > MAX_DEPTH:
            raise _fail(f"nested more than {MAX_DEPTH} levels deep (through aliases)", node)
        self.source.values[path] = _location(node.start_mark) or Location(1, 1)
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                raise _fail(f"the tag {node.tag!r} is not allowed; use a plain list", node)
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        raise _fail(f"unexpected YAML node {type(node).__name__}", node)  # pragma: no cover

    def _scalar(self, node: ScalarNode, path: DocPath | None) -> Any:
        if node.tag not in _SCALAR_TAGS:
            raise _fail(
                f"the tag {node.tag!r} is not allowed; only plain YAML values (text, numbers, "
                "true/false, null, lists, mappings) are",
                node,
            )
        if node.style is None and path is not None:
            self.source.plain[path] = node.value
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: MappingNode, path: DocPath, depth: int) -> dict[str, Any]:
        if node.tag != _MAP:
            raise _fail(f"the tag {node.tag!r} is not allowed; use a plain mapping", node)
        merged: dict[str, Any] = {}
        explicit: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in reversed(sources):  # the first mapping listed wins
                    if not isinstance(source, MappingNode):
                        raise _fail("a merge key (<<) takes a mapping or a list of them", source)
                    merged.update(self._mapping(source, path, depth + 1))
                continue
            key = self._key(key_node)
            if key in explicit:
                first = self.source.keys[(*path, key)]
                raise _fail(
                    f"the key {key!r} appears twice in this mapping (first on line "
                    f"{first.line}); remove one",
                    key_node,
                )
            self.source.keys[(*path, key)] = _location(key_node.start_mark) or Location(1, 1)
            explicit[key] = self.build(value_node, (*path, key), depth + 1)
        self.source.values[path] = _location(node.start_mark) or Location(1, 1)
        return {**merged, **explicit}

    def _key(self, node: Node) -> str:
        if not isinstance(node, ScalarNode):
            raise _fail("a mapping key must be plain text, not a list or a mapping", node)
        value = self._scalar(node, None)
        if not isinstance(value, str):
            kind = "a boolean" if isinstance(value, bool) else type(value).__name__
            raise _fail(
                f"the key {node.value} is read by YAML as {kind} ({value!r}), not text; "
                f'put it in quotes: "{node.value}"',
                node,
            )
        return value
