"""JSONL transcripts: every event of every run, one JSON object per line, flushed per event.

A session file holds the runs of one conversation. Each run starts with a ``run_started``
record (the prompt and what the agent was), followed by that run's events (see
:mod:`agent.events`). The writer flushes after every line, so a crash, Ctrl-C or SIGKILL loses
at most the line being written; the reader ignores a torn last line instead of failing.
Every line goes through :func:`models.redact.redact` first: no configured credential (API key,
header value, ``user:pass@`` of a server URL) is ever written, whatever event carried it.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from agent.events import Event, event_from_dict, event_to_json
from models.redact import redact


def default_sessions_dir() -> Path:
    """``$QWQ_AGENT_SESSIONS`` if set, else the platform's user data folder + ``sessions``."""
    override = os.environ.get("QWQ_AGENT_SESSIONS")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("qwq-agent", appauthor=False)) / "sessions"


class TranscriptWriter:
    """Appends records to one session file; opened lazily, flushed per line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None

    @staticmethod
    def new_path(folder: str | Path) -> Path:
        """A fresh, sortable file name in ``folder`` (``20261124-061500-ab12cd.jsonl``)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return Path(folder) / f"{stamp}-{secrets.token_hex(3)}.jsonl"

    def _line(self, text: str) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = _ends_without_newline(self.path)
            self._file = self.path.open("a", encoding="utf-8")
            if torn:  # a crash tore the last line: never glue a record onto it
                self._file.write("\n")
        self._file.write(redact(text) + "\n")
        self._file.flush()

    def start_run(self, prompt: str, meta: dict[str, Any]) -> None:
        """Record that a run of ``prompt`` begins (``meta``: model, placement, tools …)."""
        record = {"kind": "run_started", "prompt": prompt, "time": time.time(), **meta}
        self._line(json.dumps(record, ensure_ascii=False))

    def write(self, event: Event) -> None:
        """Append one event."""
        self._line(event_to_json(event))

    def end_run(self, messages: list[dict[str, Any]]) -> None:
        """Record the conversation messages the run added (what :meth:`Agent.resume` reads)."""
        self._line(json.dumps({"kind": "messages", "messages": messages}, ensure_ascii=False))

    def reset(self) -> None:
        """Record that the conversation was reset: :meth:`Transcript.history` starts after it."""
        self._line(json.dumps({"kind": "reset", "time": time.time()}))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


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
