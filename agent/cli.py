"""The ``qwq-agent`` command line.

``qwq-agent --help`` must stay fast: this module imports only argparse at the top; the
agent, Rich, the model and the TUI are imported by the subcommand that needs them.

Exit codes: 0 success; 1 the task ran but did not complete (or an expectation failed);
2 bad input (unknown option, tool or model, unreadable file); 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

DEFAULT_TOOLS = "calculator"


DEFAULTS: dict[str, Any] = {
    "model": "qwq-32b",
    "tools": DEFAULT_TOOLS,
    "workspace": ".",
    "placement": "interleaved",
    "max_steps": 20,
    "tool_choice": "auto",
}
"""Built-in values of options left unset on the command line and in the config file."""


def _common(parser: argparse.ArgumentParser, *, file_defaults: bool = False) -> None:
    """Options shared by every subcommand that runs the agent.

    Options that have a default default to ``None`` here, so that what the user typed can be
    told from what was not: a flag beats the task file (``run``) or the config file, which
    beat :data:`DEFAULTS`.
    """

    def note(key: str) -> str:
        if file_defaults:
            return " (default: from the task file)"
        return f" (default: {DEFAULTS[key]})"

    g = parser.add_argument_group("model")
    g.add_argument(
        "--model",
        help="catalog name (qwq-32b, qwq-32b:Q5_K_M, smollm2-135m), a .gguf path, an "
        "http(s)://HOST/v1 endpoint or a config endpoint name, or scripted:FILE.yaml"
        + note("model"),
    )
    g.add_argument("--ctx", type=int, help="context size in tokens")
    g.add_argument("--n-gpu-layers", type=int, help="layers to offload (-1: all)")
    g.add_argument(
        "--no-lookup",
        action="store_true",
        help="no prompt-lookup decoding (drafts copied from the context; by default on "
        "where it measures a gain, llama.cpp models only)",
    )
    g.add_argument("--temperature", type=float, help="override the model's default")
    g.add_argument("--seed", type=int, help="sampling seed")
    g.add_argument("--model-name", help="the model a server should use (default: its first)")
    g.add_argument(
        "--api-mode",
        choices=("completions", "chat"),
        default="completions",
        help="server API: completions (exact prompts, interleaved calls) or chat",
    )
    g.add_argument("--api-key-env", help="environment variable holding the server's API key")
    g.add_argument(
        "--api-strict",
        action="store_true",
        default=None,
        help="send a server only the fields OpenAI defines (no top_k, min_p, repeat_penalty, "
        "cache_prompt); without it, a server that refuses one by name gets strict requests",
    )
    g.add_argument(
        "--header", action="append", default=[], metavar="NAME:VALUE", help="extra HTTP header"
    )
    a = parser.add_argument_group("agent")
    a.add_argument(
        "--tools",
        help="comma-separated tool names ('' for none; see `qwq-agent tools`)" + note("tools"),
    )
    a.add_argument(
        "--mcp",
        action="append",
        default=[],
        metavar="COMMAND|URL",
        help="an MCP server whose tools to add (a command line, or an http(s) URL); repeatable",
    )
    a.add_argument("--workspace", help="the only folder file tools may touch" + note("workspace"))
    a.add_argument("--placement", choices=("interleaved", "template"), help=note("placement"))
    a.add_argument("--max-steps", type=int, help="model generations per task" + note("max_steps"))
    a.add_argument("--max-tokens", type=int, help="generation budget per task")
    a.add_argument(
        "--thinking-budget",
        type=int,
        metavar="N",
        help="thinking tokens per task; then the thinking is closed and the model answers",
    )
    a.add_argument("--timeout", type=float, help="seconds per task")
    a.add_argument("--tool-choice", choices=("auto", "required"), help=note("tool_choice"))
    a.add_argument("--system", help="system prompt (default: the built-in one)")
    a.add_argument(
        "--yes",
        action="store_true",
        help="approve every call to the tools given with --tools (dangerous ones included)",
    )
    a.add_argument("--no-transcript", action="store_true", help="do not write a transcript")
    a.add_argument(
        "--session-kv",
        action="store_true",
        help="keep the conversation's KV state beside its transcript, so resuming it "
        "(/sessions) restores the state instead of evaluating the conversation again",
    )
    a.add_argument("--config", help="the config file (default: see `qwq-agent config path`)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qwq-agent",
        description="Run QwQ-32B as a tool-using agent: in the TUI, headless, or from YAML tasks.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ask = sub.add_parser("ask", help="run one task headless and print thinking, calls and answer")
    ask.add_argument("prompt", help="the task ('-': read it from stdin)")
    ask.add_argument("--json", action="store_true", help="print one JSON result instead")
    ask.add_argument("--hide-thinking", action="store_true", help="do not print the thinking")
    _common(ask)

    chat = sub.add_parser("chat", help="open the TUI (the default command)")
    _common(chat)

    web = sub.add_parser(
        "web", help="serve the TUI in a browser (one chat per tab), behind a URL token"
    )
    web.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    web.add_argument(
        "--port", type=int, default=8000, help="port (default: %(default)s; 0: any free)"
    )
    web.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other machines can reach (the URL token is then the only protection)",
    )
    _common(web)

    run = sub.add_parser("run", help="run the tasks of a YAML file; results as JSONL")
    run.add_argument("file", help="the task file (see examples/tasks/)")
    run.add_argument(
        "--out", default=None, help="results file (JSONL; default: FILE.results.jsonl)"
    )
    run.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="ID",
        help="run only this task id (repeatable)",
    )
    run.add_argument("--resume", action="store_true", help="skip tasks already in --out")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first failed task")
    run.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="tasks at once (a server, or an embedded model loaded once and shared)",
    )
    _common(run, file_defaults=True)

    tools_cmd = sub.add_parser(
        "tools", help="the built-in tools with their risk, and the sandbox layers here"
    )
    tools_cmd.add_argument("--json", action="store_true")

    config = sub.add_parser(
        "config",
        help="`config path`: where the config file is; `config show`: the settings in effect",
        description="show: every setting `ask` and the TUI would use with the same options, "
        "and its source (command line, file, default)",
    )
    config.add_argument("action", choices=("path", "show"))
    _common(config)

    models = sub.add_parser(
        "models",
        help="the model catalog; `models pull NAME` downloads",
        description="list: the catalog and what is already here (default); "
        "pull NAME: download a catalog model (qwq-32b, qwq-32b:Q5_K_M); "
        "info NAME: what NAME resolves to and how it would fit this machine (no download)",
    )
    models.add_argument("action", nargs="?", choices=("list", "pull", "info"), default="list")
    models.add_argument("name", nargs="?", default=None, help="a model (for pull and info)")
    models.add_argument("--json", action="store_true", help="info: print the plan as JSON")

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    commands = {"ask", "chat", "web", "run", "tools", "models", "config"}
    if arguments and not arguments[0].startswith("-") and arguments[0] not in commands:
        print(
            f"qwq-agent: unknown command {arguments[0]!r}; the commands are "
            f'{", ".join(sorted(commands))} (to ask something: qwq-agent ask "...")',
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if not any(a in commands or a in ("-h", "--help", "--version") for a in arguments[:1]):
        arguments.insert(0, "chat")  # `qwq-agent [options]` opens the TUI
    args = parser.parse_args(arguments)
    if args.version:
        from agent import __version__

        print(f"qwq-agent {__version__}")
        return EXIT_OK
    command = args.command
    try:
        if command == "ask":
            from agent.cli_ask import run_ask

            return run_ask(args)
        if command == "run":
            from agent.cli_run import run_tasks

            return run_tasks(args)
        if command == "chat":
            from agent.cli_agent import resolved_model
            from tui.app import run_chat

            args.model = resolved_model(args)  # named in the status bar while it loads

            return run_chat(args)
        if command == "web":
            problem = _web_problem(args)
            if problem is not None:  # refused before anything is bound or served
                print(f"qwq-agent web: {problem}", file=sys.stderr)
                return EXIT_BAD_INPUT
            from tui.web import run_web

            return run_web(args)
        if command == "config":
            from agent.cli_config import run_config

            return run_config(args)
        if command == "tools":
            from agent.cli_tools import run_tools

            return run_tools(args)
        if command == "models":
            from agent.cli_models import run_models

            return run_models(args)
        parser.print_help()
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `qwq-agent ask --json … | head`: the reader left, not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return EXIT_OK


def agent_from_args(args: argparse.Namespace, **overrides: Any) -> Any:
    """Build an :class:`agent.Agent` from the common options (ask, chat); see
    :func:`agent.cli_agent.agent_from_args`."""
    from agent.cli_agent import agent_from_args as build

    return build(args, **overrides)


def _web_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with ``qwq-agent web``'s options (port, agent options, config file,
    workspace, model spec), or ``None``. Each tab's chat process would hit the same problem
    only after the page is served, leaving the tab blank."""
    if not 0 <= args.port <= 65535:
        return f"--port must be 0-65535 (0: any free port), got {args.port}"
    from agent.cli_agent import options_problem

    return options_problem(args)


if __name__ == "__main__":
    raise SystemExit(main())
