"""The task file of ``qwq-agent run``: its schema, its loader, and the plan of each task.

A task file is YAML (loaded by :mod:`agent.safe_yaml`: ``safe_load`` semantics, traps closed)
validated by the pydantic models below: unknown keys are rejected, types are strict (``yes``
is not text, ``1.10`` is not a version string: the error says to quote them). Every problem is
a :class:`TaskFileError` listing each one as ``FILE:LINE:COLUMN: what is wrong``, raised before
any task runs.

Shape: file-level defaults (every field of :class:`Settings`), then ``tasks:``, a list of
:class:`Task`; a task may override any default. :meth:`TaskFileSpec.plan` merges the layers,
command line first (``--model`` beats the file), then the task, then the file, then the
built-in defaults, and turns each task into a :class:`TaskPlan`: the prompt rendered (every
prompt is a Jinja2 template, sandboxed, ``StrictUndefined``, given the task's ``inputs`` if
any: literal braces need ``{% raw %}``), files read, paths resolved, and each ``approve:``
checked against the ``tools:`` it goes with. Paths written in the file (``workspace``, ``system_file``, ``prompt_file``,
``scripted:FILE``, a ``.gguf`` path) are relative to the task file's folder; paths on the
command line to the current directory.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator
from pydantic_core import ErrorDetails

from agent.expect import Expect
from agent.safe_yaml import (
    DocPath,
    Location,
    SourceMap,
    YamlLoadError,
    decode,
    dotted,
    load_yaml,
)

Placement = Literal["interleaved", "template"]
ToolChoice = Literal["auto", "required"]

DEFAULT_MODEL = "qwq-32b"
DEFAULT_TOOLS = ("calculator",)
"""The same defaults as the command line's ``--model`` and ``--tools``."""
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "presence_penalty", "seed")
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class Settings(BaseModel):
    """What a task file sets for all tasks and a task may override (``None``: not set)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    model: str | None = Field(default=None, min_length=1)
    ctx: int | None = Field(default=None, ge=64)
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


class TaskFileError(ValueError):
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

    @property
    def model_key(self) -> tuple[str, int | None, int | None]:
        """Tasks with the same key share one loaded model."""
        return (self.model, self.n_ctx, self.n_gpu_layers)

    def backend_options(self) -> dict[str, Any]:
        """The load options given for the model (for ``open_backend``)."""
        options = {"n_ctx": self.n_ctx, "n_gpu_layers": self.n_gpu_layers}
        return {k: v for k, v in options.items() if v is not None}


def load_task_file(path: str | Path) -> TaskFileSpec:
    """Read and validate a task file.

    Raises:
        TaskFileError: the file cannot be read, is not safe YAML, or breaks the schema.
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
    try:
        model = TaskFile.model_validate(data)
    except ValidationError as exc:
        raise TaskFileError(_problems(file, exc, data, source)) from None
    first: dict[str, int] = {}
    duplicates: list[YamlLoadError] = []
    for index, task in enumerate(model.tasks):
        if task.id in first:
            at: DocPath = ("tasks", index, "id")
            message = (
                f"{dotted(at)}: the id {task.id!r} is also the id of tasks[{first[task.id]}]; "
                "ids must be unique"
            )
            duplicates.append(YamlLoadError(file, message, source.locate(at)))
        first.setdefault(task.id, index)
    if duplicates:
        raise TaskFileError(duplicates)
    return TaskFileSpec(file, model, source)


def _problems(
    file: Path, exc: ValidationError, data: Any, source: SourceMap
) -> list[YamlLoadError]:
    problems: dict[DocPath, YamlLoadError] = {}
    for error in exc.errors():
        path = _data_path(error["loc"], data, missing=error["type"] == "missing")
        if path in problems:  # the other branches of a union: one message is enough
            continue
        location = source.locate(path, key=error["type"] == "extra_forbidden")
        message = _message(error, path, source)
        problems[path] = YamlLoadError(file, f"{dotted(path)}: {message}", location)
    return sorted(problems.values(), key=_order)


def _order(problem: YamlLoadError) -> tuple[int, int]:
    where = problem.location
    return (where.line, where.column) if where is not None else (0, 0)


def _data_path(loc: tuple[int | str, ...], data: Any, *, missing: bool = False) -> DocPath:
    """The part of pydantic's ``loc`` that points into ``data`` (union tags dropped); for a
    missing key, the path of the key that should be there."""
    path: list[str | int] = []
    node = data
    for part in loc:
        inside = isinstance(node, dict) and part in node
        if inside or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            node = node[part]
        else:
            if missing and isinstance(node, dict):
                path.append(part)
            break
        path.append(part)
    return tuple(path)


_EXPECTED = {
    "string_type": "text",
    "list_type": "a list",
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "literal_error": "one of the listed words",
    "string_pattern_mismatch": "text",
}


def _message(error: ErrorDetails, path: DocPath, source: SourceMap) -> str:
    kind, value = error["type"], error.get("input")
    name = path[-1] if path else ""
    if kind == "missing":
        return f"the key {name!r} is required"
    if kind == "extra_forbidden":
        return _unknown_key(path)
    message = str(error["msg"]).removeprefix("Value error, ")
    written, read_as = source.plain.get(path), _read_as(value)
    if kind == "invalid-json-value" and written is not None and read_as:
        return f'YAML read {written} as {read_as}, which is not JSON; put it in quotes: "{written}"'
    if kind in _EXPECTED and written is not None and read_as:
        text = f"expected {_EXPECTED[kind]}, but YAML read {written} as {read_as}"
        if kind in ("string_type", "string_pattern_mismatch", "literal_error"):
            text += f'; put it in quotes: "{written}"'
        return text + (f" ({message})" if kind == "literal_error" else "")
    if kind == "string_pattern_mismatch":
        return "an id is 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
    return f"{message} (got {value!r})" if kind in _EXPECTED else message


def _unknown_key(path: DocPath) -> str:
    import difflib

    parent = path[:-1]
    if parent == ():
        model: type[BaseModel] = TaskFile
    elif len(parent) == 2 and parent[0] == "tasks":
        model = Task
    else:
        model = Expect
    allowed = sorted(model.model_fields)
    text = f"unknown key {path[-1]!r}"
    close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
    if close:
        text += f"; did you mean {close[0]!r}?"
    return text + f" (allowed here: {', '.join(allowed)})"


def _read_as(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()} (YAML 1.1 reads yes/no/on/off/y/n as booleans)"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, datetime.date):
        return f"the date {value.isoformat()}"
    if value is None:
        return "null (nothing)"
    return ""


@dataclass
class TaskFileSpec:
    """A loaded, schema-valid task file; :meth:`plan` resolves it into runnable tasks."""

    path: Path
    data: TaskFile
    source: SourceMap

    def ids(self) -> list[str]:
        return [t.id for t in self.data.tasks]

    def plan(
        self,
        overrides: Settings | None = None,
        *,
        cwd: Path | None = None,
        endpoints: frozenset[str] = frozenset(),
    ) -> list[TaskPlan]:
        """Merge the command line (``overrides``), each task and the file into plans.
        ``endpoints``: model names that the config file defines as servers.

        Raises:
            TaskFileError: every problem found (unknown model or tool, missing file or folder,
                a prompt that does not render), each with its place in the file.
        """
        from agent.planning import Planner

        return Planner(self, overrides or Settings(), cwd or Path.cwd(), endpoints).plan_all()


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
]
