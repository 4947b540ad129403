"""The results of ``qwq-agent run``: one JSON object per task, one line each, in ``--out``.

A line is written and flushed the moment its task ends, so a batch killed at any moment
(SIGKILL included) keeps every finished result; at most the line being written is torn.
:class:`ResultsFile` opened with ``resume=True`` repairs such a torn last line (dropped, or
completed with its newline when it is whole JSON), reads what is there, and appends; without
``resume`` it starts the file anew. A result recorded as ``interrupted`` does not count as
done: ``--resume`` runs that task again (the newer line wins when both are read).

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
    """One :class:`agent.expect.ExpectResult` dict per check: kind, ok, expected, detail."""
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


def read_results(path: str | Path) -> tuple[list[TaskResult], int]:
    """The complete results in ``path``, in file order, and how many lines were unreadable."""
    results: list[TaskResult] = []
    skipped = 0
    with Path(path).open("r", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError:
                skipped += 1
                continue
            result = TaskResult.from_dict(data) if isinstance(data, dict) else None
            if result is None:
                skipped += 1
            else:
                results.append(result)
    return results, skipped


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
        self.skipped_lines = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.exists():
            self.dropped_torn_line = repair_tail(self.path)
            results, self.skipped_lines = read_results(self.path)
            for result in results:
                self.earlier[result.id] = result
        self._file: IO[str] = self.path.open("a" if resume else "w", encoding="utf-8")
        self._lock = threading.Lock()

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
