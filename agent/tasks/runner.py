"""The batch runner of ``qwq-agent run``: plans in, one :class:`TaskResult` per task out.

Contract:

* Each task runs in a fresh :class:`agent.Agent` (a new conversation and transcript) on a
  shared backend: a model is loaded once per distinct ``(model, ctx, n_gpu_layers)`` and
  closed as soon as no remaining task needs it.
* Tasks run in file order; with ``concurrency > 1`` up to that many run at once, but a backend
  whose ``info.concurrent`` is false (the scripted one, a single-conversation llama.cpp one)
  serves one task at a time. The default factory opens an embedded model as a model host
  (:mod:`models.llama.host`) when ``concurrency > 1``: the model is loaded once, each task
  gets a session of its own (closed when the task ends), and the tasks decode in one batch.
* Headless approval (:func:`batch_approval`): with ``approve_all`` (``--yes``) every tool of
  the task runs; else the config file's ``[approvals]`` apply with ``"ask"`` read as
  ``"deny"`` (a batch has no person to ask), the tools of the task's ``approve:`` run, and
  any other call to a dangerous tool is denied; the model is told so.
* Each result is written to the results file the moment its task ends, then reported.
* :meth:`Runner.interrupt` (the CLI calls it on SIGINT/SIGTERM; safe from a signal handler)
  cancels the running tasks, which end cleanly and are recorded with ``interrupted: true``;
  no new task starts. ``fail_fast`` stops starting tasks after the first failure.
* A task never takes the batch down: a model that fails to load, or an unexpected exception,
  becomes that task's ``error``. A load error caused by an option the task file sets (``ctx``,
  ``n_gpu_layers``) points at it in the file (:func:`explain_load_error`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from agent.agent import Agent
from agent.approval import ApprovalSetting, Decision
from agent.events import Event, RunResult, UsageEvent
from agent.tasks.expect import check
from agent.tasks.progress import Reporter
from agent.tasks.results import ResultsFile, TaskResult
from agent.tasks.taskfile import TaskPlan
from models import Backend, BackendError, BackendInfo, Sampling, Usage
from models.options import BackendOptions
from tools import Tool


@runtime_checkable
class SessionHost(Protocol):
    """A loaded model that serves several conversations (:class:`models.llama.host.LlamaHost`):
    each task gets a backend of its own from :meth:`session`."""

    @property
    def info(self) -> BackendInfo: ...

    def session(self) -> Backend: ...

    def close(self) -> None: ...


BackendFactory = Callable[[str, BackendOptions], Backend | SessionHost]
"""Opens a model: ``(spec, load options) -> Backend`` (default: the model catalog), or a
:class:`SessionHost` whose sessions the tasks use."""


def open_model(spec: str, options: BackendOptions, *, sessions: int = 1) -> Backend | SessionHost:
    """The default :data:`BackendFactory`: :func:`models.catalog.open_backend`; with
    ``sessions > 1`` an embedded model (a catalog name or a .gguf path) is opened as a model
    host serving that many tasks at once (:func:`models.llama.host.open_host`)."""
    from models.llama.host import is_embedded

    if sessions > 1 and is_embedded(spec):
        from models.llama.host import open_host

        return open_host(spec, options, n_seq_max=sessions)
    from models import open_backend

    return open_backend(spec, options)


ModelKey = tuple[str, int | None, int | None]

_LOAD_FLAGS = {"ctx": "--ctx", "n_gpu_layers": "--n-gpu-layers"}
"""Load options by task-file key, and the flag that the model loader's messages name."""


def batch_approval(plan: TaskPlan, *, approve_all: bool = False) -> ApprovalSetting:
    """The approval policy of ``plan`` in a batch, layered as every setting is: the default
    ``"*": "deny"``, then the config file's ``[approvals]`` (:attr:`TaskPlan.approvals`: an
    ``"allow"`` pre-approves as ``approve:`` does, ``"deny"`` denies, ``"ask"`` denies since
    no person is there to ask), then the task file's ``approve:`` list (each ``"allow"``),
    then ``--yes`` (``approve_all``: ``"*": "allow"``, which replaces the rest).

    ``--yes`` is ``"allow"`` (as in ``ask``), not a list of every tool by name: a name given
    ``"allow"`` is an explicit yes that lifts the private-data gate (:mod:`agent.approval`),
    ``--yes`` is not.
    """
    if approve_all:
        return {"*": "allow"}
    approval: dict[str, Decision] = {"*": "deny"}
    approval.update({k: "deny" if v == "ask" else v for k, v in plan.approvals.items()})
    approval.update(dict.fromkeys(plan.approve, "allow"))
    return approval


def explain_load_error(plan: TaskPlan, message: str) -> str:
    """``message``, from loading the model of ``plan``, told in the task file's terms.

    The loader names its options as command-line flags (``use --ctx 8192 or less``). Each
    flag it mentions whose value came from the task file or the config file
    (``plan.load_options_at``) becomes the file's key (``use ctx: 8192 or less``), and the
    message is prefixed with where that file sets the first of them
    (``FILE:LINE:COL: ctx: ``). Other messages are unchanged.
    """
    where = ""
    for name, flag in _LOAD_FLAGS.items():
        at = plan.load_options_at.get(name)
        if at is None or flag not in message:
            continue
        message = re.sub(rf"{re.escape(flag)}\b", f"{name}:", message)
        where = where or f"{at}: {name}: "
    return where + message


