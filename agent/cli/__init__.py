"""The ``qwq-agent`` command line: one module per subcommand, and the only package that
imports :mod:`tui`.

- :mod:`agent.cli.entry`: the parser and :func:`~agent.cli.entry.main`, the console script's
  entry point (``qwq-agent = "agent.cli:main"``; ``python -m agent.cli`` too). It imports only argparse at the top, so
  ``qwq-agent --help`` stays fast; each subcommand's module is imported when it runs.
- :mod:`agent.cli.common`: exit codes, the built-in defaults and the agent options every
  subcommand shares.
- :mod:`agent.cli.build`: from options and the config file to an :class:`agent.Agent`.
- :mod:`agent.cli.ask` (with :mod:`agent.cli.show`, the terminal printer of events),
  :mod:`agent.cli.chat` (the TUI), :mod:`agent.cli.web` (the TUI in a browser),
  :mod:`agent.cli.run` (task files, through :mod:`agent.tasks`), :mod:`agent.cli.config`,
  :mod:`agent.cli.models`, :mod:`agent.cli.tools`: one subcommand each.
"""

from __future__ import annotations

from agent.cli.entry import main

__all__ = ["main"]
