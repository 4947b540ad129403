"""From command-line options and the config file to an :class:`agent.Agent`.

Precedence, highest first: a flag the user typed, the config file (``qwq-agent config
path``), the built-in :data:`agent.cli.common.DEFAULTS`. A model named like one of the config's
``[endpoints]`` opens that endpoint with its settings.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from agent import Agent
from agent.cli.common import DEFAULTS
from agent.errors import InputError


class OptionError(InputError):
    """A command-line option or the config file is wrong; the message says which and how."""


def _headers(values: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise OptionError(f"--header must look like NAME:VALUE, got {value!r}")
        headers[name.strip()] = content.strip()
    return headers


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options given for a server model (``--model-name``, ``--api-mode``,
    ``--api-key-env``, ``--header``, ``--api-strict``), as :func:`models.catalog.open_backend`
    keywords; the ones not given are left out.

    Raises:
        OptionError: a ``--header`` that is not ``NAME:VALUE``.
    """
    options = {
        "model_name": getattr(args, "model_name", None),
        "api_mode": getattr(args, "api_mode", None),
        "api_key_env": getattr(args, "api_key_env", None),
        "headers": _headers(getattr(args, "header", None) or []) or None,
        "api_strict": getattr(args, "api_strict", None),
    }
    return {k: v for k, v in options.items() if v is not None}


def agent_from_args(args: argparse.Namespace, **overrides: Any) -> Agent:
    """The agent the options describe (its model is loaded on first use).

    Raises:
        OptionError: a bad ``--header``, config file or MCP server.
        tools.registry.UnknownToolError: a tool name that does not exist.
        models.base.BackendError: an endpoint that cannot be set up.
    """
    from agent.config import ConfigError, load_config

    try:
        config = load_config(getattr(args, "config", None))
        settings: dict[str, Any] = config.agent_options()
        mcp: list[Any] = [*config.mcp_specs(), *getattr(args, "mcp", [])]
    except ConfigError as exc:
        raise OptionError(str(exc)) from exc

    def pick(key: str) -> Any:
        """The flag, else the config file, else the built-in default."""
        value = getattr(args, key, None)
        if value is not None:
            return value
        if key == "model" and config.model is not None:
            return config.model
        return settings.get(key, DEFAULTS.get(key))

    tools_value = pick("tools")
    tools = (
        [t.strip() for t in tools_value.split(",") if t.strip()]
        if isinstance(tools_value, str)
        else list(tools_value)
    )
    backend_options: dict[str, Any] = dict(settings.get("backend_options", {}))
    if args.ctx is not None:
        backend_options["n_ctx"] = args.ctx
    if args.n_gpu_layers is not None:
        backend_options["n_gpu_layers"] = args.n_gpu_layers
    if getattr(args, "no_lookup", False):
        backend_options["lookup"] = False
    model_spec = str(pick("model"))
    model: Any = model_spec
    endpoint = config.endpoint(model_spec)
    if endpoint is not None:  # --api-strict makes a configured endpoint strict too
        model = endpoint.open_backend(strict=bool(getattr(args, "api_strict", None)))
    elif model_spec.startswith(("http://", "https://")):
        backend_options.update(server_options(args))
    approval: Any = settings.get("approval", "ask")
    if args.yes:  # every tool of this agent was listed by the user (--tools, --mcp, config)
        approval = "allow"
    workspace = Path(str(pick("workspace"))).expanduser()
    if not workspace.is_dir():
        raise OptionError(
            f"the workspace folder {str(workspace)!r} does not exist (or is not a folder); "
            "create it first, or pass --workspace with an existing folder"
        )
    options: dict[str, Any] = {
        "tools": tools,
        "placement": pick("placement"),
        "approval": approval,
        "workspace": workspace,
        "max_steps": pick("max_steps"),
        "max_tokens": pick("max_tokens"),
        "thinking_budget": pick("thinking_budget"),
        "timeout": pick("timeout"),
        "temperature": pick("temperature"),
        "seed": pick("seed"),
        "tool_choice": pick("tool_choice"),
        "system": pick("system"),
        "transcript": not args.no_transcript,
        "session_kv": bool(getattr(args, "session_kv", False)),
        "backend_options": backend_options,
        "mcp_servers": mcp,
    }
    if "tool_settings" in settings:
        options["tool_settings"] = settings["tool_settings"]
    options.update(overrides)
    if not mcp:
        return Agent(model, **options)
    from tools import McpError

    try:
        return Agent(model, **options)
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
    return config.model or str(DEFAULTS["model"])


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
