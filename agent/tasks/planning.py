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
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from agent.approval import Decision
from agent.settings import DEFAULT_MODEL, DEFAULT_TOOLS, DEFAULTS, SettingSource
from agent.tasks.problems import in_file_order
from agent.tasks.safe_yaml import DocPath, Location, YamlLoadError, dotted
from agent.tasks.taskfile import (
    PLAN_SETTINGS,
    SAMPLING_FIELDS,
    Settings,
    Task,
    TaskFileError,
    TaskFileSpec,
    TaskPlan,
    read_text_file,
)

if TYPE_CHECKING:
    from agent.config import Config
    from agent.tasks.templates import BoundedEnvironment

CONFIG: Final = "config"
"""The origin of a setting taken from the config file."""
Origin = DocPath | Literal["config"] | None
"""Where a setting came from: a path into the task file, :data:`CONFIG`, or ``None`` for the
command line."""

_CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "max_steps": ("limits", "max_steps"),
    "max_tokens": ("limits", "max_tokens"),
    "thinking_budget": ("limits", "thinking_budget"),
    "timeout_s": ("limits", "timeout"),
}
"""Task-file settings whose config-file key is not their name."""
_CONFIG_SHARED: tuple[str, ...] = ("model", "tools", "placement", "tool_choice", "temperature")
_CONFIG_SHARED += ("seed", "workspace", "system", "ctx", "n_gpu_layers")
"""Task-file settings that the config file sets under the same name."""
_CONFIG_ONLY = ("max_repeated_calls", "tool_output_chars", "tool_settings")
"""Run settings of the config file that a task file cannot set (passed to every task)."""
_TASK_FIELDS = {"timeout": "timeout_s"}
"""Run settings (:data:`agent.tasks.taskfile.PLAN_SETTINGS`) whose task-file name differs."""

_OPTION_NAMES = {"timeout_s": "--timeout", "ctx": "--ctx"}

LOAD_OPTIONS = ("ctx", "n_gpu_layers")
"""The settings passed to the model loader, whose errors name them as command-line options."""

