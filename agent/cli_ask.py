"""``qwq-agent ask PROMPT``: one task, headless, streamed to the terminal.

Thinking is printed dimmed, each tool call and its result on their own lines, the answer
plain; ``--json`` prints one JSON object instead. Dangerous calls are approved with
``--yes``, or asked on the terminal when stdin is one; otherwise they are denied and the
model is told.

``qwq-agent ask -`` reads the prompt from stdin (as ``-`` means in Unix tools); an empty
prompt is refused with exit 2. Before a download larger than
:data:`models.catalog.CONFIRM_DOWNLOAD_GB`, the person is asked on a terminal; without one the
download is refused with the command that pulls the model (``--yes`` proceeds). Ctrl+C (SIGINT) cancels the agent, which stops the generation
or kills the running tool's process group at once, and exits 130; a second Ctrl+C stops
without waiting for the run to end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

from agent.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, agent_from_args
from agent.terminal import clean_for_terminal

if TYPE_CHECKING:
    from rich.console import Console

    from agent.events import Event


class _Interrupts:
    """What Ctrl+C does during a run: the first cancels the agent (the run ends "cancelled",
    a running tool's process group is killed), a second raises :class:`KeyboardInterrupt`.
    While the person is asked to approve a call, Ctrl+C also ends the question (denied)."""

    def __init__(self) -> None:
        self.agent: Any = None
        self.count = 0
        self.asking = False

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count > 1 or self.agent is None:
            raise KeyboardInterrupt
        self.agent.cancel()
        print("\ninterrupted: stopping the run (Ctrl+C again to quit at once)", file=sys.stderr)
        if self.asking:
            raise KeyboardInterrupt  # ends input(); the call is denied

    @contextmanager
    def installed(self, agent: Any) -> Iterator[None]:
        """Handle SIGINT as above while the block runs (main thread only)."""
        self.agent = agent
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self.handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


_interrupts = _Interrupts()


def _ask_person(call: Any, reason: str | None = None) -> bool:
    from tools.display import escape_for_display

    pretty = json.dumps(call.arguments, ensure_ascii=False, indent=2)
    args = "\n".join(escape_for_display(line) for line in pretty.splitlines())
    print(f"\nThe model wants to run {call.name!r} with:\n{args}", file=sys.stderr)
    if reason:
        print(f"Why you are asked: {escape_for_display(reason)}", file=sys.stderr)
    _interrupts.asking = True
    try:
        answer = input("Allow this call? [y/N] ").strip().lower()
    except (EOFError, KeyboardInterrupt):
        return False
    finally:
        _interrupts.asking = False
    return answer in ("y", "yes")


def _download_refusal(spec: str | None, args: argparse.Namespace) -> str | None:
    """Why the model is not loaded, when loading it would start a large download that no one
    agreed to: on a terminal the person is asked (y/N); without one ``ask`` refuses and says
    how to download it. ``--yes`` proceeds. ``None``: go on.

    Raises:
        models.base.BackendError: an unknown model name or quantization.
    """
    from models.catalog import download_plan

    plan = download_plan(spec) if spec is not None else None
    if plan is None or not plan.large or args.yes:
        return None
    if not sys.stdin.isatty():
        return (
            f"{plan.describe()}; without a terminal to ask on, ask does not start a download "
            f"that large: download it first with `{plan.pull_command()}` (or pass --yes)"
        )
    print(f"{plan.describe()}.", file=sys.stderr)
    try:
        answer = input("Download it now? [y/N] ").strip().lower()
    except (EOFError, KeyboardInterrupt):
        answer = ""
    if answer in ("y", "yes"):
        return None
    return (
        f"{plan.spec} was not downloaded; download it later with `{plan.pull_command()}`, "
        "or choose a smaller model (--model smollm2-135m)"
    )


def read_prompt(value: str) -> str:
    """The prompt: ``value``, or stdin when ``value`` is ``-``.

    Raises:
        ValueError: the prompt is empty or only whitespace (nothing to ask).
    """
    prompt = sys.stdin.read() if value == "-" else value
    if not prompt.strip():
        where = "stdin gave nothing" if value == "-" else "the prompt is empty"
        raise ValueError(
            f"nothing to ask: {where}; give the task as an argument "
            '(qwq-agent ask "What is 2 + 3?") or pipe it in (echo "..." | qwq-agent ask -)'
        )
    return prompt


def run_ask(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.text import Text

    from agent import Agent, BackendError, RunResult
    from tools.registry import UnknownToolError

    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        prompt = read_prompt(args.prompt)
    except (ValueError, OSError) as exc:
        err.print(Text(f"qwq-agent: {clean_for_terminal(str(exc))}", style="bold red"))
        return EXIT_BAD_INPUT
    callback = _ask_person if sys.stdin.isatty() and not args.yes else None
    try:
        agent: Agent = agent_from_args(args, approval_callback=callback)
        refusal = _download_refusal(agent.model_spec, args)
        if refusal is not None:
            agent.close()
            err.print(Text(f"qwq-agent: {refusal}", style="bold red"))
            return EXIT_BAD_INPUT
        agent.load()
    except (UnknownToolError, ValueError, BackendError, OSError) as exc:
        err.print(Text(f"qwq-agent: {clean_for_terminal(str(exc))}", style="bold red"))
        return EXIT_BAD_INPUT

    events: list[Event] = []
    in_thinking_line = False
    _interrupts.count = 0
    with agent, _interrupts.installed(agent):
        for event in agent.stream(prompt):
            events.append(event)
            if args.json:
                continue
            in_thinking_line = _show(event, args, out, err, in_thinking_line)
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
        shown = {e.message for e in events if e.kind == "error" and e.fatal}
        if (not result.ok or result.detail) and result.detail not in shown:
            detail = clean_for_terminal(result.detail)
            err.print(Text(f"[{result.finish_reason}] {detail}", style="yellow"))
    if _interrupts.count and result.finish_reason == "cancelled":
        return EXIT_INTERRUPTED
    return EXIT_OK if result.ok else EXIT_FAILED


def _show(
    event: Event, args: argparse.Namespace, out: Console, err: Console, mid_thought: bool
) -> bool:
    """Print one event; return whether the cursor is now in the middle of dimmed thinking."""
    from rich.text import Text

    from agent.events import Approval, Error, Thinking, ToolCallEvent, ToolResult
    from agent.events import Text as AnswerText

    match event:
        case Thinking(text=text) if not args.hide_thinking:
            out.print(Text(clean_for_terminal(text), style="dim"), end="")
            return True
        case AnswerText(text=text):
            if mid_thought:  # the answer starts: one line break after the thinking, no blank run
                text = text.lstrip("\n")
                out.print()
                if not text:
                    return False
            out.print(Text(clean_for_terminal(text)), end="")
            return False
        case ToolCallEvent(call=call):
            arguments = clean_for_terminal(json.dumps(call.arguments, ensure_ascii=False))
            out.print(Text(f"\n→ {call.name}({arguments})", style="cyan"))
            return False
        case ToolResult(output=output, error=error):
            body = output if error is None else f"error: {error}"
            shown = clean_for_terminal(body or "")
            if len(shown) > 2000:
                shown = shown[:2000] + f" … ({len(shown) - 2000} more characters)"
            out.print(Text(f"← {shown}", style="green" if error is None else "red"))
            return False
        case Approval(decision=False, call=call):
            out.print(Text(f"✗ {call.name} denied (use --yes to allow)", style="yellow"))
        case Error(fatal=True, message=message):
            err.print(Text(f"qwq-agent: {clean_for_terminal(message)}", style="bold red"))
    return mid_thought
