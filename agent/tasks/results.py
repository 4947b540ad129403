"""The results of ``qwq-agent run``: one JSON object per task, one line each, in ``--out``.

A line is written and flushed the moment its task ends, so a batch killed at any moment
(SIGKILL included) keeps every finished result; at most the line being written is torn.
:class:`ResultsFile` opened with ``resume=True`` repairs such a torn last line (dropped, or
completed with its newline when it is whole JSON), reads what is there, and appends; without
``resume`` it starts the file anew. A result recorded as ``interrupted`` does not count as
done: ``--resume`` runs that task again (the newer line wins when both are read). Lines that
are not results are skipped, and their numbers kept (:attr:`ResultsFile.unreadable`) so that
the caller can say so. :func:`not_a_results_file` tells, before any of this, whether an
existing file looks like something else (a task file, a script) that must not be overwritten.

The fields of a line are those of :class:`TaskResult`.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


@dataclass
class TaskResult:
    """What one task produced; ``ok`` means the run completed and every expectation passed."""

    id: str
    ok: bool
    answer: str
    finish_reason: str
    """``completed``, a limit (``max_steps`` …), ``cancelled`` or ``error``."""
    model: str = ""
    detail: str = ""
    """Why the run ended when it did not complete by itself."""
    error: str | None = None
    """What went wrong with the run (``None`` when it completed, even if an expectation failed)."""
    interrupted: bool = False
    """The batch was stopped (SIGINT/SIGTERM) during this task."""
    expectations: list[dict[str, Any]] = field(default_factory=list)
    """One :class:`agent.tasks.expect.ExpectResult` dict per check: kind, ok, expected, detail."""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    duration: float = 0.0
    """Seconds, from the start of the task to its end."""
    transcript_path: str | None = None

    def to_json(self) -> str:
        """One line of JSON (no newline)."""
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskResult | None:
        """A result read back from a line; ``None`` when the line is not one."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data.get("id"), str) or not isinstance(data.get("ok"), bool):
            return None
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError:
            return None

    @property
    def failure(self) -> str:
        """A short reason for a person when not ``ok`` (empty when ``ok``)."""
        if self.ok:
            return ""
        if self.error:
            return self.error
        failed = [e for e in self.expectations if not e.get("ok")]
        return "; ".join(f"{e.get('kind')}: {e.get('detail')}" for e in failed)


PEEK_BYTES = 1024 * 1024
"""How much of an existing ``--out`` :func:`not_a_results_file` reads, at most."""


def read_results(path: str | Path) -> tuple[list[TaskResult], int]:
    """The complete results in ``path``, in file order, and how many lines were unreadable."""
    results, unreadable = read_results_and_unreadable(path)
    return results, len(unreadable)


def read_results_and_unreadable(
    path: str | Path,
) -> tuple[list[TaskResult], list[tuple[int, str]]]:
    """The complete results in ``path``, in file order, and each non-blank line that is not a
    result: its number (from 1) and its text."""
    results: list[TaskResult] = []
    unreadable: list[tuple[int, str]] = []
    with Path(path).open("r", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError:
                data = None
            result = TaskResult.from_dict(data) if isinstance(data, dict) else None
            if result is None:
                unreadable.append((number, line.rstrip("\r\n")))
            else:
                results.append(result)
    return results, unreadable


def not_a_results_file(path: Path) -> str | None:
    """What ``path`` holds when it is an existing file but not results of ``qwq-agent run``
    (for a person: ``its first line is not JSON: 'model: x'``), or ``None`` when writing
    results there destroys nothing else: it does not exist, is not a regular file (a folder,
    ``/dev/null``), is blank, or its first non-blank line is a result, or the start of one (a
    line torn by a kill, or longer than :data:`PEEK_BYTES`, which is all that is read).

    Raises:
        OSError: the file exists but cannot be read.
    """
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        line = b" "
        while line and not line.strip():
            line = handle.readline(PEEK_BYTES)
    text = line.strip()
    if not text:
        return None
    shown = quote_line(text)
    try:
        data = json.loads(text)
    except ValueError:
        if not line.endswith(b"\n") and text.startswith(b'{"id":'):
            return None  # how every result line starts (see TaskResult.to_json)
        return f"its first line is not JSON: {shown}"
    if not isinstance(data, dict):
        return f"its first line is JSON but not an object: {shown}"
    if TaskResult.from_dict(data) is None:
        return f"its first line is a JSON object but not a result: {shown}"
    return None


def quote_line(text: str | bytes, limit: int = 60) -> str:
    """A line quoted for a message: decoded leniently, cut to ``limit`` characters, control
    characters escaped (``repr``)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return repr(text if len(text) <= limit else text[:limit] + "…")


def repair_tail(path: Path) -> bool:
    """Make ``path`` end with a newline: complete a whole last line, drop a torn one.

    Returns:
        Whether a torn line was dropped.
    """
    with path.open("r+b") as handle:
        data = handle.read()
        if not data or data.endswith(b"\n"):
            return False
        cut = data.rfind(b"\n") + 1
        try:
            json.loads(data[cut:])
        except ValueError:
            handle.truncate(cut)
            return True
        handle.write(b"\n")
        return False


class ResultsFile:
    """The ``--out`` file of a batch; see the module docstring. Thread-safe writes.

    Raises:
        OSError: the file or its folder cannot be created or read.
    """

    def __init__(self, path: str | Path, *, resume: bool = False) -> None:
        self.path = Path(path)
        self.earlier: dict[str, TaskResult] = {}
        """The last complete result of each task already in the file (``resume`` only)."""
        self.dropped_torn_line = False
        self.unreadable: list[tuple[int, str]] = []
        """Lines already in the file that are not results (``resume`` only): number, text.
        They are left in the file, and count for no task."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.exists():
            self.dropped_torn_line = repair_tail(self.path)
            results, self.unreadable = read_results_and_unreadable(self.path)
            for result in results:
                self.earlier[result.id] = result
        self._file: IO[str] = self.path.open("a" if resume else "w", encoding="utf-8")
        self._lock = threading.Lock()

    @property
    def skipped_lines(self) -> int:
        """How many lines of :attr:`unreadable` there are."""
        return len(self.unreadable)

    def done_ids(self) -> set[str]:
        """Tasks whose result is in the file and was not interrupted."""
        return {i for i, r in self.earlier.items() if not r.interrupted}

    def write(self, result: TaskResult) -> None:
        """Append ``result`` as one line and flush it to the operating system."""
        with self._lock:
            self._file.write(result.to_json() + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
