"""The task file of ``qwq-agent run``: its schema, its loader, and the plan of each task.

A task file is YAML (loaded by :mod:`agent.tasks.safe_yaml`: ``safe_load`` semantics, traps closed)
validated by the pydantic models below: unknown keys are rejected, types are strict (``yes``
is not text, ``1.10`` is not a version string: the error says to quote them). Every problem is
a :class:`TaskFileError` listing each one as ``FILE:LINE:COLUMN: what is wrong``, raised before
any task runs.

Shape: file-level defaults (every field of :class:`Settings`), then ``tasks:``, a list of
:class:`Task`; a task may override any default. :func:`agent.tasks.planning.plan_tasks` merges the layers,
command line first (``--model`` beats the file), then the task, then the file, then the
built-in defaults, and turns each task into a :class:`TaskPlan`: the prompt rendered (every
prompt is a Jinja2 template, sandboxed, ``StrictUndefined``, given the task's ``inputs`` if
any: literal braces need ``{% raw %}``), files read, paths resolved, and each ``approve:``
checked against the ``tools:`` it goes with. Paths written in the file (``workspace``, ``system_file``, ``prompt_file``,
``scripted:FILE``, a ``.gguf`` path) are relative to the task file's folder; paths on the
command line to the current directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from agent.approval import Decision
from agent.errors import InputError
from agent.settings import AgentSettings, LayeredSettings, SettingSource
from agent.tasks.expect import Expect
from agent.tasks.problems import in_file_order, salvage, schema_problems
from agent.tasks.safe_yaml import (
    DocPath,
    Location,
    SourceMap,
    YamlLoadError,
    decode,
    dotted,
    load_yaml,
)
from models.llama.options import MIN_CONTEXT
from models.options import BackendOptions

Placement = Literal["interleaved", "template"]
ToolChoice = Literal["auto", "required"]

PLAN_SETTINGS = (
    "placement",
    "tool_choice",
    "workspace",
    "max_steps",
    "max_tokens",
    "thinking_budget",
    "timeout",
    "system",
)
"""The run settings a plan carries (by :class:`agent.settings.AgentSettings` name)."""
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "presence_penalty", "seed")
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class Settings(BaseModel):
    """What a task file sets for all tasks and a task may override (``None``: not set)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    model: str | None = Field(default=None, min_length=1)
    ctx: int | None = Field(default=None, ge=MIN_CONTEXT)
    n_gpu_layers: int | None = Field(default=None, ge=-1)
    temperature: float | None = Field(default=None, ge=0, le=5)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    tools: list[str] | None = None
    mcp: list[str] | None = None
    """MCP servers whose tools join ``tools``: command lines or ``http(s)://`` URLs."""
    approve: list[str] | None = None
    placement: Placement | None = None
    tool_choice: ToolChoice | None = None
    workspace: str | None = Field(default=None, min_length=1)
    max_steps: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    thinking_budget: int | None = Field(default=None, ge=0)
    """Thinking tokens per task; then the thinking is closed and the model answers."""
    timeout_s: float | None = Field(default=None, gt=0)
    system: str | None = None
    system_file: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_system(self) -> Settings:
        if self.system is not None and self.system_file is not None:
            raise ValueError("give system or system_file, not both")
        return self


class Task(Settings):
    """One task: an id, a prompt (or a prompt file), inputs, expectations, overrides."""

    id: str = Field(pattern=ID_PATTERN)
    prompt: str | None = Field(default=None, min_length=1)
    prompt_file: str | None = Field(default=None, min_length=1)
    inputs: dict[str, JsonValue] | None = None
    expect: Expect | None = None

    @model_validator(mode="after")
    def _one_prompt(self) -> Task:
        if (self.prompt is None) == (self.prompt_file is None):
            raise ValueError("give exactly one of prompt or prompt_file")
        return self


class TaskFile(Settings):
    """A whole task file: defaults and the tasks."""

    tasks: list[Task] = Field(min_length=1)


class TaskFileError(InputError):
    """A task file (or the options given with it) that cannot run; one line per problem."""

    def __init__(self, problems: list[YamlLoadError]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True, slots=True)
