"""Turn a validated task file into :class:`agent.tasks.taskfile.TaskPlan` s, checking what the schema
cannot: that models, tools, folders and files exist, that every ``approve:`` list names tools
its ``tools:`` enables, and that prompts render.

Each setting of a task comes from the first layer that sets it: the command line, the task,
the file, the config file (:class:`agent.config.Config`: what both it and a task file can set),
then the built-in default (:data:`agent.settings.DEFAULT_MODEL` …). ``system`` and
``system_file`` are one setting. Paths from the config file (``workspace``, a ``.gguf`` or
``scripted:`` model) are relative to the current folder, as for every other command. Every
problem of every task is collected, each located where its value was written (the task file,
the config file's ``FILE:LINE:COL: key``, or the command-line option), and raised together as
a :class:`agent.tasks.taskfile.TaskFileError` — before any task runs.

This module merges the layers and checks models and workspaces; the rest is done by
:mod:`agent.tasks.layers` (the layers, the config file as one), :mod:`agent.tasks.tool_checks`
(``tools:``, ``approve:``, ``expect: tool_called:``), :mod:`agent.tasks.task_prompts` (the
system prompt, the rendered prompt) and :mod:`agent.tasks.plan_problems` (the located
problems, in the order they are reported).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.approval import Decision
from agent.settings import DEFAULT_MODEL, DEFAULT_TOOLS, DEFAULTS, SettingSource
from agent.tasks.layers import (
    CONFIG,
    Layers,
    config_file_name,
    config_location,
    config_run_settings,
    config_settings,
    folder_of,
    pick,
    source_of,
)
from agent.tasks.plan_problems import PlanProblems
from agent.tasks.task_prompts import TaskPrompts, system_prompt
from agent.tasks.taskfile import (
    PLAN_SETTINGS,
    SAMPLING_FIELDS,
    Settings,
    Task,
    TaskFileError,
    TaskFileSpec,
    TaskPlan,
)
from agent.tasks.tool_checks import check_approved, check_expected_tools, tool_names
from models import BackendError, check_spec

if TYPE_CHECKING:
    from agent.config import Config

_TASK_FIELDS = {"timeout": "timeout_s"}
"""Run settings (:data:`agent.tasks.taskfile.PLAN_SETTINGS`) whose task-file name differs."""

LOAD_OPTIONS = ("ctx", "n_gpu_layers")
"""The settings passed to the model loader, whose errors name them as command-line options."""


def plan_tasks(
    spec: TaskFileSpec,
    overrides: Settings | None = None,
    *,
    cwd: Path | None = None,
    endpoints: frozenset[str] = frozenset(),
    config: Config | None = None,
) -> list[TaskPlan]:
    """Merge the command line (``overrides``), each task, the file of ``spec`` and ``config``
    (the config file; ``None``: none) into plans. ``endpoints``: model names that are servers
    (the endpoints of ``config`` are added).

    Raises:
        TaskFileError: every problem found (the schema problems of
            :attr:`~agent.tasks.taskfile.TaskFileSpec.problems`, unknown model or tool,
            missing file or folder, a prompt that does not render, an expected tool that is
            not enabled), each with its place in the file (the config file's, for a value
            that only it sets).
    """
    planner = Planner(spec, overrides or Settings(), cwd or Path.cwd(), endpoints, config)
    return planner.plan_all()


class Planner:
    """Builds the plans of one task file; see the module docstring."""

    def __init__(
        self,
        spec: TaskFileSpec,
        overrides: Settings,
        cwd: Path,
        endpoints: frozenset[str] = frozenset(),
        config: Config | None = None,
    ) -> None:
        self.spec = spec
        self.overrides = overrides
        self.config = config
        self.config_layer = config_settings(config)
        """What the config file sets that a task file can also set."""
        self.file_settings: dict[str, Any] = {}
        """The config file's run settings that a task file cannot set."""
        self.approvals: dict[str, Decision] = {}
        if config is not None:
            endpoints = endpoints | frozenset(config.endpoints)
            self.file_settings = config_run_settings(config)
            self.approvals = dict(config.approvals)
        self.endpoints = endpoints
        """Model names that are server endpoints of the config file (taken as they are)."""
        self.cwd = cwd.resolve()
        self.base = spec.path.resolve().parent
        self.problems = PlanProblems(spec, config)
        """Every problem found, the schema's first."""
        self.prompts = TaskPrompts(self.problems, self.base)

    def plan_all(self) -> list[TaskPlan]:
        """Plans for every task, in file order.

        Raises:
            TaskFileError: one or more problems (all of them are listed).
        """
        check_approved(self.spec, self.config_layer, self.problems)
        plans = [self._plan(i, task) for i, task in self.spec.numbered_tasks()]
        if self.problems:  # the command line first, then the config file, then the task file
            raise TaskFileError(self.problems.in_order())
        return [p for p in plans if p is not None]

    # -- one task ----------------------------------------------------------------------------

    def _plan(self, index: int, task: Task) -> TaskPlan | None:
        layers: Layers = [
            (self.overrides, None),
            (task, ("tasks", index)),
            (self.spec.data, ()),
            (self.config_layer, CONFIG),
        ]
        before = len(self.problems)
        model = self._model(layers)
        tools = tool_names(layers, "tools", DEFAULT_TOOLS, self.problems)
        mcp, _ = pick(layers, "mcp")
        # MCP tools are only known once their servers run: their names are not checked here.
        approve = tool_names(layers, "approve", (), self.problems, builtins_only=not mcp)
        check_expected_tools(self.spec, index, task, layers, tools, self.problems)
        workspace = self._workspace(layers)
        system, system_origin = system_prompt(
            layers, self.problems, cwd=self.cwd, task_folder=self.base
        )
        prompt = self.prompts.prompt(index, task)
        if len(self.problems) > before or model is None or workspace is None or prompt is None:
            return None
        sampling = {}
        for name in SAMPLING_FIELDS:
            value, _ = pick(layers, name)
            if value is not None:
                sampling[name] = value

        sources: dict[str, SettingSource] = {}
        for name in PLAN_SETTINGS:
            value, origin = pick(layers, _TASK_FIELDS.get(name, name))
            if value is not None and name != "system":
                sources[name] = source_of(origin)
        if system is not None:
            sources["system"] = source_of(system_origin)

        def setting(name: str, default: Any) -> Any:
            value, _ = pick(layers, name)
            return default if value is None else value

        return TaskPlan(
            id=task.id,
            index=index,
            prompt=prompt,
            model=model,
            n_ctx=setting("ctx", None),
            n_gpu_layers=setting("n_gpu_layers", None),
            sampling=sampling,
            tools=tools,
            approve=approve,
            placement=setting("placement", DEFAULTS.placement),
            tool_choice=setting("tool_choice", DEFAULTS.tool_choice),
            workspace=workspace,
            max_steps=setting("max_steps", DEFAULTS.max_steps),
            max_tokens=setting("max_tokens", None),
            thinking_budget=setting("thinking_budget", None),
            timeout_s=setting("timeout_s", None),
            system=system,
            expect=task.expect,
            mcp=tuple(mcp or ()),
            load_options_at=self._load_options_at(layers),
            sources=sources,
            file_settings=self.file_settings,
            approvals=self.approvals,
        )

    def _load_options_at(self, layers: Layers) -> dict[str, str]:
        """``FILE:LINE:COL`` of each load option that the task file or the config file (not
        the command line) sets for this task, by setting name."""
        where: dict[str, str] = {}
        for name in LOAD_OPTIONS:
            value, origin = pick(layers, name)
            if value is None or origin is None:
                continue
            if origin == CONFIG:
                file = config_file_name(self.config)
                at = config_location(self.config, (name,))
            else:
                file, at = str(self.spec.path), self.spec.source.locate((*origin, name))
            where[name] = file + (f":{at.line}:{at.column}" if at else "")
        return where

    def _model(self, layers: Layers) -> str | None:
        """The model of a task, its path resolved (``scripted:`` or ``.gguf``) and checked;
        the default when no layer sets one; ``None`` (and a problem) when it is wrong."""
        value, origin = pick(layers, "model")
        if value is None:
            return DEFAULT_MODEL
        text, base = str(value).strip(), folder_of(origin, self.cwd, self.base)
        if text in self.endpoints:
            return text
        if text.startswith("scripted:"):
            text = "scripted:" + str((base / Path(text[9:]).expanduser()).resolve())
        elif text.lower().endswith(".gguf"):
            text = str((base / Path(text).expanduser()).resolve())
        try:
            check_spec(text)
        except BackendError as exc:
            self.problems.add(origin, "model", str(exc))
            return None
        return text

    def _workspace(self, layers: Layers) -> Path | None:
        """The workspace folder of a task, resolved; ``None`` (and a problem) when it does
        not exist."""
        value, origin = pick(layers, "workspace")
        path = (folder_of(origin, self.cwd, self.base) / Path(value or ".").expanduser()).resolve()
        if not path.is_dir():
            self.problems.add(
                origin, "workspace", f"the folder {str(path)!r} does not exist; create it first"
            )
            return None
        return path
