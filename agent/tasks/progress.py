"""What ``qwq-agent run`` shows while it works, and the summary table at the end.

:func:`make_reporter` picks the display from the console: on a terminal, a Rich progress bar
(the batch, then one line per running task with its step, tokens and tokens/s, and a line per
finished task above it); elsewhere (CI logs, pipes), plain lines, one per event, never any
escape sequence. Both are :class:`Reporter` s, called from the runner's threads.

Nothing from the model is interpreted as Rich markup: task ids are plain by construction and
every other text is printed as :class:`rich.text.Text`, cleaned of terminal escapes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from agent.tasks.results import TaskResult
from agent.terminal import clean_for_terminal

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from agent.tasks.taskfile import TaskPlan
    from models import Usage


class Reporter(Protocol):
    """Receives the runner's progress; every method may be called from any thread."""

    def start(self, total: int, already_done: int) -> None: ...
    def task_started(self, plan: TaskPlan) -> None: ...
    def task_step(self, task_id: str, step: int, usage: Usage) -> None: ...
    def task_finished(self, result: TaskResult) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self) -> None: ...


def make_reporter(console: Console) -> Reporter:
    """A progress bar when ``console`` is a terminal, plain lines otherwise."""
    if console.is_terminal:
        return RichReporter(console)
    return PlainReporter(console)


def _verdict(result: TaskResult) -> str:
    if result.interrupted:
        return "interrupted"
    return "passed" if result.ok else "FAILED"


def _numbers(result: TaskResult) -> str:
    tokens = result.usage.get("completion_tokens", 0)
    steps = f"{result.steps} step{'' if result.steps == 1 else 's'}"
    return f"{result.duration:.1f} s, {steps}, {tokens} tokens"


def _rate(usage: Usage) -> str:
    return f"{usage.decode_tokens_per_second:.1f} tok/s"


class PlainReporter:
    """One line per event, for logs; see the module docstring."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._lock = threading.Lock()
        self._total = 0
        self._started = 0
        self._numbers: dict[str, int] = {}

    def _line(self, text: str) -> None:
        with self._lock:
            self.console.file.write(clean_for_terminal(text) + "\n")
            self.console.file.flush()

    def start(self, total: int, already_done: int) -> None:
        self._total = total
        done = f" ({already_done} already done)" if already_done else ""
        self._line(f"running {total} task{'s' if total != 1 else ''}{done}")

    def task_started(self, plan: TaskPlan) -> None:
        with self._lock:
            self._started += 1
            self._numbers[plan.id] = self._started
        self._line(f"[{self._numbers[plan.id]}/{self._total}] {plan.id}: started ({plan.model})")

    def task_step(self, task_id: str, step: int, usage: Usage) -> None:
        number = self._numbers.get(task_id, 0)
        self._line(
            f"[{number}/{self._total}] {task_id}: step {step}, "
            f"{usage.completion_tokens} tokens, {_rate(usage)}"
        )

    def task_finished(self, result: TaskResult) -> None:
        number = self._numbers.get(result.id, 0)
        line = f"[{number}/{self._total}] {result.id}: {_verdict(result)} ({_numbers(result)})"
        if result.failure:
            line += f": {_short(result.failure)}"
        self._line(line)

    def note(self, text: str) -> None:
        self._line(text)

    def stop(self) -> None:
        return None


class RichReporter:
    """A live progress bar on a terminal; see the module docstring."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = console
        self.progress: Progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._batch: TaskID | None = None
        self._rows: dict[str, TaskID] = {}

    def start(self, total: int, already_done: int) -> None:
        done = f" ({already_done} already done)" if already_done else ""
        self._batch = self.progress.add_task(f"tasks{done}", total=total)
        self.progress.start()

    def task_started(self, plan: TaskPlan) -> None:
        self._rows[plan.id] = self.progress.add_task(f"{plan.id}: starting", total=None)

    def task_step(self, task_id: str, step: int, usage: Usage) -> None:
        row = self._rows.get(task_id)
        if row is not None:
            description = (
                f"{task_id} · step {step} · {usage.completion_tokens} tokens · {_rate(usage)}"
            )
            self.progress.update(row, description=description)

    def task_finished(self, result: TaskResult) -> None:
        from rich.text import Text

        row = self._rows.pop(result.id, None)
        if row is not None:
            self.progress.remove_task(row)
        if self._batch is not None:
            self.progress.advance(self._batch)
        mark, style = ("✓", "green") if result.ok else ("✗", "red")
        if result.interrupted:
            mark, style = "■", "yellow"
        line = Text(f"{mark} {result.id} {_verdict(result)} ({_numbers(result)})", style=style)
        if result.failure:
            line.append(f": {_short(result.failure)}", style="dim")
        self.progress.console.print(line)

    def note(self, text: str) -> None:
        from rich.text import Text

        self.progress.console.print(Text(clean_for_terminal(text), style="yellow"))

    def stop(self) -> None:
        self.progress.stop()


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(clean_for_terminal(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_summary(
    console: Console,
    task_ids: Iterable[str],
    results: Mapping[str, TaskResult],
    earlier: Iterable[str] = (),
) -> None:
    """A table of every task in ``task_ids``: its verdict, numbers and why it failed.

    ``earlier`` names the results that come from a previous run (``--resume``).
    """
    from rich.table import Table
    from rich.text import Text

    from_before = set(earlier)
    table = Table(title="qwq-agent run", title_justify="left", expand=False)
    for name, justify in (("task", "left"), ("result", "left"), ("steps", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_column("tokens", justify="right")
    table.add_column("time", justify="right")
    table.add_column("notes", overflow="fold")
    counts = {"passed": 0, "failed": 0, "interrupted": 0, "not run": 0}
    for task_id in task_ids:
        result = results.get(task_id)
        if result is None:
            counts["not run"] += 1
            table.add_row(task_id, Text("not run", style="dim"), "", "", "", "")
            continue
        verdict = "interrupted" if result.interrupted else ("passed" if result.ok else "failed")
        counts[verdict] += 1
        style = {"passed": "green", "failed": "red", "interrupted": "yellow"}[verdict]
        label = verdict + (" (earlier)" if task_id in from_before else "")
        table.add_row(
            task_id,
            Text(label, style=style),
            str(result.steps),
            str(result.usage.get("completion_tokens", 0)),
            f"{result.duration:.1f} s",
            Text(_short(result.failure, 200)),
        )
    console.print(table)
    totals = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
    console.print(Text(totals or "no tasks"))
