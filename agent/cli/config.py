"""``qwq-agent config path|show``: where the config file is, and the settings in effect.

``config show`` prints each setting ``ask`` and the TUI would use with the same options, and
where it comes from: ``command line`` (a flag given to ``config show``), ``file`` (the config
file), or ``default`` (built in). The first line says which config file counts and why
(``--config``, ``$QWQ_AGENT_CONFIG``, or the default place). Header values and credentials are
blanked (:func:`models.redact.blank_settings`): ``--header`` shows the header names only.
A flag with a value no run could use is refused, naming the flag
(:func:`agent.cli.build.check_flags`), with exit code 2 as ``ask`` would.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from agent.cli.common import DEFAULTS, EXIT_BAD_INPUT, EXIT_OK, tool_names

if TYPE_CHECKING:
    from agent.config import Config

Row = tuple[str, Any, str]
"""A setting, its value, and its source."""

_BUILT_IN = {
    "max_tokens": "no limit",
    "thinking_budget": "no limit",
    "timeout": "no limit",
    "temperature": "the model's recommended value",
    "seed": "random",
    "system": "the built-in prompt",
    "ctx": "fitted to the machine",
    "n_gpu_layers": "fitted to the machine",
    "model_name": "the server's first model",
    "api_key_env": "none",
    "headers": "none",
}
"""What a setting left at ``None`` means, in words (the defaults themselves are in
:mod:`agent.settings` and :data:`agent.cli.common.DEFAULTS`)."""

_ROWS = (
    "model",
    "tools",
    "workspace",
    "placement",
    "tool_choice",
    "max_steps",
    "max_tokens",
    "thinking_budget",
    "timeout",
    "temperature",
    "seed",
    "system",
    "ctx",
    "n_gpu_layers",
    "max_repeated_calls",
    "max_calls_per_step",
    "tool_output_chars",
    "transcript",
    "session_kv",
)
"""The rows of ``config show`` before the backend options, in order: the run settings among
them come from :func:`agent.cli.build.layered_settings`, the others (model, tools, load
options) from the flag, the file or :data:`agent.cli.common.DEFAULTS`."""

_BACKEND_ROWS = ("lookup", "model_name", "api_mode", "api_key_env", "headers", "api_strict")
"""The rows of the backend options only flags set (``--no-lookup`` and the server options),
by their :data:`models.options.FLAT_NAMES`, shown after :data:`_ROWS`."""


def run_config(args: argparse.Namespace) -> int:
    """``qwq-agent config path|show``."""
    from agent.config import ConfigError, config_path, load_config

    if args.action == "path":
        print(args.config or config_path())
        return EXIT_OK
    try:
        config = load_config(args.config)
        rows = settings_in_effect(args, config)
    except (ConfigError, TypeError, ValueError) as exc:
        print(f"qwq-agent: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"config file: {_which_file(args, config)}")
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        print(f"{name:<{width}}  {_show(value, name)}  ({source})")
    return EXIT_OK


def _which_file(args: argparse.Namespace, config: Config) -> str:
    from agent.config import ENV_VAR, config_path

    if args.config:
        why = "from --config"
    elif os.environ.get(ENV_VAR):
        why = f"from ${ENV_VAR}"
    else:
        why = "the default place"
    if config.path is None:
        return f"{config_path()} ({why}; not present: nothing set by a file)"
    return f"{config.path} ({why})"


def settings_in_effect(args: argparse.Namespace, config: Config) -> list[Row]:
    """Every setting with the value in effect and its source (see the module docstring): the
    run settings as :func:`agent.cli.build.layered_settings` lays them, the model, tools and
    load options as :func:`agent.cli.build.agent_from_args` picks them, the server options as
    the flags give them (``headers``: blanked when shown).

    Raises:
        agent.cli.build.OptionError: a flag with a value no run could use.
        ValueError: settings no run could use.
    """
    from agent.cli.build import check_flags, layered_settings

    check_flags(args)
    layered = layered_settings(args, config)
    settings, sources = layered.settings, layered.sources
    rows: list[Row] = []
    for name in _ROWS:
        if name in sources:
            value: Any = getattr(settings, name)
            source = sources[name]
            if value is None and source == "default":
                value = _BUILT_IN[name]
            rows.append((name, value, source))
            continue
        flag, in_file = getattr(args, name, None), getattr(config, name)
        if flag is not None:
            value = tool_names(str(flag)) if name == "tools" else flag
            rows.append((name, value, "command line"))
        elif in_file is not None:
            rows.append((name, in_file, "file"))
        else:
            rows.append((name, DEFAULTS.get(name, _BUILT_IN.get(name)), "default"))
    rows.extend(_backend_rows(args))
    if getattr(args, "yes", False):
        rows.append(("approvals", {"*": "allow"}, "command line (--yes)"))
    elif config.approvals:
        rows.append(("approvals", dict(config.approvals), "file"))
    else:
        rows.append(("approvals", {"*": settings.approval}, "default"))
    rows.append(_optional("tool_settings", config.tool_settings))
    endpoints = {
        name: e.model_dump(mode="json", exclude_defaults=True)
        for name, e in config.endpoints.items()
    }
    rows.append(_optional("endpoints", endpoints))
    mcp = [*(m.model_dump(mode="json", exclude_defaults=True) for m in config.mcp)]
    flags = list(getattr(args, "mcp", None) or [])
    rows.append(
        ("mcp", [*mcp, *flags], "file and command line" if mcp and flags else "command line")
        if flags
        else _optional("mcp", mcp)
    )
    return rows


def _backend_rows(args: argparse.Namespace) -> list[Row]:
    """The rows of :data:`_BACKEND_ROWS`: the flag's value, else the option's default."""
    from agent.cli.build import load_options, server_options
    from models.llama.options import LlamaOptions
    from models.openai.options import ServerOptions

    given = {**load_options(args), **server_options(args)}
    server = ServerOptions()
    defaults = {
        "lookup": LlamaOptions().lookup,
        "api_mode": server.mode,
        "api_strict": server.strict,
        **_BUILT_IN,
    }
    return [
        (name, given[name], "command line") if name in given else (name, defaults[name], "default")
        for name in _BACKEND_ROWS
    ]


def _optional(name: str, value: Any) -> Row:
    return (name, value, "file") if value else (name, "none", "default")


def _show(value: Any, name: str) -> str:
    """``value`` as ``config show`` prints it; the values of a ``headers`` row (and of any
    ``headers`` table in it) and credentials blanked."""
    from models.redact import blank_settings

    shown = blank_settings(value, name)
    if isinstance(shown, list) and all(isinstance(v, str) for v in shown):
        return ", ".join(shown) or "none"
    if isinstance(shown, dict | list):
        return json.dumps(shown, ensure_ascii=False)
    return str(shown)
