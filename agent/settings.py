"""``AgentSettings``: every run setting of an :class:`agent.Agent`, each default written once.

A run is shaped by limits (steps, tokens, thinking, time, repeated calls), the approval
policy, sampling overrides, the placement of tool calls, the workspace and the transcript
and session options. :class:`AgentSettings` holds them in one frozen value whose field
defaults are *the* defaults: ``Agent(...)`` keyword arguments, the command line, task files
and ``qwq-agent config show`` all read them from here (the limits' own defaults are those of
:class:`agent.state.Limits`, which this module reuses rather than repeats).

Settings come in layers, lowest first (:data:`LAYERS`): the built-in defaults, the config
file (:meth:`agent.config.Config.settings_layer`), a task file, the command line (only the
options the user typed), and explicit arguments (``Agent(max_steps=5)``).
:meth:`AgentSettings.layered` lays them over one another and remembers, per setting, which
layer it came from (:class:`LayeredSettings`), which is what ``config show`` prints.

What the agent is made of rather than how it runs (the model, the tools, MCP servers, an
approval callback, backend options) is not a setting: those are arguments of
:class:`agent.Agent` of their own. The names of the command line's and task files' default
model and tools are here too (:data:`DEFAULT_MODEL`, :data:`DEFAULT_TOOLS`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

from agent.approval import ApprovalPolicy, ApprovalSetting
from agent.errors import InputError
from agent.state import Limits
from models import Sampling
from tools.output import DEFAULT_OUTPUT_CHARS

Placement = Literal["interleaved", "template"]
ToolChoice = Literal["auto", "required"]

DEFAULT_MODEL = "qwq-32b"
"""The model an agent, the command line and a task file use when none is named."""
DEFAULT_TOOLS: tuple[str, ...] = ("calculator",)
"""The tools of the command line and of task files when none are named (an embedding
``Agent`` has none unless given)."""
DEFAULT_TOOL_OUTPUT_CHARS = DEFAULT_OUTPUT_CHARS
"""Cap on each tool result placed in the context (the security model's table; the tools'
own default, :data:`tools.output.DEFAULT_OUTPUT_CHARS`)."""

_LIMITS = Limits()
"""The limits' defaults, as :class:`agent.state.Limits` defines them."""

