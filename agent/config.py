"""The user's config file: defaults for ``qwq-agent`` and the TUI, overridden by flags.

The file is TOML, at :func:`config_path` (``$QWQ_AGENT_CONFIG``, else the platform's user
config folder: ``~/.config/qwq-agent/config.toml`` on Linux). Every key is optional; unknown
keys are errors (a typo must not be silently ignored). An example::

    model = "local"                  # a catalog name, a .gguf path, a URL, or an endpoint name
    tools = ["calculator", "python"]
    placement = "interleaved"
    temperature = 0.6

    [approvals]                      # per tool: "allow" | "deny" | "ask"; "*" is the default
    python = "allow"

    [limits]
    max_steps = 30
    max_tokens = 16384
    thinking_budget = 8192

    [tool_settings.python]           # seen by the tool through its ToolContext
    cpu_seconds = 10

    [endpoints.local]                # an OpenAI-compatible server, by name
    base_url = "http://127.0.0.1:8080/v1"
    model_name = "qwq-32b"
    strict = false                   # true: only the fields OpenAI defines (no top_k, min_p…)
    api_key_env = "LOCAL_LLM_KEY"    # the NAME of the variable; keys never go in this file
    headers = { "X-Team" = "${TEAM_ID}" }   # ${VAR} is read from the environment when used

    [[mcp]]                          # MCP servers whose tools the agent gets
    command = ["uvx", "mcp-server-time"]
    safe = ["get_current_time"]      # these tools need no approval; true: all of them

    [[mcp]]
    url = "http://127.0.0.1:9000/mcp"

:func:`load_config` returns a :class:`Config` (pydantic, frozen) or raises
:class:`ConfigError`, one line per problem, ``FILE:LINE:COLUMN: KEY: what is wrong`` (as task
files do), with "did you mean" for a misspelt key or tool name.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from agent.errors import InputError
from agent.toml_places import KeyPath, Place, key_places, locate
from models.llama.options import MIN_CONTEXT
from tools import McpServerSpec

if TYPE_CHECKING:
    from models.openai.backend import OpenAIBackend
    from models.openai.options import ServerOptions

ENV_VAR = "QWQ_AGENT_CONFIG"
"""An environment variable that points at another config file."""
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(InputError):
    """The config file cannot be read or is invalid; the message names the file and key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitsConfig(_Section):
    """``[limits]``: the numbers that bound a run."""

    max_steps: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    thinking_budget: int | None = Field(default=None, ge=0)
    """Thinking tokens per run; then the thinking is closed and the model answers."""
    timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Wall-clock seconds per run."""
    max_repeated_calls: int | None = Field(default=None, ge=1)
    tool_output_chars: int | None = Field(default=None, ge=100)


class EndpointConfig(_Section):
    """``[endpoints.NAME]``: an OpenAI-compatible server (see :mod:`models.openai.backend`).

    A key left out (``None``) is :class:`models.openai.options.ServerOptions`' default (and
    ``max_retries`` :class:`models.openai._http.RetryPolicy`'s), written there once."""

    base_url: str = Field(pattern=r"^https?://")
    model_name: str | None = None
    mode: Literal["completions", "chat"] | None = None
    strict: bool = False
    """Send only the request fields OpenAI defines (see :data:`models.openai.backend.EXTENDED_FIELDS`);
    without it the backend turns strict by itself when the server refuses one by name."""
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    headers: dict[str, str] = Field(default_factory=dict)
    opens_thinking: bool | None = None
    context_size: int | None = Field(default=None, ge=1)
    connect_timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    read_timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_retries: int | None = Field(default=None, ge=0, le=10)
    trust_env: bool | None = None

    def resolved_headers(self) -> dict[str, str]:
        """The headers with ``${VAR}`` replaced from the environment.

        Raises:
            ConfigError: a referenced variable is not set.
        """
        return {name: _expand(value, f"headers.{name}") for name, value in self.headers.items()}

    def server_options(self, *, strict: bool = False) -> ServerOptions:
        """The :class:`models.openai.options.ServerOptions` of this endpoint (``strict``: strict
        mode even when the file does not ask for it, as ``--api-strict`` does).

        Raises:
            ConfigError: a header refers to a variable that is not set.
        """
        from models.openai.backend import RetryPolicy
        from models.openai.options import ServerOptions

        given = {
            name: getattr(self, name)
            for name in ("mode", "connect_timeout", "read_timeout", "trust_env")
            if getattr(self, name) is not None
        }
        if self.max_retries is not None:
            given["retry"] = RetryPolicy(max_retries=self.max_retries)
        return ServerOptions(
            model_name=self.model_name,
            strict=self.strict or strict,
            api_key_env=self.api_key_env,
            headers=self.resolved_headers(),
            opens_thinking=self.opens_thinking,
            context_size=self.context_size,
            **given,
        )

    def open_backend(self, *, strict: bool = False) -> OpenAIBackend:
        """The backend of this endpoint, at :attr:`base_url` with :meth:`server_options`.

        Raises:
            ConfigError: a header refers to a variable that is not set.
            models.errors.BackendError: the server cannot be reached, or its key is not set.
        """
        from models.openai.backend import OpenAIBackend

        return OpenAIBackend(self.base_url, self.server_options(strict=strict))