class BackendPool:
    """Loaded models by key, with a use count so each is closed after its last task."""

    def __init__(self, plans: list[TaskPlan], factory: BackendFactory) -> None:
        self._factory = factory
        self._uses: Counter[ModelKey] = Counter(p.model_key for p in plans)
        self._backends: dict[ModelKey, Backend | SessionHost] = {}
        self._failures: dict[ModelKey, str] = {}
        self._turns: dict[ModelKey, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, plan: TaskPlan) -> Backend | SessionHost:
        """The backend (or host) of ``plan``, loaded on first use.

        Raises:
            BackendError: it could not be loaded (the failure is remembered, not retried).
        """
        key = plan.model_key
        with self._lock:
            if key in self._failures:
                raise BackendError(explain_load_error(plan, self._failures[key]))
            if key not in self._backends:
                try:
                    self._backends[key] = self._factory(plan.model, plan.backend_options())
                except (BackendError, OSError, ValueError) as exc:
                    self._failures[key] = str(exc)
                    raise BackendError(explain_load_error(plan, str(exc))) from exc
                self._turns[key] = threading.Lock()
            return self._backends[key]

    @contextmanager
    def turn(self, plan: TaskPlan, backend: Backend) -> Iterator[None]:
        """Hold the backend for one task when it cannot serve several at once."""
        if backend.info.concurrent:
            yield
            return
        with self._turns[plan.model_key]:
            yield

    def release(self, plan: TaskPlan) -> None:
        """One task of this model is over; close the model after its last one."""
        key = plan.model_key
        with self._lock:
            self._uses[key] -= 1
            if self._uses[key] <= 0 and key in self._backends:
                self._backends.pop(key).close()

    def close_all(self) -> None:
        with self._lock:
            for backend in self._backends.values():
                backend.close()
            self._backends.clear()


