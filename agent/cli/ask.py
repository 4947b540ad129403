"""``qwq-agent ask PROMPT``: one task, headless, streamed to the terminal.

Thinking is printed dimmed, each tool call and its result on their own lines, the answer as
Markdown on a terminal and plain when piped (:mod:`agent.cli.show`); ``--json`` prints one
JSON object instead. Dangerous calls are approved with
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

from agent.cli.build import agent_from_args
from agent.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from agent.cli.show import EventPrinter
from agent.terminal import clean_for_terminal

if TYPE_CHECKING:
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
    from tools import escape_for_display

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
    from models import download_plan

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
    from tools import UnknownToolError

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
    printer = EventPrinter(out, err, hide_thinking=args.hide_thinking)
    _interrupts.count = 0
    with agent, _interrupts.installed(agent):
        for event in agent.stream(prompt):
            events.append(event)
            if args.json:
                continue
            printer.show(event)
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
        printer.close()
        shown = {e.message for e in events if e.kind == "error" and e.fatal}
        if (not result.ok or result.detail) and result.detail not in shown:
            detail = clean_for_terminal(result.detail)
            err.print(Text(f"[{result.finish_reason}] {detail}", style="yellow"))
    if _interrupts.count and result.finish_reason == "cancelled":
        return EXIT_INTERRUPTED
    return EXIT_OK if result.ok else EXIT_FAILED
