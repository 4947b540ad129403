"""From command-line options and the config file to an :class:`agent.Agent`.

Precedence, highest first: arguments given in code (``agent_from_args(args, max_steps=3)``), a
flag the user typed, the config file (``qwq-agent config path``), the built-in defaults: the
run settings are laid by :meth:`agent.settings.AgentSettings.layered` (:func:`layered_settings`
says where each comes from, for ``config show``), the model, tools and backend options the same
way here. A model named like one of the config's ``[endpoints]`` opens that endpoint with its
settings.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import Agent
from agent.cli.common import agent_option_flags, tool_names
from agent.errors import InputError
from agent.settings import (
    DEFAULT_MODEL,
    DEFAULT_TOOLS,
    SETTING_NAMES,
    AgentSettings,
    LayeredSettings,
)
from models import BackendError, BackendOptions

if TYPE_CHECKING:
    from agent.config import Config


class OptionError(InputError):
    """A command-line option or the config file is wrong; the message says which and how."""


def _headers(values: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise OptionError(
                f"--header: must look like NAME:VALUE (e.g. --header 'X-Team: blue'), got {value!r}"
            )
        headers[name.strip()] = content.strip()
    return headers


_SERVER_FLAGS = {
    "model_name": "model_name",
    "api_mode": "api_mode",
    "api_key_env": "api_key_env",
    "header": "headers",
    "api_strict": "api_strict",
}
"""The server options of :func:`agent.cli.common.add_agent_options`: argparse destination ->
flat backend option (:data:`models.options.FLAT_NAMES`)."""
_LOAD_FLAGS = {"ctx": "n_ctx", "n_gpu_layers": "n_gpu_layers"}
"""The load options that take a value: argparse destination -> flat backend option."""


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options given for a server model (``--model-name``, ``--api-mode``,
    ``--api-key-env``, ``--header``, ``--api-strict``), as :func:`models.catalog.open_backend`
    keywords; the ones not given are left out.

    Raises:
        OptionError: a ``--header`` that is not ``NAME:VALUE``.
    """
    options = {option: getattr(args, dest, None) for dest, option in _SERVER_FLAGS.items()}
    options["headers"] = _headers(options["headers"] or []) or None
    return {k: v for k, v in options.items() if v is not None}


def load_options(args: argparse.Namespace) -> dict[str, Any]:
    """The load options given (``--ctx``, ``--n-gpu-layers``, ``--no-lookup``), as flat
    backend options; the ones not given are left out."""
    options = {option: getattr(args, dest, None) for dest, option in _LOAD_FLAGS.items()}
    if getattr(args, "no_lookup", False):
        options["lookup"] = False
    return {k: v for k, v in options.items() if v is not None}


_SETTING_FLAGS = (
    "placement",
    "tool_choice",
    "temperature",
    "seed",
    "workspace",
    "system",
    "max_steps",
    "max_tokens",
    "thinking_budget",
    "timeout",
)
"""The options of :func:`agent.cli.common.add_agent_options` named like the setting they set."""


