"""The layers a task's settings come from, and the config file as one of them.

A setting of a task is taken from the first layer that sets it: the command line, the task,
the task file, then the config file (:class:`agent.config.Config`); the built-in defaults are
planning's to fill in (:mod:`agent.tasks.planning`). Each layer is a
:class:`~agent.tasks.taskfile.Settings` with its :data:`Origin`, which says where its values
were written and so where a problem with one of them is located.

Contract:

- :func:`pick` returns the value of the first layer that sets a setting, with its origin;
  :func:`first` the same value from bare settings.
- :func:`config_settings` is the config file as a layer: only what a task file can also set,
  built without re-validating (the config file's own schema has checked it);
  :func:`config_run_settings` holds the config file's run settings that a task file cannot
  set. :func:`config_key` names a setting as the config file spells it.
- Relative paths of the command line and the config file are resolved against the current
  folder, those of the task file against its folder (:func:`folder_of`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from agent.settings import SettingSource
from agent.tasks.safe_yaml import DocPath, Location
from agent.tasks.taskfile import Settings

if TYPE_CHECKING:
    from agent.config import Config

CONFIG: Final = "config"
"""The origin of a setting taken from the config file."""
Origin = DocPath | Literal["config"] | None
"""Where a setting came from: a path into the task file, :data:`CONFIG`, or ``None`` for the
command line."""
Layers = list[tuple[Settings, Origin]]
"""The layers of one task, the first that sets a setting wins."""

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


def pick(layers: Layers, name: str) -> tuple[Any, Origin]:
    """The value of setting ``name`` in the first of ``layers`` that sets it, and that layer's
    origin; ``(None, None)`` when none does."""
    for settings, origin in layers:
        value = getattr(settings, name)
        if value is not None:
            return value, origin
    return None, None


def first(layers: list[Settings], name: str) -> Any:
    """The value of setting ``name`` in the first of ``layers`` that sets it (or ``None``)."""
    return next((v for v in (getattr(layer, name) for layer in layers) if v is not None), None)


def source_of(origin: Origin) -> SettingSource:
    """The layer a setting from ``origin`` is reported as coming from (``TaskPlan.sources``)."""
    if origin is None:
        return "command line"
    return "file" if origin == CONFIG else "task file"


def folder_of(origin: Origin, cwd: Path, task_folder: Path) -> Path:
    """The folder that relative paths set at ``origin`` are resolved against: ``cwd`` for the
    command line and the config file, ``task_folder`` (the task file's) otherwise."""
    return cwd if origin is None or origin == CONFIG else task_folder


def config_settings(config: Config | None) -> Settings:
    """What ``config`` sets that a task file can also set, as a layer of task-file settings
    (built without re-validation: the config file's own schema has checked the values)."""
    if config is None:
        return Settings()
    values: dict[str, Any] = {name: getattr(config, name) for name in _CONFIG_SHARED}
    for name, (_, key) in _CONFIG_KEYS.items():
        values[name] = getattr(config.limits, key)
    return Settings.model_construct(**{k: v for k, v in values.items() if v is not None})


def config_run_settings(config: Config) -> dict[str, Any]:
    """The run settings ``config`` sets that a task file cannot (passed to every task as
    ``TaskPlan.file_settings``), by name."""
    layer = config.settings_layer()
    return {k: layer[k] for k in _CONFIG_ONLY if k in layer}


def config_key(name: str) -> tuple[str, ...]:
    """The config-file key of task-file setting ``name`` (``timeout_s``: ``limits.timeout``)."""
    return _CONFIG_KEYS.get(name, (name,))


def config_file_name(config: Config | None) -> str:
    """The path of ``config``'s file as problems name it, or ``"the config file"`` when it
    has none."""
    path = config.path if config is not None else None
    return str(path) if path is not None else "the config file"


def config_location(config: Config | None, key: tuple[str, ...]) -> Location | None:
    """Where ``key`` is written in ``config``'s file (``None``: unknown, or no config)."""
    place = config.place(key) if config is not None else None
    return Location(*place) if place is not None else None
