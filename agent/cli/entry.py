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

from agent.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    add_agent_options,
)


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
    add_agent_options(ask)

    chat = sub.add_parser("chat", help="open the TUI (the default command)")
    add_agent_options(chat)

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
    add_agent_options(web)

    run = sub.add_parser(
        "run",
        help="run the tasks of a YAML file; results as JSONL",
        description="Each setting of a task comes from the command line, else the task, else "
        "the task file's top level, else the config file (--config; `qwq-agent config path`), "
        "else the built-in default. The config's [approvals] apply to the batch: allow "
        "pre-approves a tool as a task's approve: does, deny and ask deny (a batch has no one "
        "to ask); --yes allows every tool of the task. Its [[mcp]] servers are not used "
        "(tasks name theirs with mcp:).",
    )
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
    add_agent_options(run, file_defaults=True)

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
    add_agent_options(config)

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
            from agent.cli.ask import run_ask

            return run_ask(args)
        if command == "run":
            from agent.cli.run import run_tasks

            return run_tasks(args)
        if command == "chat":
            from agent.cli.build import resolved_model
            from agent.cli.chat import run_chat

            args.model = resolved_model(args)  # named in the status bar while it loads

            return run_chat(args)
        if command == "web":
            problem = _web_problem(args)
            if problem is not None:  # refused before anything is bound or served
                print(f"qwq-agent web: {problem}", file=sys.stderr)
                return EXIT_BAD_INPUT
            from agent.cli.web import run_web

            return run_web(args)
        if command == "config":
            from agent.cli.config import run_config

            return run_config(args)
        if command == "tools":
            from agent.cli.tools import run_tools

            return run_tools(args)
        if command == "models":
            from agent.cli.models import run_models

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


def _web_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with ``qwq-agent web``'s options (port, agent options, config file,
    workspace, model spec), or ``None``. Each tab's chat process would hit the same problem
    only after the page is served, leaving the tab blank."""
    if not 0 <= args.port <= 65535:
        return f"--port: must be 0-65535 (0: any free port), got {args.port!r}"
    from agent.cli.build import options_problem

    return options_problem(args)


if __name__ == "__main__":
    raise SystemExit(main())