def command_line_layer(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`agent.settings.AgentSettings` the user typed on the command line (only
    those): the flags named like a setting, ``--yes`` (approval ``"allow"``: every tool of
    this agent was listed by the user with --tools, --mcp or the config), ``--no-transcript``
    and ``--session-kv``."""
    layer = {k: getattr(args, k) for k in _SETTING_FLAGS if getattr(args, k, None) is not None}
    if getattr(args, "yes", False):
        layer["approval"] = "allow"
    if getattr(args, "no_transcript", False):
        layer["transcript"] = False
    if getattr(args, "session_kv", False):
        layer["session_kv"] = True
    return layer


def check_flags(args: argparse.Namespace) -> None:
    """Refuse a flag whose value no run could use, naming the flag as typed: each setting,
    load and server option the user gave is checked on its own, by the same checks as
    :class:`agent.settings.AgentSettings` and :class:`models.options.BackendOptions`, and
    their message is kept with the setting's name replaced by the flag (``n_ctx must be at
    least 16 …, got 5`` from ``--ctx 5`` says ``--ctx: must be at least 16 …, got 5``).
    Flags come from :func:`agent.cli.common.agent_option_flags`, so a renamed option is
    named right. Options not given are not checked: a bad config file names its own keys.

    Raises:
        OptionError: the first flag with a value no run could use.
    """
    flags = agent_option_flags()
    for dest in _SETTING_FLAGS:
        value = getattr(args, dest, None)
        if value is not None:
            try:
                AgentSettings().replace(**{dest: value})
            except (TypeError, ValueError) as exc:
                raise OptionError(_flag_message(flags[dest], dest, exc)) from None
    given = {**load_options(args), **server_options(args)}
    for dest, option in {**_LOAD_FLAGS, **_SERVER_FLAGS}.items():
        if option in given:
            try:
                BackendOptions.from_mapping({option: given[option]})
            except (ValueError, BackendError) as exc:
                raise OptionError(_flag_message(flags[dest], option, exc)) from None


def _flag_message(flag: str, name: str, error: Exception) -> str:
    """``error``'s message about the setting ``name``, as about ``flag``: the name replaced
    by the flag, and where it says what ``None`` means, leaving the flag out (``None`` is
    what a setting is when its flag is not given)."""
    message = str(error).removeprefix(f"{name} ")
    for none, instead in (("(or None", "(or leave {} out"), ("(None: ", "(leave {} out: ")):
        message = message.replace(none, instead.format(flag))
    return f"{flag}: {message}"


def layered_settings(
    args: argparse.Namespace, config: Config, arguments: Mapping[str, Any] | None = None
) -> LayeredSettings:
    """The run settings of ``args`` over ``config`` over the defaults (``arguments`` over all),
    with where each comes from.

    Raises:
        ValueError: a value no run could use.
    """
    return AgentSettings.layered(
        file=config.settings_layer(), command_line=command_line_layer(args), arguments=arguments
    )


def agent_from_args(args: argparse.Namespace, **overrides: Any) -> Agent:
    """The agent the options describe (its model is loaded on first use); ``overrides`` are
    :class:`agent.Agent` keyword arguments that win over everything (settings among them go
    on top of the layers).

    Raises:
        OptionError: a flag with a value no run could use (:func:`check_flags`), a bad
            config file or MCP server.
        tools.registry.UnknownToolError: a tool name that does not exist.
        models.base.BackendError: an endpoint that cannot be set up.
    """
    from agent.config import ConfigError, load_config

    check_flags(args)
    try:
        config = load_config(getattr(args, "config", None))
        mcp: list[Any] = [*config.mcp_specs(), *getattr(args, "mcp", [])]
    except ConfigError as exc:
        raise OptionError(str(exc)) from exc
    arguments = {k: overrides.pop(k) for k in SETTING_NAMES if k in overrides}
    settings = layered_settings(args, config, arguments).settings
    flag_tools = getattr(args, "tools", None)
    tools_value = flag_tools if flag_tools is not None else config.tools
    if tools_value is None:
        tools = list(DEFAULT_TOOLS)
    elif isinstance(tools_value, str):
        tools = tool_names(tools_value)
    else:
        tools = list(tools_value)
    backend_options: dict[str, Any] = {**config.backend_layer(), **load_options(args)}
    model_spec = str(getattr(args, "model", None) or config.model or DEFAULT_MODEL)
    model: Any = model_spec
    endpoint = config.endpoint(model_spec)
    if endpoint is not None:  # --api-strict makes a configured endpoint strict too
        model = endpoint.open_backend(strict=bool(getattr(args, "api_strict", None)))
    elif model_spec.startswith(("http://", "https://")):
        backend_options.update(server_options(args))
    workspace = Path(settings.workspace).expanduser()
    if not workspace.is_dir():
        raise OptionError(
            f"the workspace folder {str(workspace)!r} does not exist (or is not a folder); "
            "create it first, or pass --workspace with an existing folder"
        )
    options: dict[str, Any] = {"backend_options": backend_options, "mcp_servers": mcp}
    options.update(overrides)
    if not mcp:
        return Agent(model, tools, settings=settings, **options)
    from tools import McpError

    try:
        return Agent(model, tools, settings=settings, **options)
    except McpError as exc:
        raise OptionError(f"an MCP server could not be used: {exc}") from exc


def resolved_model(args: argparse.Namespace) -> str | None:
    """The model the options name: ``--model``, else the config file's, else the built-in
    default (``None`` when the config file cannot be read: building the agent reports that).
    What the TUI's status bar shows until the model has loaded."""
    from agent.config import ConfigError, load_config

    if getattr(args, "model", None):
        return str(args.model)
    try:
        config = load_config(getattr(args, "config", None))
    except ConfigError:
        return None
    return config.model or DEFAULT_MODEL


def options_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the options, the config file, the workspace or the model spec, or
    ``None``: everything :func:`agent_from_args` checks, and that the model spec names
    something that exists (:func:`models.catalog.check_spec`), without loading or downloading
    a model and without starting MCP servers. For commands that hand the options to another
    process (``qwq-agent web``), which must refuse bad input before it serves anything.
    """
    from models import BackendError, check_spec
    from tools import UnknownToolError

    try:
        agent = agent_from_args(args, mcp_servers=())
    except (UnknownToolError, ValueError, BackendError, OSError) as exc:
        return str(exc)
    try:
        if agent.model_spec is not None:  # None: a config endpoint, already set up
            check_spec(agent.model_spec)
    except BackendError as exc:
        return str(exc)
    finally:
        agent.close()
    return None
