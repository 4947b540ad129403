"""JSONL transcripts: every event of every run, one JSON object per line, written as it goes.

A session file holds the runs of one conversation. Each run starts with a ``run_started``
record (the prompt and what the agent was), followed by that run's events (see
:mod:`agent.events`). Every line goes through :func:`models.redact.redact` first: no
configured credential (API key, header value, ``user:pass@`` of a server URL) is ever
written, whatever event carried it.

Writes are coalesced, because a model streams one ``Thinking`` or ``Text`` event per token:
consecutive deltas of one kind become one record (``Thinking("ab")`` for ``Thinking("a")``,
``Thinking("b")``), written at most :data:`FLUSH_INTERVAL` seconds after its first delta
arrived (a background thread sees to it when the stream pauses). Every other record (a tool
call, a result, usage, the end of a run) is written and flushed at once, after the deltas
before it, so the order of the file is the order of the run. Closing the writer, the end of
a run (also when the consumer raised or stopped iterating) and the interpreter's exit flush
what is pending. So a process killed outright (SIGKILL, power loss) loses at most the
thinking and answer text of the last :data:`FLUSH_INTERVAL` seconds; the reader ignores a
torn last line instead of failing.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from agent.events import Event, Text, Thinking, event_from_dict, event_to_json
from models.redact import redact

FLUSH_INTERVAL = 0.2
"""Seconds a streamed delta may wait before it is on disk (the most a hard kill loses)."""


def default_sessions_dir() -> Path:
    """``$QWQ_AGENT_SESSIONS`` if set, else the platform's user data folder + ``sessions``."""
    override = os.environ.get("QWQ_AGENT_SESSIONS")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("qwq-agent", appauthor=False)) / "sessions"


class TranscriptWriter:
    """Appends records to one session file; opened lazily, writes coalesced (module docstring).

    Thread-safe: the background flusher and the run's thread share it under a lock.

    Args:
        path: the session file (created with its folders on the first write; appended to).
        flush_interval: the most seconds a thinking or answer delta waits before it is
            written (``None``: :data:`FLUSH_INTERVAL` as it is when the writer is made);
            ``0`` writes and flushes every event as it comes, each delta its own line.

    Raises:
        ValueError: a negative ``flush_interval``.
    """

    def __init__(self, path: str | Path, *, flush_interval: float | None = None) -> None:
        if flush_interval is None:
            flush_interval = FLUSH_INTERVAL
        if flush_interval < 0:
            raise ValueError(f"flush_interval must be 0 or more seconds, not {flush_interval!r}")
        self.path = Path(path)
        self.flush_interval = flush_interval
        self._file: IO[str] | None = None
        self._lock = threading.Lock()
        self._lines: list[str] = []
        """Records not yet written, in order (redacted, without their newline)."""
        self._delta_kind: str | None = None
        self._delta: list[str] = []
        """The texts of the deltas being merged into one record of ``_delta_kind``."""
        self._since: float | None = None
        """``time.monotonic()`` when the oldest unwritten record arrived (``None``: none)."""
        _FLUSHER.watch(self)

    @staticmethod
    def new_path(folder: str | Path) -> Path:
        """A fresh, sortable file name in ``folder`` (``20261124-061500-ab12cd.jsonl``)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return Path(folder) / f"{stamp}-{secrets.token_hex(3)}.jsonl"

    def start_run(self, prompt: str, meta: dict[str, Any]) -> None:
        """Record that a run of ``prompt`` begins (``meta``: model, placement, tools …)."""
        record = {"kind": "run_started", "prompt": prompt, "time": time.time(), **meta}
        self._record(json.dumps(record, ensure_ascii=False))

    def write(self, event: Event) -> None:
        """Append one event: a thinking or answer delta joins the pending record of its kind
        (written within ``flush_interval``), anything else is written at once.

        Raises:
            OSError: the file cannot be written (also for deltas pending from before).
        """
        if isinstance(event, Thinking | Text) and self.flush_interval > 0:
            with self._lock:
                if self._delta_kind != event.kind:
                    self._seal()
                    self._delta_kind = event.kind
                self._delta.append(event.text)
                now = time.monotonic()
                if self._since is None:
                    self._since = now
                    _FLUSHER.wake()
                elif now - self._since >= self.flush_interval:
                    self._flush()
            return
        self._record(event_to_json(event))

    def end_run(self, messages: list[dict[str, Any]]) -> None:
        """Record the conversation messages the run added (what :meth:`Agent.resume` reads)."""
        self._record(json.dumps({"kind": "messages", "messages": messages}, ensure_ascii=False))

    def reset(self) -> None:
        """Record that the conversation was reset: :meth:`Transcript.history` starts after it."""
        self._record(json.dumps({"kind": "reset", "time": time.time()}))

    def flush(self) -> None:
        """Write everything pending now.

        Raises:
            OSError: the file cannot be written (what was pending stays pending).
        """
        with self._lock:
            self._flush()

    def close(self) -> None:
        """Write what is pending and close the file (the next record reopens it, appending).

        Raises:
            OSError: the pending records cannot be written (the file is closed all the same).
        """
        with self._lock:
            try:
                self._flush()
            finally:
                if self._file is not None:
                    self._file.close()
                    self._file = None

    def due(self, now: float) -> float | None:
        """For the flusher: write what is pending if it is due at ``now``; return when the
        rest will be due (``None``: nothing pending, or the file cannot be written now, in
        which case the run's own next write raises the error)."""
        with self._lock:
            if self._since is None:
                return None
            if now - self._since < self.flush_interval:
                return self._since + self.flush_interval
            with contextlib.suppress(OSError):
                self._flush()
            return None

    # -- under the lock ------------------------------------------------------------------

    def _record(self, line: str) -> None:
        with self._lock:
            self._seal()
            self._lines.append(redact(line))
            self._flush()

    def _seal(self) -> None:
        """Turn the deltas being merged into a record."""
        if self._delta:
            text = "".join(self._delta)
            event = Thinking(text) if self._delta_kind == "thinking" else Text(text)
            self._lines.append(redact(event_to_json(event)))
            self._delta = []
        self._delta_kind = None
        if self._lines and self._since is None:
            self._since = time.monotonic()

    def _flush(self) -> None:
        self._seal()
        if not self._lines:
            self._since = None
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = _ends_without_newline(self.path)
            self._file = self.path.open("a", encoding="utf-8")
            if torn:  # a crash tore the last line: never glue a record onto it
                self._file.write("\n")
        self._file.write("\n".join(self._lines) + "\n")
        self._file.flush()
        self._lines = []
        self._since = None


class _Flusher:
    """One daemon thread for the process: writes each writer's pending deltas when they are
    due, so that a stream that pauses (a long prefill, a slow server) does not hold them."""

    def __init__(self) -> None:
        self._writers: weakref.WeakSet[TranscriptWriter] = weakref.WeakSet()
        self._guard = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, writer: TranscriptWriter) -> None:
        with self._guard:
            self._writers.add(writer)

    def wake(self) -> None:
        """A writer has a new pending record: make sure the thread runs and looks."""
        if self._thread is None:
            with self._guard:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="qwq-transcript-flusher", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    def writers(self) -> list[TranscriptWriter]:
        with self._guard:
            return list(self._writers)

    def flush_all(self) -> None:
        """Write every writer's pending records (at exit); errors are left unsaid, as the
        interpreter is going away."""
        for writer in self.writers():
            with contextlib.suppress(OSError):
                writer.flush()

    def _run(self) -> None:
        timeout: float | None = None
        while True:
            # A new pending record wakes the thread at once, whatever it was waiting for
            # (a writer with a long interval must not hold up one with a short one).
            self._wake.wait(timeout)
            self._wake.clear()  # before looking: a record that arrives later wakes us again
            now = time.monotonic()
            due = [d for w in self.writers() if (d := w.due(now)) is not None]
            timeout = max(0.0, min(due) - time.monotonic()) + 0.001 if due else None