class Runner:
    """Runs plans and records their results; see the module docstring."""

    def __init__(
        self,
        plans: list[TaskPlan],
        *,
        results: ResultsFile,
        reporter: Reporter,
        concurrency: int = 1,
        fail_fast: bool = False,
        approve_all: bool = False,
        transcripts_dir: Path | None = None,
        factory: BackendFactory | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency!r}")
        self.plans = plans
        self.results_file = results
        self.reporter = reporter
        self.concurrency = concurrency
        self.fail_fast = fail_fast
        self.approve_all = approve_all
        self.transcripts_dir = transcripts_dir
        if factory is None:
            factory = functools.partial(open_model, sessions=concurrency)
        self.pool = BackendPool(plans, factory)
        self.results: list[TaskResult] = []
        """The results of this run, in the order the tasks ended."""
        self.interrupted_by: str | None = None
        """The signal (or reason) that interrupted the batch, if any."""
        self._failed = False
        self._active: dict[str, Agent] = {}
        self._noted: set[ModelKey] = set()
        self._mcp: dict[tuple[str, ...], tuple[list[Any], list[Tool]]] = {}
        self._mcp_lock = threading.Lock()

    @property
    def stopping(self) -> bool:
        """No new task may start (interrupted, or a failure with ``fail_fast``)."""
        return self.interrupted_by is not None or (self.fail_fast and self._failed)

    def preload(self) -> None:
        """Load the first task's model now, so that a bad model is reported before any task.

        Raises:
            BackendError: it cannot be loaded.
        """
        if self.plans:
            self.pool.get(self.plans[0])

    def interrupt(self, reason: str) -> None:
        """Cancel the running tasks and start no more. Safe to call from a signal handler
        (it takes no lock)."""
        if self.interrupted_by is None:
            self.interrupted_by = reason
        for agent in list(self._active.values()):
            agent.cancel()

    def run(self, already_done: int = 0) -> list[TaskResult]:
        """Run every plan (until stopped); return this run's results."""
        self.reporter.start(len(self.plans), already_done)
        try:
            if self.concurrency == 1:
                for plan in self.plans:
                    if self.stopping:
                        break
                    self._record(self._run_one(plan))
            else:
                self._run_concurrently()
        finally:
            self.pool.close_all()
            self._close_mcp()
            self.reporter.stop()
        return self.results

    def _mcp_tools(self, servers: tuple[str, ...]) -> list[Tool]:
        """The tools of a task's MCP servers, connected once per batch and shared by tasks.

        Raises:
            tools.mcp.McpError: a server could not be started or listed.
        """
        if not servers:
            return []
        with self._mcp_lock:
            if servers not in self._mcp:
                from tools import connect_mcp

                self._mcp[servers] = connect_mcp(servers)
            return self._mcp[servers][1]

    def _close_mcp(self) -> None:
        if not self._mcp:
            return
        from tools import close_all

        with self._mcp_lock:
            for running, _ in self._mcp.values():
                close_all(running)
            self._mcp.clear()

    def _run_concurrently(self) -> None:
        pending = iter(self.plans)
        running: set[Future[TaskResult | None]] = set()
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="qwq-task") as executor:
            while True:
                while not self.stopping and len(running) < self.concurrency:
                    plan = next(pending, None)
                    if plan is None:
                        break
                    running.add(executor.submit(self._run_one, plan))
                if not running:
                    return
                done, running = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    self._record(future.result())

    def _record(self, result: TaskResult | None) -> None:
        if result is None:
            return
        self.results_file.write(result)
        self.results.append(result)
        if not result.ok and not result.interrupted:
            self._failed = True
        self.reporter.task_finished(result)

    # -- one task ------------------------------------------------------------------------

    def _run_one(self, plan: TaskPlan) -> TaskResult | None:
        """Run ``plan``; ``None`` when the batch stopped before it could start."""
        try:
            session: Backend | None = None
            try:
                loaded = self.pool.get(plan)
                if isinstance(loaded, SessionHost):
                    backend = session = loaded.session()
                else:
                    backend = loaded
            except BackendError as exc:
                self.reporter.task_started(plan)
                error = f"the model {plan.model!r} could not be loaded: {exc}"
                return TaskResult(plan.id, False, "", "error", model=plan.model, error=error)
            if self.concurrency > 1 and not backend.info.concurrent:
                self._note_serial(plan)
            try:
                with self.pool.turn(plan, backend):
                    if self.stopping:
                        return None
                    return self._execute(plan, backend)
            finally:
                if session is not None:
                    session.close()
        finally:
            self.pool.release(plan)

    def _note_serial(self, plan: TaskPlan) -> None:
        if plan.model_key not in self._noted:
            self._noted.add(plan.model_key)
            self.reporter.note(
                f"{plan.model} serves one task at a time; --concurrency runs tasks at once on "
                "server backends and embedded models (a model host)"
            )

    def _execute(self, plan: TaskPlan, backend: Backend) -> TaskResult:
        self.reporter.task_started(plan)
        started = time.monotonic()
        events: list[Event] = []
        error: str | None = None
        agent: Agent | None = None
        try:
            agent = self._agent(plan, backend)
            self._active[plan.id] = agent
            for event in agent.stream(plan.prompt):
                events.append(event)
                if self.interrupted_by is not None:
                    agent.cancel()  # a signal that came before the run began
                if isinstance(event, UsageEvent):
                    self.reporter.task_step(plan.id, event.step, event.usage)
        except Exception as exc:  # a failing task must not end the batch: it is recorded
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self._active.pop(plan.id, None)
        path = agent.transcript_path if agent is not None else None
        run = RunResult.from_events(
            events,
            usage=agent.last_usage if agent is not None else Usage(),
            transcript_path=str(path) if path is not None else None,
        )
        return self._result(plan, run, error, time.monotonic() - started)

    def _agent(self, plan: TaskPlan, backend: Backend) -> Agent:
        mcp_tools = self._mcp_tools(plan.mcp)
        approval = batch_approval(plan, approve_all=self.approve_all)
        sampling: Sampling = dataclasses.replace(backend.info.default_sampling, **plan.sampling)
        transcript: bool | Path = False
        if self.transcripts_dir is not None:
            transcript = self._transcript_path(plan.id)
        settings = plan.settings(
            {"approval": approval, "sampling": sampling, "transcript": transcript}
        ).settings
        return Agent(backend, tools=[*plan.tools, *mcp_tools], settings=settings)

    def _transcript_path(self, task_id: str) -> Path:
        """``DIR/ID.jsonl``, or ``DIR/ID.N.jsonl`` when an earlier attempt left one."""
        assert self.transcripts_dir is not None
        path = self.transcripts_dir / f"{task_id}.jsonl"
        attempt = 1
        while path.exists():
            attempt += 1
            path = self.transcripts_dir / f"{task_id}.{attempt}.jsonl"
        return path

    def _result(
        self, plan: TaskPlan, run: RunResult, error: str | None, duration: float
    ) -> TaskResult:
        expectations = check(plan.expect, run.answer, run.tool_calls) if plan.expect else []
        interrupted = self.interrupted_by is not None and run.finish_reason == "cancelled"
        if interrupted:
            error = f"interrupted by {self.interrupted_by}"
        elif error is None and run.finish_reason != "completed":
            error = run.detail or "; ".join(run.errors) or run.finish_reason
        ok = error is None and run.finish_reason == "completed"
        return TaskResult(
            id=plan.id,
            ok=ok and all(e.ok for e in expectations),
            answer=run.answer,
            finish_reason=run.finish_reason,
            model=plan.model,
            detail=run.detail,
            error=error,
            interrupted=interrupted,
            expectations=[e.to_dict() for e in expectations],
            tool_calls=[dataclasses.asdict(c) for c in run.tool_calls],
            usage=dataclasses.asdict(run.usage),
            steps=run.steps,
            duration=round(duration, 3),
            transcript_path=run.transcript_path,
        )