class McpConfig(_Section):
    """``[[mcp]]``: one MCP server (see :mod:`tools.mcp`)."""

    command: list[str] | str | None = None
    """The program and its arguments (a string is split as a shell would)."""
    url: str | None = Field(default=None, pattern=r"^https?://")
    name: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment of a stdio server; ``${VAR}`` is read from the environment."""
    cwd: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    safe: bool | list[str] = False
    timeout: float = Field(default=60.0, gt=0)
    connect_timeout: float = Field(default=30.0, gt=0)
    prefix: str = ""

    def to_spec(self) -> McpServerSpec:
        """The spec :class:`tools.mcp.McpServer` connects with.

        Raises:
            ConfigError: neither or both of ``command`` and ``url``, or an unset ``${VAR}``.
        """
        if (self.command is None) == (self.url is None):
            raise ConfigError("an [[mcp]] entry needs exactly one of 'command' and 'url'")
        command = shlex.split(self.command) if isinstance(self.command, str) else self.command
        return McpServerSpec(
            command=tuple(command or ()),
            url=self.url,
            name=self.name,
            env={k: _expand(v, f"env.{k}") for k, v in self.env.items()},
            cwd=str(Path(self.cwd).expanduser()) if self.cwd else None,
            headers={k: _expand(v, f"headers.{k}") for k, v in self.headers.items()},
            safe=self.safe if isinstance(self.safe, bool) else frozenset(self.safe),
            timeout=self.timeout,
            connect_timeout=self.connect_timeout,
            prefix=self.prefix,
        )


class Config(_Section):
    """The whole file. Every field is optional: ``None`` means "the built-in default"."""

    model: str | None = None
    """A catalog name, a .gguf path, an http(s) URL, ``scripted:FILE``, or an endpoint name."""
    tools: list[str] | None = None
    placement: Literal["interleaved", "template"] | None = None
    tool_choice: Literal["auto", "required"] | None = None
    temperature: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    seed: int | None = None
    workspace: str | None = None
    system: str | None = None
    ctx: int | None = Field(default=None, ge=MIN_CONTEXT)
    n_gpu_layers: int | None = Field(default=None, ge=-1)
    approvals: dict[str, Literal["allow", "deny", "ask"]] = Field(default_factory=dict)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    tool_settings: dict[str, dict[str, Any]] = Field(default_factory=dict)
    endpoints: dict[str, EndpointConfig] = Field(default_factory=dict)
    mcp: list[McpConfig] = Field(default_factory=list)
    _path: Path | None = PrivateAttr(default=None)
    _places: dict[KeyPath, Place] = PrivateAttr(default_factory=dict)

    @property
    def path(self) -> Path | None:
        """The file this came from (``None``: no file, the defaults)."""
        return self._path

    def place(self, key: KeyPath) -> Place | None:
        """Line and column of ``key`` (``("limits", "max_steps")``), or of its nearest
        written ancestor, in :attr:`path` (``None``: not written there, or no file)."""
        return locate(self._places, key)

    def endpoint(self, model: str) -> EndpointConfig | None:
        """The endpoint ``model`` names (by endpoint name, or by its ``base_url``)."""
        if model in self.endpoints:
            return self.endpoints[model]
        wanted = model.rstrip("/")
        return next((e for e in self.endpoints.values() if e.base_url.rstrip("/") == wanted), None)

    def mcp_specs(self) -> list[McpServerSpec]:
        """The ``[[mcp]]`` servers as specs for :func:`tools.mcp.connect_mcp`.

        Raises:
            ConfigError: an entry is incomplete; the message names its position.
        """
        specs = []
        for index, entry in enumerate(self.mcp):
            try:
                specs.append(entry.to_spec())
            except ConfigError as exc:
                raise ConfigError(f"{self._where()}mcp[{index}]: {exc}") from None
        return specs

    def settings_layer(self) -> dict[str, Any]:
        """The :class:`agent.settings.AgentSettings` this file sets, by setting name (nothing
        else): its layer for :meth:`agent.settings.AgentSettings.layered`."""
        layer: dict[str, Any] = {}
        for key in ("placement", "tool_choice", "temperature", "seed", "workspace", "system"):
            value = getattr(self, key)
            if value is not None:
                layer[key] = value
        if self.approvals:
            layer["approval"] = dict(self.approvals)
        layer.update(self.limits.model_dump(exclude_none=True))
        if self.tool_settings:
            layer["tool_settings"] = {k: dict(v) for k, v in self.tool_settings.items()}
        return layer

    def backend_layer(self) -> dict[str, Any]:
        """The backend options this file sets (``ctx``, ``n_gpu_layers``), by their flat names
        (:data:`models.options.FLAT_NAMES`)."""
        options = {"n_ctx": self.ctx, "n_gpu_layers": self.n_gpu_layers}
        return {k: v for k, v in options.items() if v is not None}

    def _where(self) -> str:
        return f"{self.path}: " if self.path is not None else ""


def config_path() -> Path:
    """Where the config file is: ``$QWQ_AGENT_CONFIG``, else the user config folder."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("qwq-agent")) / "config.toml"


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and check the config file.

    Args:
        path: the file; ``None``: :func:`config_path`, where a missing file means "no
            settings" (an explicit path, or ``$QWQ_AGENT_CONFIG``, must exist).

    Raises:
        ConfigError: the file cannot be read, is not TOML, or has an invalid or unknown key.
    """
    explicit = path is not None or bool(os.environ.get(ENV_VAR))
    file = Path(path).expanduser() if path is not None else config_path()
    text = ""
    try:
        text = file.read_bytes().decode("utf-8")
        data = tomllib.loads(text)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(
                f"no config file at {str(file)!r}; create it, or fix the path"
            ) from None
        return Config()
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {str(file)!r}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{file}: the config file is not UTF-8 (byte {exc.start}); save it as UTF-8"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        place = _TOML_PLACE.search(str(exc))
        where = f"{file}:{place.group(1)}:{place.group(2)}" if place else str(file)
        message = _TOML_PLACE.sub("", str(exc)).strip()
        raise ConfigError(f"{where}: not valid TOML: {message}") from exc
    places = key_places(text)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(file, exc, places)) from None
    config._path = file
    config._places = places
    _check_meaning(config, file, places)
    return config


_TOML_PLACE = re.compile(r"\s*\(at line (\d+), column (\d+)\)")


def _at(file: Path, places: dict[KeyPath, Place], path: KeyPath) -> str:
    """``FILE:LINE:COL`` of ``path`` (or of its nearest written ancestor), else ``FILE``."""
    place = locate(places, path)
    return f"{file}:{place[0]}:{place[1]}" if place is not None else str(file)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_meaning(config: Config, file: Path, places: dict[KeyPath, Place]) -> None:
    """What the schema cannot see: tools that exist, settings they know, a model that resolves.

    Raises:
        ConfigError: naming the file and the key.
    """
    from models import BackendError, parse_spec
    from tools import BUILTINS, ToolError, check_tool_settings

    for index, name in enumerate(config.tools or ()):
        if name not in BUILTINS:
            raise ConfigError(
                f"{_at(file, places, ('tools',))}: tools[{index}]: unknown tool {name!r}"
                f"{_did_you_mean(name, BUILTINS)} (built-in tools are: "
                f"{', '.join(sorted(BUILTINS))}; MCP servers' tools come from [[mcp]])"
            )
    for name, values in config.tool_settings.items():
        try:
            check_tool_settings({name: values})
        except ToolError as exc:
            where = _at(file, places, ("tool_settings", name))
            raise ConfigError(f"{where}: tool_settings.{name}: {exc}") from None
    if config.model is not None and config.endpoint(config.model) is None:
        try:
            parse_spec(config.model)
        except BackendError as exc:
            endpoints = ", ".join(sorted(config.endpoints)) or "none in this file"
            where = _at(file, places, ("model",))
            raise ConfigError(f"{where}: model: {exc} (endpoints: {endpoints})") from None


def _explain(file: Path, exc: ValidationError, places: dict[KeyPath, Place]) -> str:
    """One line per problem: ``FILE:LINE:COL: KEY: what is wrong`` (never the value: it may
    be secret)."""
    lines = []
    for error in exc.errors()[:10]:
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            message = f"unknown key{_allowed(loc[:-1])}{_did_you_mean(loc[-1], _names(loc[:-1]))}"
            if loc[-1] == "api_key":
                message = (
                    "keys do not belong in the config file: put the key in an environment "
                    "variable and give its name as api_key_env"
                )
        else:
            message = error["msg"]
        lines.append(f"{_at(file, places, tuple(error['loc']))}: {key}: {message}")
    more = len(exc.errors()) - 10
    return "\n".join(lines) + (f"\n(and {more} more)" if more > 0 else "")


def _allowed(parent: list[str]) -> str:
    """``" (allowed: a, b)"`` for the section at ``parent``, when it is a known section."""
    names = _names(parent)
    return f" (allowed: {', '.join(names)})" if names else ""


def _names(parent: list[str]) -> list[str]:
    """The keys the section at ``parent`` allows (none when it is not a known section)."""
    sections: dict[tuple[str, ...], type[BaseModel]] = {(): Config, ("limits",): LimitsConfig}
    if len(parent) == 2 and parent[0] == "endpoints":
        model: type[BaseModel] | None = EndpointConfig
    elif len(parent) == 2 and parent[0] == "mcp":
        model = McpConfig
    else:
        model = sections.get(tuple(parent))
    return sorted(model.model_fields) if model is not None else []


def _expand(value: str, where: str) -> str:
    def variable(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"{where} refers to ${{{name}}}, which is not set in the environment")
        return os.environ[name]

    return _ENV_REFERENCE.sub(variable, value)
