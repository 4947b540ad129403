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


def _common(parser: argparse.ArgumentParser, *, file_defaults: bool = False) -> None:
    """Options shared by every subcommand that runs the agent.

    With ``file_defaults`` (``qwq-agent run``), options default to ``None`` so that only what
    the user typed overrides the task file, and the help says so.
    """
    default_note = "(default: from the task file)" if file_defaults else "(default: %(default)s)"
    g = parser.add_argument_group("model")
    g.add_argument(
        "--model",
        default="qwq-32b",
        help="catalog name (qwq-32b, smollm2-135m), a .gguf path, an http(s):// endpoint, "
        "or scripted:FILE.yaml " + default_note,
    )
    g.add_argument("--ctx", type=int, default=None, help="context size in tokens")
    g.add_argument("--n-gpu-layers", type=int, default=None, help="layers to offload (-1: all)")
    g.add_argument("--temperature", type=float, default=None, help="override the model's default")
    g.add_argument("--seed", type=int, default=None, help="sampling seed")
    a = parser.add_argument_group("agent")
    a.add_argument(
        "--tools",
        default=DEFAULT_TOOLS,
        help="comma-separated tool names ('' for none; see `qwq-agent tools`) " + default_note,
    )
    a.add_argument("--workspace", default=".", help="the only folder file tools may touch")
    a.add_argument("--placement", choices=("interleaved", "template"), default="interleaved")
    a.add_argument("--max-steps", type=int, default=20)
    a.add_argument("--max-tokens", type=int, default=None, help="generation budget per task")
    a.add_argument("--timeout", type=float, default=None, help="seconds per task")
    a.add_argument("--tool-choice", choices=("auto", "required"), default="auto")
    a.add_argument("--system", default=None, help="system prompt (default: the built-in one)")
    a.add_argument(
        "--yes",
        action="store_true",
        help="approve every call to the tools given with --tools (dangerous ones included)",
    )
    a.add_argument("--no-transcript", action="store_true", help="do not write a transcript")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qwq-agent",
        description="Run QwQ-32B as a tool-using agent: in the TUI, headless, or from YAML tasks.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ask = sub.add_parser("ask", help="run one task headless and print thinking, calls and answer")
    ask.add_argument("prompt", help="the task")
    ask.add_argument("--json", action="store_true", help="print one JSON result instead")
    ask.add_argument("--hide-thinking", action="store_true", help="do not print the thinking")
    _common(ask)

    chat = sub.add_parser("chat", help="open the TUI (the default command)")
    _common(chat)

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
    run.add_argument("--concurrency", type=int, default=1, help="tasks at once (server backends)")
    _common(run, file_defaults=True)
    # In `run`, an option not given leaves the task file's value: None means "not given".
    run.set_defaults(
        model=None, tools=None, workspace=None, placement=None, max_steps=None, tool_choice=None
    )

    tools_cmd = sub.add_parser("tools", help="list the built-in tools with their risk")
    tools_cmd.add_argument("--json", action="store_true")

    models = sub.add_parser("models", help="the model catalog; `models pull NAME` downloads")
    models.add_argument("action", nargs="?", choices=("list", "pull", "info"), default="list")
    models.add_argument("name", nargs="?", default=None)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    commands = {"ask", "chat", "run", "tools", "models"}
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
            from tui.app import run_chat

            return run_chat(args)
        if command == "tools":
            return _list_tools(args)
        if command == "models":
            from agent.cli_models import run_models

            return run_models(args)
        parser.print_help()
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def agent_from_args(args: argparse.Namespace, **overrides: Any) -> Any:
    """Build an :class:`agent.Agent` from the common options (shared by ask, run, chat)."""
    from agent import Agent

    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    backend_options: dict[str, Any] = {}
    if args.ctx is not None:
        backend_options["n_ctx"] = args.ctx
    if args.n_gpu_layers is not None:
        backend_options["n_gpu_layers"] = args.n_gpu_layers
    settings: dict[str, Any] = {
        "tools": tools,
        "placement": args.placement,
        "approval": {name: "allow" for name in tools} if args.yes else "ask",
        "workspace": args.workspace,
        "max_steps": args.max_steps,
        "max_tokens": args.max_tokens,
        "timeout": args.timeout,
        "temperature": args.temperature,
        "seed": args.seed,
        "tool_choice": args.tool_choice,
        "system": args.system,
        "transcript": not args.no_transcript,
        "backend_options": backend_options,
    }
    settings.update(overrides)
    return Agent(args.model, **settings)


def _list_tools(args: argparse.Namespace) -> int:
    import json

    from tools.registry import BUILTINS, builtin

    rows = []
    for name in BUILTINS:
        t = builtin(name)
        rows.append({"name": t.name, "risk": t.risk, "description": t.description.split("\n")[0]})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            print(f"{r['name']:<{width}}  {r['risk']:<9}  {r['description']}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