class TaskPlan:
    """One task, ready to run: every setting merged, resolved and checked."""

    id: str
    index: int
    prompt: str
    model: str
    n_ctx: int | None
    n_gpu_layers: int | None
    sampling: Mapping[str, Any]
    """The sampler settings given (others are the model's defaults)."""
    tools: tuple[str, ...]
    approve: tuple[str, ...]
    placement: Placement
    tool_choice: ToolChoice
    workspace: Path
    max_steps: int
    max_tokens: int | None
    timeout_s: float | None
    system: str | None
    expect: Expect | None
    mcp: tuple[str, ...] = ()
    """MCP servers (command lines or URLs) whose tools this task may use."""
    load_options_at: Mapping[str, str] = field(default_factory=dict)
    """Where the task file sets a load option of this task (``ctx``, ``n_gpu_layers``):
    ``FILE:LINE:COL`` by setting name; options from the command line or the defaults are not
    here. Lets a model-loading error point into the file instead of at a flag."""
    thinking_budget: int | None = None
    """Thinking tokens per run (``None``: no budget), see :mod:`agent.thinking_budget`."""
    sources: Mapping[str, SettingSource] = field(default_factory=dict)
    """Where planning took each run setting of :data:`PLAN_SETTINGS` from, by
    :class:`agent.settings.AgentSettings` name: ``"command line"``, ``"task file"`` (the task
    or the file's defaults) or ``"file"`` (the config file). A setting not here is the
    built-in default (its value above is that default, filled in by planning)."""
    file_settings: Mapping[str, Any] = field(default_factory=dict)
    """The config file's run settings that a task file cannot set (``max_repeated_calls``,
    ``tool_output_chars``, ``tool_settings``), by :class:`agent.settings.AgentSettings` name."""
    approvals: Mapping[str, Decision] = field(default_factory=dict)
    """The config file's ``[approvals]`` (tool name, or ``"*"``, to its word); how a batch
    reads them is :func:`agent.tasks.runner.batch_approval`."""

    @property
    def model_key(self) -> tuple[str, int | None, int | None]:
        """Tasks with the same key share one loaded model."""
        return (self.model, self.n_ctx, self.n_gpu_layers)

    def settings_layers(self) -> dict[SettingSource, dict[str, Any]]:
        """The run settings of this task by the layer that set them (``"file"``: the config
        file, ``"task file"``, ``"command line"``), each by
        :class:`agent.settings.AgentSettings` name; a setting no layer set is in none (the
        built-in default applies). The config's :attr:`file_settings` are in ``"file"``."""
        values = {
            "placement": self.placement,
            "tool_choice": self.tool_choice,
            "workspace": self.workspace,
            "max_steps": self.max_steps,
            "max_tokens": self.max_tokens,
            "thinking_budget": self.thinking_budget,
            "timeout": self.timeout_s,
            "system": self.system,
        }
        layers: dict[SettingSource, dict[str, Any]] = {
            "file": dict(self.file_settings),
            "task file": {},
            "command line": {},
        }
        for name, source in self.sources.items():
            layers[source][name] = values[name]
        return layers

    def settings(self, arguments: Mapping[str, Any] | None = None) -> LayeredSettings:
        """The :class:`agent.settings.AgentSettings` of this task, with where each came from:
        :meth:`settings_layers` laid over the defaults, ``arguments`` over all. The workspace
        is always :attr:`workspace` (planning resolves the default ``"."`` against the folder
        it planned in); its source stays ``"default"`` when no layer set it.

        Raises:
            TypeError, agent.errors.InputError: from :meth:`AgentSettings.layered`.
        """
        layers = self.settings_layers()
        layered = AgentSettings.layered(
            file=layers["file"],
            task_file=layers["task file"],
            command_line=layers["command line"],
            arguments=arguments,
        )
        if "workspace" in self.sources or "workspace" in (arguments or {}):
            return layered
        return LayeredSettings(layered.settings.replace(workspace=self.workspace), layered.sources)

    def backend_options(self) -> BackendOptions:
        """The load options given for the model (for :func:`models.catalog.open_backend`)."""
        options = {"n_ctx": self.n_ctx, "n_gpu_layers": self.n_gpu_layers}
        return BackendOptions.from_mapping({k: v for k, v in options.items() if v is not None})


def read_task_file(path: str | Path) -> TaskFileSpec:
    """Read a task file and check its schema, keeping every problem instead of stopping at
    the first kind: schema errors and duplicate ids are in :attr:`TaskFileSpec.problems`, and
    :func:`agent.tasks.planning.plan_tasks` reports them together with what planning finds in the valid
    rest of the file (see :mod:`agent.tasks.problems`).

    Raises:
        TaskFileError: the file cannot be read, is not safe YAML, or is not a mapping (there
            is nothing further to check).
    """
    file = Path(path)
    try:
        data, source = load_yaml(file)
    except YamlLoadError as exc:
        raise TaskFileError([exc]) from None
    if not isinstance(data, dict):
        found = type(data).__name__
        raise TaskFileError(
            [YamlLoadError(file, f"a task file is a mapping with a tasks: list, not a {found}")]
        )
    problems = _duplicate_ids(file, data, source)
    try:
        model = TaskFile.model_validate(data)
    except ValidationError as exc:
        problems += schema_problems(file, exc, data, source, _allowed_keys)
    else:
        return TaskFileSpec(file, model, source, problems)
    model, positions, dropped = _valid_part(data)
    return TaskFileSpec(
        file, model, source, sorted(problems, key=in_file_order), positions, frozenset(dropped)
    )


