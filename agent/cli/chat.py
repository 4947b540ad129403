"""``qwq-agent chat``: the Textual TUI around the agent the command-line options describe.

The TUI itself (:mod:`tui.app`) knows nothing of the command line; this module builds the
agent factory from the options and runs the app.
"""

from __future__ import annotations

import argparse
import os
import sys

from agent.agent import Agent
from agent.cli.build import agent_from_args
from agent.cli.common import EXIT_BAD_INPUT
from models import BackendError
from tui.app import make_app


def run_chat(args: argparse.Namespace) -> int:
    """``qwq-agent chat``: build the agent from the command line options and run the app."""
    parent_pid = os.getppid()  # before the model loads: the server may die meanwhile
    web = os.environ.get("TEXTUAL_DRIVER", "").endswith(":WebDriver")  # under qwq-agent web

    def factory(model: str | None) -> Agent:
        options = argparse.Namespace(**vars(args))
        if model:
            options.model = model
        built: Agent = agent_from_args(options)
        return built

    try:
        app = make_app(
            factory,
            model_label=getattr(args, "model", None),
            confirm_downloads=not getattr(args, "yes", False),
        )
    except (ValueError, LookupError, TypeError, BackendError) as exc:
        print(f"qwq-agent chat: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not web and not (sys.stdin.isatty() and sys.stdout.isatty()):
        app.agent.close()
        print(
            "qwq-agent chat: the terminal UI needs a terminal (stdin and stdout are not one); "
            'for scripts use qwq-agent ask "..." or qwq-agent run TASKS.yaml',
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if web:
        app.exit_with_parent(parent_pid)
    code = app.run()
    app.run_done.wait(timeout=10)  # let a cancelled run end before the model is freed
    app.agent.close()
    return code or 0
