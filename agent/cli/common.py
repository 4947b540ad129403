"""What every subcommand of the command line shares: exit codes, the built-in defaults of the
agent options, and the options themselves (:func:`add_agent_options`).

Imports only argparse and the core's defaults (loaded with the ``agent`` package anyway),
so that ``qwq-agent --help`` stays fast.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

from agent.settings import DEFAULT_MODEL, DEFAULT_TOOLS
from agent.settings import DEFAULTS as SETTINGS

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

DEFAULTS: dict[str, Any] = {
    "model": DEFAULT_MODEL,
    "tools": ",".join(DEFAULT_TOOLS),
    "workspace": SETTINGS.workspace,
    "placement": SETTINGS.placement,
    "max_steps": SETTINGS.max_steps,
    "tool_choice": SETTINGS.tool_choice,
}
"""Built-in values of the options whose help shows a default (from :mod:`agent.settings`,
where each is defined)."""


def add_agent_options(
    parser: argparse.ArgumentParser, *, file_defaults: bool = False
) -> dict[str, str]:
    """Options shared by every subcommand that runs the agent.

    Options that have a default default to ``None`` here, so that what the user typed can be
    told from what was not: a flag beats the task file (``run``) or the config file, which
    beat :data:`DEFAULTS`.

    Returns:
        Each option's argparse destination and its flag as a person types it
        (``{"ctx": "--ctx", "n_gpu_layers": "--n-gpu-layers", …}``): what
        :func:`agent_option_flags` reads.
    """
    flags: dict[str, str] = {}

    def add(group: argparse._ArgumentGroup, flag: str, **options: Any) -> None:
        flags[group.add_argument(flag, **options).dest] = flag

    def note(key: str) -> str:
        if file_defaults:
            return " (default: the task file's, else the config file's)"
        return f" (default: {DEFAULTS[key]})"

    g = parser.add_argument_group("model")
    add(
        g,
        "--model",
        help="catalog name (qwq-32b, qwq-32b:Q5_K_M, smollm2-135m), a .gguf path, an "
        "http(s)://HOST/v1 endpoint or a config endpoint name, or scripted:FILE.yaml"
        + note("model"),
    )
    add(g, "--ctx", type=int, help="context size in tokens")
    add(g, "--n-gpu-layers", type=int, help="layers to offload (-1: all)")
    add(
        g,
        "--no-lookup",
        action="store_true",
        help="no prompt-lookup decoding (drafts copied from the context; by default on "
        "where it measures a gain, llama.cpp models only)",
    )
    add(g, "--temperature", type=float, help="override the model's default")
    add(g, "--seed", type=int, help="sampling seed")
    add(g, "--model-name", help="the model a server should use (default: its first)")
    add(
        g,
        "--api-mode",
        choices=("completions", "chat"),
        help="server API: completions (exact prompts, interleaved calls; the default) or chat",
    )
    add(g, "--api-key-env", help="environment variable holding the server's API key")
    add(
        g,
        "--api-strict",
        action="store_true",
        default=None,
        help="send a server only the fields OpenAI defines (no top_k, min_p, repeat_penalty, "
        "cache_prompt); without it, a server that refuses one by name gets strict requests",
    )
    add(g, "--header", action="append", default=[], metavar="NAME:VALUE", help="extra HTTP header")
    a = parser.add_argument_group("agent")
    add(
        a,
        "--tools",
        help="comma-separated tool names ('' for none; see `qwq-agent tools`)" + note("tools"),
    )
    add(
        a,
        "--mcp",
        action="append",
        default=[],
        metavar="COMMAND|URL",
        help="an MCP server whose tools to add (a command line, or an http(s) URL); repeatable",
    )
    add(a, "--workspace", help="the only folder file tools may touch" + note("workspace"))
    add(a, "--placement", choices=("interleaved", "template"), help=note("placement"))
    add(a, "--max-steps", type=int, help="model generations per task" + note("max_steps"))
    add(a, "--max-tokens", type=int, help="generation budget per task")
    add(
        a,
        "--thinking-budget",
        type=int,
        metavar="N",
        help="thinking tokens per task; then the thinking is closed and the model answers",
    )
    add(a, "--timeout", type=float, help="seconds per task")
    add(a, "--tool-choice", choices=("auto", "required"), help=note("tool_choice"))
    add(a, "--system", help="system prompt (default: the built-in one)")
    add(
        a,
        "--yes",
        action="store_true",
        help="approve every call to the tools given with --tools (dangerous ones included)",
    )
    add(a, "--no-transcript", action="store_true", help="do not write a transcript")
    add(
        a,
        "--session-kv",
        action="store_true",
        help="keep the conversation's KV state beside its transcript, so resuming it "
        "(/sessions) restores the state instead of evaluating the conversation again",
    )
    add(a, "--config", help="the config file (default: see `qwq-agent config path`)")
    return flags


@functools.cache
def agent_option_flags() -> dict[str, str]:
    """The flag a person types for each destination of :func:`add_agent_options`
    (``"ctx"`` -> ``"--ctx"``), read from the parser that defines them, so that an error
    about a value can name the flag it came from."""
    return add_agent_options(argparse.ArgumentParser(add_help=False))


def tool_names(value: str) -> list[str]:
    """The tool names of a ``--tools`` value: comma-separated, blanks dropped (``""``: none)."""
    return [name.strip() for name in value.split(",") if name.strip()]
