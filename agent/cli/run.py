"""``qwq-agent run TASKS.yaml``: run a task file headless, write results, print a summary.

Exit codes (as :mod:`agent.cli.entry`): 0 every task ran (now or, with ``--resume``, before) and
passed; 1 some task failed, errored or was not run because of ``--fail-fast``; 2 bad input,
reported before any task runs (task file, options, ``--only`` ids, the first model, a results
file that cannot be written or whose path holds something else: the task file, or a file
that is not results); 130 interrupted by SIGINT or SIGTERM: the running task ends cleanly, is recorded as
interrupted, and ``--resume`` picks the batch up from there (a second signal stops at once).

Settings come in layers (:mod:`agent.tasks.planning`): options given on the command line
override the task file, tasks included; the task file overrides the config file (``--config``,
else ``qwq-agent config path``), which overrides the built-in defaults. Options not given leave
the lower layers' values (the ``run`` parser's defaults are ``None`` for that reason). From the
config file a batch takes what a task file can also set (``model``, ``tools``, ``placement``,
``tool_choice``, ``temperature``, ``seed``, ``workspace``, ``system``, ``ctx``,
``n_gpu_layers``, the ``[limits]``), the run settings only it has (``max_repeated_calls``,
``tool_output_chars``, ``[tool_settings]``), its ``[endpoints]`` (model names) and its
``[approvals]``: ``"allow"`` pre-approves a tool as a task's ``approve:`` does, ``"deny"``
denies, ``"ask"`` denies (a batch has no person to ask); ``--yes`` allows everything. Its
``[[mcp]]`` servers are not used: a task file names its own (``mcp:``).
Progress goes to stderr (a bar on a terminal, plain lines otherwise), the summary to stdout,
results to ``--out`` (default: ``TASKS.results.jsonl`` beside the task file) and transcripts
to the folder beside it (``TASKS.results.transcripts/ID.jsonl``). With ``--resume``, lines
of ``--out`` that are not results are reported on stderr (``FILE:LINE:``) and left alone.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from agent.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    tool_names,
)
from agent.errors import InputError

if TYPE_CHECKING:
    from rich.console import Console

    from agent.config import Config
    from agent.tasks.results import TaskResult
    from agent.tasks.runner import BackendFactory, Runner
    from agent.tasks.taskfile import Settings, TaskPlan
    from models import Backend
    from models.options import BackendOptions

_OPTIONS = {
    "model": "model",
    "ctx": "ctx",
    "n_gpu_layers": "n_gpu_layers",
    "temperature": "temperature",
    "seed": "seed",
    "placement": "placement",
    "tool_choice": "tool_choice",
    "workspace": "workspace",
    "max_steps": "max_steps",
    "max_tokens": "max_tokens",
    "thinking_budget": "thinking_budget",
    "timeout": "timeout_s",
    "system": "system",
}
"""argparse destination -> task-file setting, for the options a task file also has."""


class BadInput(InputError):
    """Input that stops the batch before it starts; the message is for a person."""


def run_tasks(
    args: argparse.Namespace,
    *,
    stdout: Console | None = None,
    stderr: Console | None = None,
    factory: BackendFactory | None = None,
) -> int:
    """Run ``args.file``; return the exit code (see the module docstring).

    ``stdout``, ``stderr`` and ``factory`` (how models are opened) exist for tests.
    """
    from rich.console import Console
    from rich.text import Text

    from agent.cli.build import OptionError, check_flags
    from agent.tasks.planning import plan_tasks
    from agent.tasks.progress import make_reporter
    from agent.tasks.results import ResultsFile
    from agent.tasks.runner import Runner
    from agent.tasks.taskfile import TaskFileError, read_task_file
    from models import BackendError

    out = stdout or Console(highlight=False)
    err = stderr or Console(stderr=True, highlight=False)
    try:
        check_flags(args)
        config = _config(args)
        spec = read_task_file(args.file)
        plans = _select(
            plan_tasks(spec, _overrides(args), config=config),
            args.only,
            spec.ids(),
        )
        if args.concurrency < 1:
            raise BadInput(f"--concurrency: must be at least 1, got {args.concurrency!r}")
        out_path = Path(args.out) if args.out else _default_out(Path(args.file))
        _check_out(out_path, Path(args.file), resume=args.resume)
        results = ResultsFile(out_path, resume=args.resume)
    except TaskFileError as exc:
        for problem in exc.problems:
            err.print(Text(f"qwq-agent: {problem}", style="bold red"), soft_wrap=True)
        return EXIT_BAD_INPUT
    except (BadInput, OptionError, OSError) as exc:
        err.print(Text(f"qwq-agent: {exc}", style="bold red"), soft_wrap=True)
        return EXIT_BAD_INPUT

    reporter = make_reporter(err)
    done = results.done_ids()
    todo = [p for p in plans if p.id not in done]
    transcripts = None if args.no_transcript else out_path.with_name(out_path.stem + ".transcripts")
    runner = Runner(
        todo,
        results=results,
        reporter=reporter,
        concurrency=args.concurrency,
        fail_fast=args.fail_fast,
        approve_all=args.yes,
        transcripts_dir=transcripts,
        factory=factory
        or _opener(
            config, _server_options(args), lookup=not args.no_lookup, sessions=args.concurrency
        ),
    )
    try:
        if results.dropped_torn_line:
            reporter.note(f"{out_path}: dropped a torn last line left by an interrupted run")
        for line in _unreadable_notes(out_path, results.unreadable):
            reporter.note(line)
        runner.preload()
        with _signals(runner):
            runner.run(already_done=len(plans) - len(todo))
    except BackendError as exc:
        err.print(Text(f"qwq-agent: {exc}", style="bold red"), soft_wrap=True)
        return EXIT_BAD_INPUT
    finally:
        results.close()
    return _finish(out, err, plans, runner, results.earlier, out_path)


def _finish(
    out: Console,
    err: Console,
    plans: list[TaskPlan],
    runner: Runner,
    earlier: dict[str, TaskResult],
    out_path: Path,
) -> int:
    from rich.text import Text

    from agent.tasks.progress import print_summary

    now = {r.id: r for r in runner.results}
    merged = {p.id: now.get(p.id) or earlier.get(p.id) for p in plans}
    results = {k: v for k, v in merged.items() if v is not None}
    print_summary(out, [p.id for p in plans], results, earlier=set(earlier) - set(now))
    out.print(Text(f"results: {out_path}"), soft_wrap=True)
    if runner.interrupted_by is not None:
        err.print(
            Text(
                f"qwq-agent: interrupted by {runner.interrupted_by}; run again with --resume "
                "to finish the batch",
                style="yellow",
            ),
            soft_wrap=True,
        )
        return EXIT_INTERRUPTED
    if len(results) < len(plans) or not all(r.ok for r in results.values()):
        return EXIT_FAILED
    return EXIT_OK


def _default_out(task_file: Path) -> Path:
    return task_file.with_name(task_file.stem + ".results.jsonl")


def _check_out(out_path: Path, task_file: Path, *, resume: bool) -> None:
    """Refuse an ``--out`` whose content results would destroy: the task file itself, or an
    existing file that is not a results file (see :func:`agent.tasks.results.not_a_results_file`).

    Raises:
        BadInput: with what was found and another path to use.
        OSError: ``out_path`` exists but cannot be read.
    """
    from agent.tasks.results import not_a_results_file

    other = _default_out(task_file)
    if other.resolve() == out_path.resolve():
        other = out_path.with_name(out_path.stem + ".new.jsonl")
    instead = f"give --out another path, e.g. --out {other}"
    if out_path.is_dir():
        raise BadInput(f"--out {out_path} is a folder; results go to a file: {instead}")
    if out_path.exists() and task_file.exists() and os.path.samefile(out_path, task_file):
        raise BadInput(
            f"--out {out_path} is the task file itself, which results would overwrite; {instead}"
        )
    found = not_a_results_file(out_path)
    if found is not None:
        would = "append results to it" if resume else "overwrite it"
        raise BadInput(
            f"--out {out_path} exists and is not a results file ({found}); running would "
            f"{would}; {instead}, or delete the file first"
        )


_UNREADABLE_SHOWN = 5


def _unreadable_notes(out_path: Path, unreadable: list[tuple[int, str]]) -> list[str]:
    """Warnings for the lines of a resumed results file that are not results: one
    ``FILE:LINE:`` note each (the first few), then how many more."""
    from agent.tasks.results import quote_line

    notes = [
        f"{out_path}:{number}: not a result, ignored (left in the file): {quote_line(text)}"
        for number, text in unreadable[:_UNREADABLE_SHOWN]
    ]
    if len(unreadable) > _UNREADABLE_SHOWN:
        more = len(unreadable) - _UNREADABLE_SHOWN
        notes.append(f"{out_path}: {more} more line{'s' if more > 1 else ''} that are not results")
    return notes


def _overrides(args: argparse.Namespace) -> Settings:
    """The task-file settings given on the command line (``None`` where not given)."""
    from pydantic import ValidationError

    from agent.tasks.taskfile import Settings

    values: dict[str, Any] = {
        setting: getattr(args, dest, None) for dest, setting in _OPTIONS.items()
    }
    tools = getattr(args, "tools", None)
    if tools is not None:
        values["tools"] = tool_names(tools)
    if getattr(args, "mcp", None):
        values["mcp"] = list(args.mcp)  # replaces the file's mcp:, as every flag does
    try:
        return Settings(**values)
    except ValidationError as exc:
        options = {setting: dest for dest, setting in _OPTIONS.items()}
        lines = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else ""
            option = "--" + options.get(name, name).replace("_", "-")
            lines.append(f"{option}: {error['msg']} (got {error.get('input')!r})")
        raise BadInput("; ".join(lines)) from None


def _config(args: argparse.Namespace) -> Config:
    """The config file (``--config``, else the default place; none there: no settings), the
    layer of the batch between the built-in defaults and the task file (see the module
    docstring), and its endpoints, which ``--model NAME`` and a task's ``model: NAME`` can name.

    Raises:
        BadInput: the file cannot be read or is invalid (the message names it).
    """
    from agent.config import ConfigError, load_config

    try:
        return load_config(getattr(args, "config", None))
    except ConfigError as exc:
        raise BadInput(str(exc)) from None


def _server_options(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`agent.cli.build.server_options`, a bad ``--header`` being bad input."""
    from agent.cli.build import OptionError, server_options

    try:
        return server_options(args)
    except OptionError as exc:
        raise BadInput(str(exc)) from None