_FLUSHER = _Flusher()
atexit.register(_FLUSHER.flush_all)


@dataclass
class TranscriptRun:
    """One run as read back: its prompt, what the agent was, and its events."""

    prompt: str
    meta: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    messages: list[dict[str, Any]] | None = None
    """The conversation messages the run added, once it ended (``None``: it never did)."""

    @property
    def finished(self) -> bool:
        """Whether the run reached its ``Finished`` event (a killed run did not)."""
        return bool(self.events) and self.events[-1].kind == "finished"


@dataclass
class Transcript:
    """A session file read back."""

    path: Path
    runs: list[TranscriptRun]
    skipped_lines: int = 0
    """Lines that could not be read (a torn last line after a crash, for instance)."""
    conversation_start: int = 0
    """The index in ``runs`` of the first run after the last reset (0: never reset)."""

    def history(self) -> list[dict[str, Any]]:
        """The conversation as messages, to continue it: the runs since the last reset. A run
        that never ended (a crash) contributes its prompt and whatever answer text it had
        produced."""
        messages: list[dict[str, Any]] = []
        for run in self.runs[self.conversation_start :]:
            if run.messages is not None:
                messages.extend(run.messages)
                continue
            messages.append({"role": "user", "content": run.prompt})
            text = "".join(e.text for e in run.events if e.kind == "text")
            if text.strip():
                messages.append({"role": "assistant", "content": text.strip()})
        return messages


def load_transcript(path: str | Path) -> Transcript:
    """Read a session file; unreadable lines are counted in ``skipped_lines``, not fatal.

    Raises:
        OSError: the file cannot be opened.
    """
    file = Path(path)
    runs: list[TranscriptRun] = []
    skipped = 0
    start = 0
    with file.open("r", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if record.get("kind") == "run_started":
                    meta = {k: v for k, v in record.items() if k not in ("kind", "prompt")}
                    runs.append(TranscriptRun(str(record.get("prompt", "")), meta))
                    continue
                if record.get("kind") == "reset":
                    start = len(runs)
                    continue
                if record.get("kind") == "messages" and runs:
                    messages = record["messages"]
                    if not isinstance(messages, list):
                        raise ValueError("messages must be a list")
                    runs[-1].messages = messages
                    continue
                event = event_from_dict(record)
            except (ValueError, TypeError, KeyError, AttributeError):
                skipped += 1
                continue
            if not runs:
                runs.append(TranscriptRun("", {}))
            runs[-1].events.append(event)
    return Transcript(file, runs, skipped, start)


def _ends_without_newline(path: Path) -> bool:
    """Whether ``path`` exists, is not empty and its last byte is not a newline."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            if handle.tell() == 0:
                return False
            handle.seek(-1, 2)
            return handle.read(1) != b"\n"
    except FileNotFoundError:
        return False


def list_sessions(folder: str | Path | None = None) -> list[Path]:
    """Session files in ``folder`` (default: :func:`default_sessions_dir`), newest first."""
    root = Path(folder) if folder is not None else default_sessions_dir()
    if not root.is_dir():
        return []
    return sorted(root.glob("*.jsonl"), reverse=True)
