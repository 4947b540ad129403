"""``python -m agent.cli``: the same as the ``qwq-agent`` console script."""

from __future__ import annotations

from agent.cli.entry import main

raise SystemExit(main())