def _opener(
    config: Config, server: Mapping[str, Any], *, lookup: bool = True, sessions: int = 1
) -> BackendFactory:
    """How the batch opens models: config endpoints by name, URLs with the server flags
    (``server``: :func:`agent.cli.build.server_options`), anything else through
    :func:`agent.tasks.runner.open_model` (``lookup=False``: --no-lookup; ``sessions > 1``:
    --concurrency, an embedded model opens as a model host)."""
    from agent.tasks.runner import SessionHost, open_model

    def open_backend(spec: str, options: BackendOptions) -> Backend | SessionHost:
        endpoint = config.endpoint(spec)
        if endpoint is not None:  # --api-strict makes a configured endpoint strict too
            return endpoint.open_backend(strict=bool(server.get("api_strict")))
        if spec.startswith(("http://", "https://")):
            options = options.merged(server)
        elif not lookup:
            options = options.merged({"lookup": False})
        return open_model(spec, options, sessions=sessions)

    return open_backend


def _select(plans: list[TaskPlan], only: list[str] | None, ids: list[str]) -> list[TaskPlan]:
    if not only:
        return plans
    unknown = [i for i in only if i not in ids]
    if unknown:
        raise BadInput(
            f"--only: no task with the id {', '.join(map(repr, unknown))}; "
            f"the ids in the file are: {', '.join(ids)}"
        )
    wanted = set(only)
    return [p for p in plans if p.id in wanted]


@contextmanager
def _signals(runner: Runner) -> Iterator[None]:
    """SIGINT and SIGTERM interrupt the runner (cleanly); a second one stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if runner.interrupted_by is not None:
            raise KeyboardInterrupt
        runner.interrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