SettingSource = Literal["default", "file", "task file", "command line", "argument"]
"""Where a setting's value came from (the words ``config show`` prints)."""
LAYERS: tuple[SettingSource, ...] = ("default", "file", "task file", "command line", "argument")
"""The layers, lowest first: each one overrides those before it."""


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """How an agent runs. Frozen: :meth:`replace` makes a changed copy.

    Attributes:
        placement: ``"interleaved"`` (calls honoured inside the thinking too, results
            inserted right there) or ``"template"`` (calls only after ``</think>``, results
            as the official template renders them).
        approval: the policy for dangerous tools (see :mod:`agent.approval`): ``"ask"``,
            ``"allow"``, ``"deny"``, a mapping per tool (``"*"``: the rest), or a callable.
        workspace: the only folder file tools may touch.
        max_steps: model generations per run.
        max_tokens: sampled tokens per run (``None``: no budget but the window).
        thinking_budget: thinking tokens per run; when reached, the runtime closes the
            thinking (:mod:`agent.thinking_budget`). ``None``: no budget.
        timeout: wall-clock seconds per run (``None``: none).
        temperature: overrides the model's recommended temperature (``None``: the model's).
        seed: sampling seed (``None``: random).
        sampling: replaces the model's recommended sampler settings (``temperature`` and
            ``seed`` still override it).
        tool_choice: ``"required"`` makes the first step a tool call.
        system: the system prompt (``None``: ``prompts/system.md.j2``).
        max_repeated_calls: an identical call beyond this many times ends the run.
        max_calls_per_step: calls run from one generation; further ones get an error.
        tool_output_chars: cap on each tool result placed in the context.
        tool_settings: per-tool settings (limits) by tool name, seen by tools.
        transcript: write a JSONL transcript (``True``), not (``False``), or to this file.
        sessions_dir: where transcripts go (``None``: the user data folder).
        session_kv: keep the conversation's KV state beside its transcript: ``True`` up to
            :data:`models.llama.kv_state.DEFAULT_SESSION_BYTES`, or a bound in bytes.

    Raises:
        agent.errors.InputError: from the constructor, for a value no run could use (an
            unknown placement, tool choice or approval word, a temperature that is negative
            or not finite, a limit that could never be met or is infinite, a
            ``tool_output_chars`` or ``session_kv`` bound below 1); the message names the
            setting and the value. (``InputError`` is a ``ValueError``.)
        TypeError: from the constructor, for a value of the wrong type (``max_steps="5"``,
            ``max_steps=2.5``, ``max_tokens=True``); the message names the setting.
    """

    placement: Placement = "interleaved"
    approval: ApprovalSetting = "ask"
    workspace: str | Path = "."
    max_steps: int = _LIMITS.max_steps
    max_tokens: int | None = _LIMITS.max_tokens
    thinking_budget: int | None = _LIMITS.thinking_budget
    timeout: float | None = _LIMITS.timeout
    temperature: float | None = None
    seed: int | None = None
    sampling: Sampling | None = None
    tool_choice: ToolChoice = "auto"
    system: str | None = None
    max_repeated_calls: int = _LIMITS.max_repeated_calls
    max_calls_per_step: int = _LIMITS.max_calls_per_step
    tool_output_chars: int = DEFAULT_TOOL_OUTPUT_CHARS
    tool_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    transcript: bool | str | Path = True
    sessions_dir: str | Path | None = None
    session_kv: bool | int = False

    def __post_init__(self) -> None:
        _check_types(self)
        try:
            _check_values(self)
        except InputError:
            raise
        except ValueError as exc:  # from Limits or ApprovalPolicy: the same message, as input
            raise InputError(str(exc)) from None

    @property
    def limits(self) -> Limits:
        """The numbers that bound a run, as the loop takes them."""
        return Limits(
            max_steps=self.max_steps,
            max_tokens=self.max_tokens,
            timeout=self.timeout,
            max_repeated_calls=self.max_repeated_calls,
            max_calls_per_step=self.max_calls_per_step,
            thinking_budget=self.thinking_budget,
        )

    def replace(self, **changes: Any) -> AgentSettings:
        """A copy with ``changes`` (setting names) applied and checked.

        Raises:
            TypeError: a name that is not a setting, or a value of the wrong type.
            agent.errors.InputError: a value no run could use.
        """
        unknown = sorted(set(changes) - set(SETTING_NAMES))
        if unknown:
            raise TypeError(f"unknown settings {unknown}; known: {', '.join(SETTING_NAMES)}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def layered(
        cls,
        *,
        file: Mapping[str, Any] | None = None,
        task_file: Mapping[str, Any] | None = None,
        command_line: Mapping[str, Any] | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> LayeredSettings:
        """The settings of the layers (:data:`LAYERS`): each mapping holds only what its
        layer sets, by setting name, and overrides the layers before it; what none sets is
        the default.

        Raises:
            TypeError: a name that is not a setting, or a value of the wrong type.
            agent.errors.InputError: a value no run could use.
        """
        values: dict[str, Any] = {}
        sources: dict[str, SettingSource] = dict.fromkeys(SETTING_NAMES, "default")
        given: tuple[tuple[SettingSource, Mapping[str, Any] | None], ...] = (
            ("file", file),
            ("task file", task_file),
            ("command line", command_line),
            ("argument", arguments),
        )
        for source, layer in given:
            for name, value in (layer or {}).items():
                values[name] = value
                sources[name] = source
        return LayeredSettings(cls().replace(**values), sources)


_INTS = ("max_steps", "max_repeated_calls", "max_calls_per_step", "tool_output_chars")
_OPTIONAL_INTS = ("max_tokens", "thinking_budget", "seed")
_OPTIONAL_NUMBERS = ("timeout", "temperature")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_types(settings: AgentSettings) -> None:
    """Refuse a value of the wrong type, naming the setting (a ``"5"`` from a caller's own
    parsing must not surface as a comparison error deep in a run).

    Raises:
        TypeError: the first setting whose value has the wrong type.
    """
    for name in _INTS:
        value = getattr(settings, name)
        if not _is_int(value):
            raise TypeError(f"{name} must be an int, got {value!r}")
    for name in _OPTIONAL_INTS:
        value = getattr(settings, name)
        if value is not None and not _is_int(value):
            raise TypeError(f"{name} must be an int or None, got {value!r}")
    for name in _OPTIONAL_NUMBERS:
        value = getattr(settings, name)
        if value is not None and not (_is_int(value) or isinstance(value, float)):
            raise TypeError(f"{name} must be a number or None, got {value!r}")
    if not isinstance(settings.workspace, str | os.PathLike):
        raise TypeError(f"workspace must be a folder (str or Path), got {settings.workspace!r}")
    if settings.sessions_dir is not None and not isinstance(
        settings.sessions_dir, str | os.PathLike
    ):
        raise TypeError(
            f"sessions_dir must be a folder (str or Path) or None, got {settings.sessions_dir!r}"
        )
    if not isinstance(settings.transcript, bool | str | os.PathLike):
        raise TypeError(f"transcript must be True, False or a file, got {settings.transcript!r}")
    if not isinstance(settings.session_kv, bool | int):
        raise TypeError(
            f"session_kv must be True, False or a size in bytes, got {settings.session_kv!r}"
        )
    if settings.system is not None and not isinstance(settings.system, str):
        raise TypeError(f"system must be a str or None, got {settings.system!r}")
    if settings.sampling is not None and not isinstance(settings.sampling, Sampling):
        raise TypeError(f"sampling must be a models.Sampling or None, got {settings.sampling!r}")
    if not isinstance(settings.tool_settings, Mapping) or not all(
        isinstance(v, Mapping) for v in settings.tool_settings.values()
    ):
        raise TypeError(
            f"tool_settings must map tool names to mappings, got {settings.tool_settings!r}"
        )


def _check_values(settings: AgentSettings) -> None:
    """Refuse a value no run could use (its type already checked).

    Raises:
        ValueError: naming the setting and the value (:class:`InputError` or the
            ``ValueError`` of :class:`agent.state.Limits` or :class:`agent.approval.ApprovalPolicy`).
    """
    if settings.placement not in ("interleaved", "template"):
        raise InputError(
            f"placement must be 'interleaved' or 'template', got {settings.placement!r}"
        )
    if settings.tool_choice not in ("auto", "required"):
        raise InputError(f"tool_choice must be 'auto' or 'required', got {settings.tool_choice!r}")
    settings.limits  # noqa: B018 -- raises ValueError for a limit that could never be met
    if settings.timeout is not None and math.isinf(settings.timeout):
        raise InputError(
            f"timeout must be a finite number of seconds (None: no limit), got {settings.timeout!r}"
        )
    temperature = settings.temperature
    if temperature is not None and not (math.isfinite(temperature) and temperature >= 0):
        raise InputError(f"temperature must be 0 or more (a finite number), got {temperature!r}")
    if settings.tool_output_chars < 1:
        raise InputError(
            f"tool_output_chars must be at least 1, got {settings.tool_output_chars!r}"
        )
    if (
        settings.session_kv is not True
        and settings.session_kv is not False
        and settings.session_kv < 1
    ):
        raise InputError(
            f"session_kv must be True, False or a size in bytes, got {settings.session_kv!r}"
        )
    ApprovalPolicy(settings.approval)  # raises ValueError (or TypeError) for an unknown word


SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(AgentSettings))
"""The names of the settings, in declaration order."""

DEFAULTS = AgentSettings()
"""The built-in settings."""


@dataclass(frozen=True, slots=True)
class LayeredSettings:
    """Settings and, per setting name, the layer its value came from."""

    settings: AgentSettings
    sources: Mapping[str, SettingSource]


class SettingArguments(TypedDict, total=False):
    """The settings as keyword arguments of :class:`agent.Agent` (see :class:`AgentSettings`
    for what each means and its default)."""

    placement: Placement
    approval: ApprovalSetting
    workspace: str | Path
    max_steps: int
    max_tokens: int | None
    thinking_budget: int | None
    timeout: float | None
    temperature: float | None
    seed: int | None
    sampling: Sampling | None
    tool_choice: ToolChoice
    system: str | None
    max_repeated_calls: int
    max_calls_per_step: int
    tool_output_chars: int
    tool_settings: Mapping[str, Mapping[str, Any]]
    transcript: bool | str | Path
    sessions_dir: str | Path | None
    session_kv: bool | int