LITERAL_BRACES = "write {% raw %}…{% endraw %} around text that must keep its braces"
"""How a prompt keeps literal ``{{``, ``{%`` or ``{#``: every prompt is a Jinja2 template."""


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
        self.config_layer = _config_settings(config)
        """What the config file sets that a task file can also set."""
        self.file_settings: dict[str, Any] = {}
        """The config file's run settings that a task file cannot set."""
        self.approvals: dict[str, Decision] = {}
        if config is not None:
            endpoints = endpoints | frozenset(config.endpoints)
            layer = config.settings_layer()
            self.file_settings = {k: layer[k] for k in _CONFIG_ONLY if k in layer}
            self.approvals = dict(config.approvals)
        self.endpoints = endpoints
        """Model names that are server endpoints of the config file (taken as they are)."""
        self.cwd = cwd.resolve()
        self.base = spec.path.resolve().parent
        self.problems: list[YamlLoadError] = []
        self._seen: set[str] = set()
        self._jinja: BoundedEnvironment | None = None
        for problem in spec.problems:  # the schema's, reported in the same pass
            self._seen.add(str(problem))
            self.problems.append(problem)

    def plan_all(self) -> list[TaskPlan]:
        """Plans for every task, in file order.

        Raises:
            TaskFileError: one or more problems (all of them are listed).
        """
        self._check_approved()
        plans = [self._plan(i, task) for i, task in self.spec.numbered_tasks()]
        if self.problems:  # the command line first, then the config file, then the task file
            raise TaskFileError(sorted(self.problems, key=self._problem_order))
        return [p for p in plans if p is not None]

    # -- helpers ---------------------------------------------------------------------------

    def _problem_order(self, problem: YamlLoadError) -> tuple[int, int, int]:
        rank = 0 if problem.path == "command line" else 2 if problem.path == self._task_file else 1
        return (rank, *in_file_order(problem))

    @property
    def _task_file(self) -> str:
        return str(self.spec.path)

    def _problem(self, origin: Origin, name: str, message: str, item: int | None = None) -> None:
        if origin is None:
            option = _OPTION_NAMES.get(name, "--" + name.replace("_", "-"))
            problem = YamlLoadError("command line", f"{option}: {message}")
        elif origin == CONFIG:
            key = _CONFIG_KEYS.get(name, (name,))
            at = self._config_place(key)
            index = f"[{item}]" if item is not None else ""
            problem = YamlLoadError(self._config_file(), f"{'.'.join(key)}{index}: {message}", at)
        else:
            path: DocPath = (*origin, name) if item is None else (*origin, name, item)
            where = self.spec.source.locate(path)
            problem = YamlLoadError(self.spec.path, f"{dotted(path)}: {message}", where)
        if str(problem) not in self._seen:  # a file default breaks every task the same way
            self._seen.add(str(problem))
            self.problems.append(problem)

    def _config_file(self) -> str:
        path = self.config.path if self.config is not None else None
        return str(path) if path is not None else "the config file"

    def _config_place(self, key: tuple[str, ...]) -> Location | None:
        place = self.config.place(key) if self.config is not None else None
        return Location(*place) if place is not None else None

    def _base(self, origin: Origin) -> Path:
        return self.cwd if origin is None or origin == CONFIG else self.base

    @staticmethod
    def _source(origin: Origin) -> SettingSource:
        if origin is None:
            return "command line"
        return "file" if origin == CONFIG else "task file"

    def _pick(self, layers: list[tuple[Settings, Origin]], name: str) -> tuple[Any, Origin]:
        for settings, origin in layers:
            value = getattr(settings, name)
            if value is not None:
                return value, origin
        return None, None

    # -- one task ----------------------------------------------------------------------------

    def _plan(self, index: int, task: Task) -> TaskPlan | None:
        layers: list[tuple[Settings, Origin]] = [
            (self.overrides, None),
            (task, ("tasks", index)),
            (self.spec.data, ()),
            (self.config_layer, CONFIG),
        ]
        before = len(self.problems)
        model = self._model(layers)
        tools = self._tool_names(layers, "tools", DEFAULT_TOOLS)
        mcp, _ = self._pick(layers, "mcp")
        # MCP tools are only known once their servers run: their names are not checked here.
        approve = self._tool_names(layers, "approve", (), builtins_only=not mcp)
        self._check_expected_tools(index, task, layers, tools)
        workspace = self._workspace(layers)
        system, system_origin = self._system(layers)
        prompt = self._prompt(index, task)
        if len(self.problems) > before or model is None or workspace is None or prompt is None:
            return None
        sampling = {}
        for name in SAMPLING_FIELDS:
            value, _ = self._pick(layers, name)
            if value is not None:
                sampling[name] = value

        sources: dict[str, SettingSource] = {}
        for name in PLAN_SETTINGS:
            value, origin = self._pick(layers, _TASK_FIELDS.get(name, name))
            if value is not None and name != "system":
                sources[name] = self._source(origin)
        if system is not None:
            sources["system"] = self._source(system_origin)

        def pick(name: str, default: Any) -> Any:
            value, _ = self._pick(layers, name)
            return default if value is None else value

        return TaskPlan(
            id=task.id,
            index=index,
            prompt=prompt,
            model=model,
            n_ctx=pick("ctx", None),
            n_gpu_layers=pick("n_gpu_layers", None),
            sampling=sampling,
            tools=tools,
            approve=approve,
            placement=pick("placement", DEFAULTS.placement),
            tool_choice=pick("tool_choice", DEFAULTS.tool_choice),
            workspace=workspace,
            max_steps=pick("max_steps", DEFAULTS.max_steps),
            max_tokens=pick("max_tokens", None),
            thinking_budget=pick("thinking_budget", None),
            timeout_s=pick("timeout_s", None),
            system=system,
            expect=task.expect,
            mcp=tuple(mcp or ()),
            load_options_at=self._load_options_at(layers),
            sources=sources,
            file_settings=self.file_settings,
            approvals=self.approvals,
        )

    def _load_options_at(self, layers: list[tuple[Settings, Origin]]) -> dict[str, str]:
        """``FILE:LINE:COL`` of each load option that the task file or the config file (not
        the command line) sets for this task, by setting name."""
        where: dict[str, str] = {}
        for name in LOAD_OPTIONS:
            value, origin = self._pick(layers, name)
            if value is None or origin is None:
                continue
            if origin == CONFIG:
                file, at = self._config_file(), self._config_place((name,))
            else:
                file, at = self._task_file, self.spec.source.locate((*origin, name))
            where[name] = file + (f":{at.line}:{at.column}" if at else "")
        return where

    def _model(self, layers: list[tuple[Settings, Origin]]) -> str | None:
        from models import BackendError, check_spec

        value, origin = self._pick(layers, "model")
        if value is None:
            return DEFAULT_MODEL
        text, base = str(value).strip(), self._base(origin)
        if text in self.endpoints:
            return text
        if text.startswith("scripted:"):
            text = "scripted:" + str((base / Path(text[9:]).expanduser()).resolve())
        elif text.lower().endswith(".gguf"):
            text = str((base / Path(text).expanduser()).resolve())
        try:
            check_spec(text)
        except BackendError as exc:
            self._problem(origin, "model", str(exc))
            return None
        return text

    def _tool_names(
        self,
        layers: list[tuple[Settings, Origin]],
        name: str,
        default: tuple[str, ...],
        *,
        builtins_only: bool = True,
    ) -> tuple[str, ...]:
        from tools import BUILTINS

        value, origin = self._pick(layers, name)
        if value is None:
            return default
        for i, tool in enumerate(value):
            if builtins_only and tool not in BUILTINS:
                known = ", ".join(sorted(BUILTINS))
                self._problem(
                    origin,
                    name,
                    f"unknown tool {tool!r}; the built-in tools are: {known}",
                    item=i if origin is not None else None,
                )
        return tuple(dict.fromkeys(value))

    def _check_approved(self) -> None:
        """Each ``approve:`` list may only name built-in tools that ``tools:`` enables where
        the list applies: a task's list in that task, the file's list in the tasks that do not
        set their own (at least one of them must enable the tool). Tools come from the task
        file only (its ``tools:``, or the default): narrowing them with ``--tools`` never
        breaks a file, and a list that applies to a task whose tools come from the config
        file is not checked (the user's config must not break a task file either). Unknown
        names are :meth:`_tool_names`' to report.
        """
        file, tasks = self.spec.data, self.spec.numbered_tasks()
        if any(self._tools_dropped(index) for index, _ in tasks):
            return  # a wrong tools: was left out; what it enables is unknown (already reported)

        def from_config(task: Task) -> bool:  # its tools are the config file's
            return task.tools is None and file.tools is None and self.config_layer.tools is not None

        inheriting = [task for _, task in tasks if task.approve is None]
        if file.approve is not None and inheriting and not any(map(from_config, inheriting)):
            self._check_approve_list(file.approve, (), [[task, file] for task in inheriting])
        for index, task in tasks:
            if task.approve is not None and not from_config(task):
                self._check_approve_list(task.approve, ("tasks", index), [[task, file]])

    def _tools_dropped(self, index: int) -> bool:
        """Whether a wrong ``tools:`` or ``mcp:`` of task ``index`` or of the file was left
        out of the plan (see :attr:`agent.tasks.taskfile.TaskFileSpec.dropped`)."""
        dropped = self.spec.dropped
        return any(
            path in dropped
            for name in ("tools", "mcp")
            for path in ((name,), ("tasks", index, name))
        )

    def _check_expected_tools(
        self, index: int, task: Task, layers: list[tuple[Settings, Origin]], tools: tuple[str, ...]
    ) -> None:
        """``expect: tool_called:`` may only name tools the task enables: a task that expects
        a call to a tool it cannot call can never pass. Skipped where MCP servers may bring
        the tool, or where a wrong ``tools:`` was left out."""
        if task.expect is None or task.expect.tool_called is None:
            return
        mcp, _ = self._pick(layers, "mcp")
        if mcp or self._tools_dropped(index):
            return
        value, origin = self._pick(layers, "tools")
        source = ""
        if value is None:
            source = " (the default: tools: is not set)"
        elif origin is None:
            source = " (from --tools)"
        elif origin == CONFIG:
            source = f" (from the config file {self._config_file()})"
        from tools import BUILTINS

        enabled = (", ".join(t for t in tools if t in BUILTINS) or "none") + source
        named = task.expect.tool_called
        for i, name in enumerate([named] if isinstance(named, str) else named):
            if name not in tools:
                self._problem(
                    ("tasks", index, "expect"),
                    "tool_called",
                    f"{name!r} is expected to be called but is not enabled for this task, so "
                    f"the task can never pass; the enabled tools are: {enabled}. Add "
                    f"{name!r} to tools: or remove it from tool_called:",
                    item=None if isinstance(named, str) else i,
                )

    def _check_approve_list(
        self, approve: list[str], origin: DocPath, users: list[list[Settings]]
    ) -> None:
        """Check ``approve`` against the tools of ``users`` (the layers of each task that it
        applies to, the task first). Skipped when MCP servers are in force for one of them:
        their tools, which may be approved, are only known once the servers run."""
        from tools import BUILTINS

        if any(_first(layers, "mcp") for layers in users):
            return
        enabled: dict[str, None] = {}
        defaulted = 0
        for layers in users:
            tools = _first(layers, "tools")
            defaulted += tools is None
            enabled.update(dict.fromkeys(DEFAULT_TOOLS if tools is None else tools))
        listed = ", ".join(enabled) or "none (tools: is empty)"
        if defaulted == len(users):
            listed += " (the default: tools: is not set)"
        for i, name in enumerate(approve):
            if name in BUILTINS and name not in enabled:
                self._problem(
                    origin,
                    "approve",
                    f"{name!r} is approved but not enabled, so it can never run; the enabled "
                    f"tools are: {listed}. Add {name!r} to tools: or remove it from approve:",
                    item=i,
                )

    def _workspace(self, layers: list[tuple[Settings, Origin]]) -> Path | None:
        value, origin = self._pick(layers, "workspace")
        path = (self._base(origin) / Path(value or ".").expanduser()).resolve()
        if not path.is_dir():
            self._problem(
                origin, "workspace", f"the folder {str(path)!r} does not exist; create it first"
            )
            return None
        return path

    def _system(self, layers: list[tuple[Settings, Origin]]) -> tuple[str | None, Origin]:
        """The system prompt and where it was set (``None``: nowhere, or unreadable)."""
        for settings, origin in layers:
            if settings.system is not None:
                return settings.system, origin
            if settings.system_file is not None:
                try:
                    return read_text_file(self._base(origin), settings.system_file), origin
                except YamlLoadError as exc:
                    self._problem(origin, "system_file", str(exc))
                    return None, origin
        return None, None

    def _prompt(self, index: int, task: Task) -> str | None:
        """The prompt (inline or read from ``prompt_file``), always rendered as a Jinja2
        template: with the task's ``inputs``, or with none."""
        origin: DocPath = ("tasks", index)
        if task.prompt_file is not None:
            field, what = "prompt_file", task.prompt_file
            try:
                text = read_text_file(self.base, task.prompt_file)
            except YamlLoadError as exc:
                self._problem(origin, field, str(exc))
                return None
        else:
            field, what, text = "prompt", "the prompt", task.prompt or ""
        rendered = self._render(origin, field, what, text, task.inputs or {})
        if rendered is None:
            return None
        if not rendered.strip():
            self._problem(origin, field, "the prompt is empty")
            return None
        return rendered

    def _render(
        self, origin: DocPath, field: str, what: str, text: str, inputs: dict[str, Any]
    ) -> str | None:
        """``text`` rendered in a bounded sandbox (:mod:`agent.tasks.templates`) with strict
        undefined names; ``None`` (and a problem located at ``field``, naming the line of
        ``what``) when it cannot be, whatever the reason."""
        from jinja2 import TemplateError, TemplateSyntaxError, UndefinedError

        from agent.tasks.templates import TemplateLimitError

        try:
            return self._environment().render_bounded(text, inputs)
        except TemplateSyntaxError as exc:
            self._problem(
                origin,
                field,
                f"line {exc.lineno} of {what} is not a valid Jinja2 template: "
                f"{(exc.message or 'a syntax error').rstrip('.')} (every prompt is a template; "
                f"{LITERAL_BRACES})",
            )
        except TemplateLimitError as exc:
            line = _template_line(exc)
            at = f" (line {line} of {what})" if line is not None else ""
            self._problem(origin, field, f"the prompt cannot be rendered: {exc}{at}")
        except UndefinedError as exc:
            line = _template_line(exc)
            at = f" (line {line} of {what})" if line is not None else ""
            given = ", ".join(sorted(inputs)) or "none"
            self._problem(
                origin,
                field,
                f"the prompt cannot be rendered: {exc}{at}; every {{{{ name }}}} it uses must be "
                f"given under inputs: (given: {given}), or {LITERAL_BRACES}",
            )
        except (TemplateError, Exception) as exc:  # the template's own code failed
            line = _template_line(exc)
            at = f" (line {line} of {what})" if line is not None else ""
            self._problem(
                origin,
                field,
                f"the prompt cannot be rendered: {type(exc).__name__}: {exc}{at}; fix the "
                f"template (every prompt is a template; {LITERAL_BRACES})",
            )
        return None

    def _environment(self) -> BoundedEnvironment:
        """The one Jinja2 environment of the plan (see :mod:`agent.tasks.templates`)."""
        if self._jinja is None:
            from agent.tasks.templates import BoundedEnvironment

            self._jinja = BoundedEnvironment()
        return self._jinja


def _config_settings(config: Config | None) -> Settings:
    """What ``config`` sets that a task file can also set, as a layer of task-file settings
    (built without re-validation: the config file's own schema has checked the values)."""
    if config is None:
        return Settings()
    values: dict[str, Any] = {name: getattr(config, name) for name in _CONFIG_SHARED}
    for name, (_, key) in _CONFIG_KEYS.items():
        values[name] = getattr(config.limits, key)
    return Settings.model_construct(**{k: v for k, v in values.items() if v is not None})


def _first(layers: list[Settings], name: str) -> Any:
    """The value of setting ``name`` in the first of ``layers`` that sets it (or ``None``)."""
    return next((v for v in (getattr(layer, name) for layer in layers) if v is not None), None)


def _template_line(exc: BaseException) -> int | None:
    """The line of the template being rendered when ``exc`` was raised, when Jinja2 put it in
    the traceback (it rewrites template frames to carry the template's own line numbers)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
