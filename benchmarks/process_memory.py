"""The memory of a tree of processes, read from Linux's ``/proc``, sampled while it runs.

Weights that llama.cpp maps from a GGUF file are shared pages, counted in full in the RSS of
every process that maps them; the PSS (proportional set size, ``/proc/PID/smaps_rollup``)
divides each shared page among the processes that map it, so a sum of PSS over processes is
the memory they take together, and a sum of RSS counts a shared page once per process. Both
are recorded, PSS split into its anonymous part (heaps, the KV cache, compute buffers) and its
file-backed part (mapped weights, libraries), and which processes map a given file (the GGUF).

Linux only (:func:`supported`); a process that exits between listing and reading is skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")

_FIELDS = {"Rss:": "rss", "Pss:": "pss", "Pss_Anon:": "pss_anon", "Pss_File:": "pss_file"}


def supported() -> bool:
    """Whether this system reports PSS (Linux 4.14 or later: ``/proc/self/smaps_rollup``)."""
    return (PROC / "self" / "smaps_rollup").is_file()


@dataclass(frozen=True, slots=True)
class ProcessMemory:
    """One process at one moment; sizes in bytes."""

    pid: int
    role: str
    rss: int
    pss: int
    pss_anon: int
    pss_file: int
    maps_file: bool
    """Whether the process maps the file the sampler watches (the model's GGUF)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every process of the tree at one moment."""

    processes: tuple[ProcessMemory, ...]

    @property
    def pss(self) -> int:
        return sum(p.pss for p in self.processes)

    @property
    def rss(self) -> int:
        return sum(p.rss for p in self.processes)

    def by_role(self) -> dict[str, dict[str, int]]:
        """For each role: how many processes, how many of them map the watched file
        (``model_mappers``), and their summed ``pss``, ``pss_anon``, ``pss_file`` and ``rss``
        in bytes."""
        roles: dict[str, dict[str, int]] = {}
        for p in self.processes:
            row = roles.setdefault(
                p.role,
                {
                    "processes": 0,
                    "model_mappers": 0,
                    "pss": 0,
                    "pss_anon": 0,
                    "pss_file": 0,
                    "rss": 0,
                },
            )
            row["processes"] += 1
            row["model_mappers"] += p.maps_file
            for name in ("pss", "pss_anon", "pss_file", "rss"):
                row[name] += getattr(p, name)
        return roles


def read_memory(pid: int, watched: Path | None = None) -> dict[str, int] | None:
    """``rss``, ``pss``, ``pss_anon``, ``pss_file`` (bytes) of ``pid``, and ``maps_file``
    (1 when it maps ``watched``, else 0); ``None`` when the process is gone or unreadable."""
    try:
        rollup = (PROC / str(pid) / "smaps_rollup").read_text()
        maps = (PROC / str(pid) / "maps").read_text() if watched is not None else ""
    except OSError:  # gone, or not ours
        return None
    values = dict.fromkeys(_FIELDS.values(), 0)
    for line in rollup.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in _FIELDS:
            values[_FIELDS[parts[0]]] = int(parts[1]) * 1024  # kB
    if not values["rss"]:  # a zombie, or a kernel thread: nothing mapped
        return None
    values["maps_file"] = int(watched is not None and f" {watched}\n" in maps)
    return values


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (zombies included; they map nothing)."""
    found: list[int] = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def tree(root: int) -> list[int]:
    """``root`` and every process descended from it, parents first."""
    found, index = [root], 0
    while index < len(found):
        found += children(found[index])
        index += 1
    return found


def command_line(pid: int) -> list[str]:
    """The arguments of ``pid`` (empty when it is gone)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), which tells it from a later process
    that reuses its number; ``None`` when it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def snapshot(processes: list[tuple[int, str]], watched: Path | None = None) -> Snapshot:
    """The memory of each ``(pid, role)`` now (gone ones left out)."""
    found: list[ProcessMemory] = []
    for pid, role in processes:
        values = read_memory(pid, watched)
        if values is not None:
            found.append(
                ProcessMemory(
                    pid,
                    role,
                    values["rss"],
                    values["pss"],
                    values["pss_anon"],
                    values["pss_file"],
                    bool(values["maps_file"]),
                )
            )
    return Snapshot(tuple(found))


@dataclass
class Sampler:
    """Samples ``processes()`` (``(pid, role)`` pairs) every ``interval`` seconds from a
    thread between :meth:`start` and :meth:`stop`; keeps the peaks, not every sample.

    Args:
        processes: what to sample, asked anew each time (a tree gains and loses processes).
        watched: the file whose mappers are counted (the GGUF).
        interval: seconds between samples.
    """

    processes: Callable[[], list[tuple[int, str]]]
    watched: Path | None = None
    interval: float = 0.1
    samples: int = 0
    peak: Snapshot = field(default_factory=lambda: Snapshot(()))
    """The sample with the largest PSS sum."""
    peak_rss: int = 0
    """The largest RSS sum (another sample than ``peak``'s, maybe)."""
    most_mappers: int = 0
    """The most processes seen mapping ``watched`` at once."""
    seen: dict[int, tuple[int | None, str]] = field(default_factory=dict)
    """Every process sampled: its start time and role, to check later that none is left."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> Snapshot:
        """Take one sample now and fold it into the peaks."""
        listed = self.processes()
        for pid, role in listed:
            if pid not in self.seen:
                self.seen[pid] = (start_time(pid), role)
        now = snapshot(listed, self.watched)
        self.samples += 1
        if now.pss > self.peak.pss:
            self.peak = now
        self.peak_rss = max(self.peak_rss, now.rss)
        self.most_mappers = max(self.most_mappers, sum(p.maps_file for p in now.processes))
        return now

    def start(self) -> None:
        """Sample from a daemon thread until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.is_set():
                self.sample()
                self._stop.wait(self.interval)

        self._stop.clear()
        self._thread = threading.Thread(target=loop, name="memory-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling (one last sample is taken first, so a short phase has one)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sample()


def still_running(seen: dict[int, tuple[int | None, str]]) -> list[int]:
    """The processes of ``seen`` (:attr:`Sampler.seen`) that still run: same number, same
    start time, not a zombie."""
    left: list[int] = []
    for pid, (started, _) in seen.items():
        if started is not None and start_time(pid) == started and read_memory(pid) is not None:
            left.append(pid)
    return left
