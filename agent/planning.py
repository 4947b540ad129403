"""Turn a validated task file into :class:`agent.tasks.TaskPlan` s, checking what the schema
cannot: that models, tools, folders and files exist, and that prompts render.

Each setting of a task comes from the first layer that sets it: the command line, the task,
the file, then the built-in default (:data:`agent.tasks.DEFAULT_MODEL` …). ``system`` and
``system_file`` are one setting. Every problem of every task is collected, each located in
the file (or naming the command-line option), and raised together as a
:class:`agent.tasks.TaskFileError` — before any task runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.safe_yaml import DocPath, YamlLoadError, dotted
from agent.tasks import (
    DEFAULT_MODEL,
    DEFAULT_TOOLS,
    SAMPLING_FIELDS,
    Settings,
    Task,
    TaskFileError,
    TaskFileSpec,
    TaskPlan,
    read_text_file,
)

Origin = DocPath | None
"""Where a setting came from: a path into the file, or ``None`` for the command line."""

_OPTION_NAMES = {"timeout_s": "--timeout", "ctx": "--ctx"}


class Planner:
    """Builds the plans of one task file; see the module docstring."""

    def __init__(self, spec: TaskFileSpec, overrides: Settings, cwd: Path) -> None:
        self.spec = spec
        self.overrides = overrides
        self.cwd = cwd.resolve()
        self.base = spec.path.resolve().parent
        self.problems: list[YamlLoadError] = []
        self._seen: set[str] = set()

    def plan_all(self) -> list[TaskPlan]:
        """Plans for every task, in file order.

        Raises:
            TaskFileError: one or more problems (all of them are listed).
        """
        plans = [self._plan(i, task) for i, task in enumerate(self.spec.data.tasks)]
        if self.problems:
            raise TaskFileError(self.problems)
        return [p for p in plans if p is not None]

    # -- helpers ---------------------------------------------------------------------------

    def _problem(self, origin: Origin, name: str, message: str, item: int | None = None) -> None:
        if origin is None:
            option = _OPTION_NAMES.get(name, "--" + name.replace("_", "-"))
            problem = YamlLoadError("command line", f"{option}: {message}")
        else:
            path: DocPath = (*origin, name) if item is None else (*origin, name, item)
            where = self.spec.source.locate(path)
            problem = YamlLoadError(self.spec.path, f"{dotted(path)}: {message}", where)
        if str(problem) not in self._seen:  # a file default breaks every task the same way
            self._seen.add(str(problem))
            self.problems.append(problem)

    def _base(self, origin: Origin) -> Path:
        return self.cwd if origin is None else self.base

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
        ]
        before = len(self.problems)
        model = self._model(layers)
        tools = self._tool_names(layers, "tools", DEFAULT_TOOLS)
        mcp, _ = self._pick(layers, "mcp")
        # MCP tools are only known once their servers run: their names are not checked here.
        approve = self._tool_names(layers, "approve", (), builtins_only=not mcp)
        workspace = self._workspace(layers)
        system = self._system(layers)
        prompt = self._prompt(index, task)
        if len(self.problems) > before or model is None or workspace is None or prompt is None:
            return None
        sampling = {}
        for name in SAMPLING_FIELDS:
            value, _ = self._pick(layers, name)
            if value is not None:
                sampling[name] = value

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
            placement=pick("placement", "interleaved"),
            tool_choice=pick("tool_choice", "auto"),
            workspace=workspace,
            max_steps=pick("max_steps", 20),
            max_tokens=pick("max_tokens", None),
            timeout_s=pick("timeout_s", None),
            system=system,
            expect=task.expect,
            mcp=tuple(mcp or ()),
        )

    def _model(self, layers: list[tuple[Settings, Origin]]) -> str | None:
        from models.base import BackendError
        from models.catalog import parse_spec

        value, origin = self._pick(layers, "model")
        if value is None:
            return DEFAULT_MODEL
        text, base = str(value).strip(), self._base(origin)
        if text.startswith("scripted:"):
            text = "scripted:" + str((base / Path(text[9:]).expanduser()).resolve())
        elif text.lower().endswith(".gguf"):
            text = str((base / Path(text).expanduser()).resolve())
        try:
            spec = parse_spec(text)
        except BackendError as exc:
            self._problem(origin, "model", str(exc))
            return None
        if spec.kind in ("scripted", "path") and not Path(spec.value).is_file():
            what = "script" if spec.kind == "scripted" else "model file"
            self._problem(origin, "model", f"no {what} at {spec.value!r}; fix the path")
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
        from tools.registry import BUILTINS

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

    def _workspace(self, layers: list[tuple[Settings, Origin]]) -> Path | None:
        value, origin = self._pick(layers, "workspace")
        path = (self._base(origin) / Path(value or ".").expanduser()).resolve()
        if not path.is_dir():
            self._problem(
                origin, "workspace", f"the folder {str(path)!r} does not exist; create it first"
            )
            return None
        return path

    def _system(self, layers: list[tuple[Settings, Origin]]) -> str | None:
        for settings, origin in layers:
            if settings.system is not None:
                return settings.system
            if settings.system_file is not None:
                try:
                    return read_text_file(self._base(origin), settings.system_file)
                except YamlLoadError as exc:
                    self._problem(origin, "system_file", str(exc))
                    return None
        return None

    def _prompt(self, index: int, task: Task) -> str | None:
        origin: DocPath = ("tasks", index)
        if task.prompt_file is not None:
            field = "prompt_file"
            try:
                text = read_text_file(self.base, task.prompt_file)
            except YamlLoadError as exc:
                self._problem(origin, field, str(exc))
                return None
        else:
            field, text = "prompt", task.prompt or ""
        if task.inputs is not None:
            rendered = self._render(origin, field, text, task.inputs)
            if rendered is None:
                return None
            text = rendered
        if not text.strip():
            self._problem(origin, field, "the prompt is empty")
            return None
        return text

    def _render(self, origin: DocPath, field: str, text: str, inputs: dict[str, Any]) -> str | None:
        from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(
            undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False
        )
        try:
            return env.from_string(text).render(**inputs)
        except TemplateSyntaxError as exc:
            self._problem(
                origin,
                field,
                f"line {exc.lineno} of the prompt is not a valid Jinja2 template: {exc.message}",
            )
        except TemplateError as exc:
            self._problem(
                origin,
                field,
                f"the prompt cannot be rendered: {exc}; every {{{{ name }}}} it uses must be "
                "given under inputs:",
            )
        return None