def load_task_file(path: str | Path) -> TaskFileSpec:
    """Read and validate a task file (:func:`read_task_file`, refusing any schema problem or
    duplicate id).

    Raises:
        TaskFileError: the file cannot be read, is not safe YAML, or breaks the schema.
    """
    spec = read_task_file(path)
    if spec.problems:
        raise TaskFileError(spec.problems)
    return spec


def _allowed_keys(parent: DocPath) -> list[str]:
    """The keys of the mapping at ``parent``: the file, a task, or a task's ``expect:``."""
    if parent == ():
        model: type[BaseModel] = TaskFile
    elif len(parent) == 2 and parent[0] == "tasks":
        model = Task
    else:
        model = Expect
    return sorted(model.model_fields)


def _valid_part(data: dict[str, Any]) -> tuple[TaskFile, tuple[int, ...], set[DocPath]]:
    """The file-level settings and the tasks of ``data`` that are valid once their wrong keys
    are dropped; the file position of each task kept; the paths of the keys dropped."""
    top = {k: v for k, v in data.items() if k in Settings.model_fields}
    settings = salvage(Settings, top, lambda key: False) or Settings()
    dropped: set[DocPath] = {(k,) for k in set(top) - settings.model_fields_set}
    tasks: list[Task] = []
    positions: list[int] = []
    raw = data.get("tasks")
    for index, item in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(item, dict):
            continue
        fields = {k: v for k, v in item.items() if k in Task.model_fields}
        task = salvage(Task, fields, lambda key: key in ("id", "prompt", "prompt_file"))
        if task is not None:
            tasks.append(task)
            positions.append(index)
            dropped |= {("tasks", index, k) for k in set(fields) - task.model_fields_set}
    values = {name: getattr(settings, name) for name in Settings.model_fields}
    return TaskFile.model_construct(**values, tasks=tasks), tuple(positions), dropped


def _duplicate_ids(file: Path, data: dict[str, Any], source: SourceMap) -> list[YamlLoadError]:
    """A problem for each task whose id an earlier task already has."""
    first: dict[str, int] = {}
    duplicates: list[YamlLoadError] = []
    raw = data.get("tasks")
    for index, item in enumerate(raw if isinstance(raw, list) else []):
        task_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(task_id, str):
            continue
        if task_id in first:
            at: DocPath = ("tasks", index, "id")
            message = (
                f"{dotted(at)}: the id {task_id!r} is also the id of tasks[{first[task_id]}]; "
                "ids must be unique"
            )
            duplicates.append(YamlLoadError(file, message, source.locate(at)))
        first.setdefault(task_id, index)
    return duplicates


@dataclass
class TaskFileSpec:
    """A loaded task file; :meth:`plan` resolves it into runnable tasks. When the file broke
    the schema, :attr:`problems` says how and :attr:`data` holds only its valid part."""

    path: Path
    data: TaskFile
    source: SourceMap
    problems: list[YamlLoadError] = field(default_factory=list)
    """Schema problems and duplicate ids, in file order (empty: the file is schema-valid)."""
    positions: tuple[int, ...] | None = None
    """The index in the file of each task of :attr:`data` (``None``: the same as in data)."""
    dropped: frozenset[DocPath] = frozenset()
    """The wrong keys left out of :attr:`data` (their problems are in :attr:`problems`)."""

    def ids(self) -> list[str]:
        return [t.id for t in self.data.tasks]

    def numbered_tasks(self) -> list[tuple[int, Task]]:
        """Each task with its index in the file's ``tasks:`` list."""
        positions = self.positions or range(len(self.data.tasks))
        return list(zip(positions, self.data.tasks, strict=True))


def read_text_file(base: Path, name: str) -> str:
    """The UTF-8 text of ``name`` (relative to ``base``).

    Raises:
        YamlLoadError: the file is missing, unreadable or not UTF-8.
    """
    path = (base / Path(name).expanduser()).resolve()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise YamlLoadError(path, f"cannot read the file: {exc.strerror or exc}") from None
    return decode(path, raw)


__all__ = [
    "Location",
    "Settings",
    "Task",
    "TaskFile",
    "TaskFileError",
    "TaskFileSpec",
    "TaskPlan",
    "load_task_file",
    "read_task_file",
]
