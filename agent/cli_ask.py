"""``qwq-agent ask PROMPT``: one task, headless, streamed to the terminal.

Thinking is printed dimmed, each tool call and its result on their own lines, the answer
plain; ``--json`` prints one JSON object instead. Dangerous calls are approved with
``--yes``, or asked on the terminal when stdin is one; otherwise they are denied and the
model is told.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from agent.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, agent_from_args
from agent.terminal import clean_for_terminal


def _ask_person(call: Any) -> bool:
    from tools.display import escape_for_display

    args = escape_for_display(json.dumps(call.arguments, ensure_ascii=False, indent=2))
    print(f"\nThe model wants to run {call.name!r} with:\n{args}", file=sys.stderr)
    try:
        answer = input("Allow this call? [y/N] ").strip().lower()
    except EOFError:
        return False
    return answer in ("y", "yes")


def run_ask(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.text import Text

    from agent import Agent, BackendError, RunResult
    from tools.registry import UnknownToolError

    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False)
    callback = _ask_person if sys.stdin.isatty() and not args.yes else None
    try:
        agent: Agent = agent_from_args(args, approval_callback=callback)
        agent.load()
    except (UnknownToolError, ValueError, BackendError, OSError) as exc:
        err.print(Text(f"qwq-agent: {exc}", style="bold red"))
        return EXIT_BAD_INPUT

    events = []
    in_thinking_line = False
    with agent:
        for event in agent.stream(args.prompt):
            events.append(event)
            if args.json:
                continue
            kind = event.kind
            if kind == "thinking" and not args.hide_thinking:
                out.print(Text(clean_for_terminal(event.text), style="dim"), end="")
                in_thinking_line = True
            elif kind == "text":
                if in_thinking_line:
                    out.print()
                    in_thinking_line = False
                out.print(Text(clean_for_terminal(event.text)), end="")
            elif kind == "tool_call":
                arguments = json.dumps(event.call.arguments, ensure_ascii=False)
                out.print(Text(f"\n→ {event.call.name}({clean_for_terminal(arguments)})", style="cyan"))
            elif kind == "tool_result":
                body = event.output if event.error is None else f"error: {event.error}"
                style = "green" if event.error is None else "red"
                shown = clean_for_terminal(body or "")
                if len(shown) > 2000:
                    shown = shown[:2000] + f" … ({len(shown) - 2000} more characters)"
                out.print(Text(f"← {shown}", style=style))
            elif kind == "approval" and event.decision is False:
                out.print(Text(f"✗ {event.call.name} denied (use --yes to allow)", style="yellow"))
            elif kind == "error" and event.fatal:
                err.print(Text(f"qwq-agent: {event.message}", style="bold red"))
        result = RunResult.from_events(
            events,
            usage=agent.last_usage,
            transcript_path=str(agent.transcript_path) if agent.transcript_path else None,
        )
    if args.json:
        payload = {
            "answer": result.answer,
            "finish_reason": result.finish_reason,
            "detail": result.detail,
            "thinking": result.thinking,
            "tool_calls": [dataclasses.asdict(c) for c in result.tool_calls],
            "usage": dataclasses.asdict(result.usage),
            "steps": result.steps,
            "transcript_path": result.transcript_path,
        }
        print(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        out.print()
        if not result.ok or result.detail:
            err.print(Text(f"[{result.finish_reason}] {result.detail}", style="yellow"))
    return EXIT_OK if result.ok else EXIT_FAILED
