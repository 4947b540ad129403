"""qwq-agent: run QwQ-32B as a tool-using agent.

The public API::

    from agent import Agent, tool

    @tool
    def add(a: int, b: int) -> int:
        \"\"\"Add two integers.

        Args:
            a: The first number.
            b: The second number.
        \"\"\"
        return a + b

    result = Agent(model="qwq-32b", tools=[add, "calculator"]).run("What is 2 + 3?")
    print(result.answer)

Importing this package loads neither llama.cpp, nor the TUI, nor httpx.

Besides the embedding API, the face exports the few names the TUI (:mod:`tui`) needs, so
that it depends on nothing else: model loading progress and download plans, session files,
and the text cleaners for what a model or a tool wrote.

What lives in the package: the core of a run (``agent.py`` the :class:`Agent`; ``loop.py``
one run as named steps, ``step.py`` one generation step, ``calls.py`` a step's tool calls,
``state.py`` a run's limits and state; ``parser.py``, ``call_json.py``, ``call_formats.py``
reading the model's stream; ``executor.py`` and ``approval.py`` running tool calls;
``events.py`` the typed events; ``transcript.py``; ``compaction.py``, ``repetition.py``,
``thinking_budget.py`` the run's guards; ``settings.py`` the run settings and their
defaults; ``config.py`` the config file; ``errors.py`` the
exception tree and :class:`InputError`), and two sub-packages: :mod:`agent.tasks` (task files)
and :mod:`agent.cli` (the command line, the only importer of :mod:`tui`).
"""

from __future__ import annotations

from agent.agent import Agent
from agent.approval import ApprovalPolicy
from agent.errors import InputError
from agent.events import (
    Approval,
    Compacted,
    Error,
    Event,
    Finished,
    Repetition,
    RunResult,
    Text,
    Thinking,
    ThinkingClosed,
    ToolCall,
    ToolCallEvent,
    ToolCallRecord,
    ToolResult,
    UsageEvent,
)
from agent.settings import AgentSettings, Placement, ToolChoice
from agent.terminal import clean_for_terminal
from agent.transcript import Transcript, TranscriptRun, list_sessions, load_transcript
from models import (
    Backend,
    BackendError,
    BackendInfo,
    BackendOptions,
    DownloadPlan,
    LlamaOptions,
    LoadProgress,
    Sampling,
    ServerOptions,
    Usage,
    check_spec,
    download_plan,
)
from tools import Tool, ToolContext, ToolError, escape_for_display, tool

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentSettings",
    "Approval",
    "ApprovalPolicy",
    "Backend",
    "BackendError",
    "BackendInfo",
    "BackendOptions",
    "Compacted",
    "DownloadPlan",
    "Error",
    "Event",
    "Finished",
    "InputError",
    "LlamaOptions",
    "LoadProgress",
    "Placement",
    "Repetition",
    "RunResult",
    "Sampling",
    "ServerOptions",
    "Text",
    "Thinking",
    "ThinkingClosed",
    "Tool",
    "ToolCall",
    "ToolCallEvent",
    "ToolCallRecord",
    "ToolChoice",
    "ToolContext",
    "ToolError",
    "ToolResult",
    "Transcript",
    "TranscriptRun",
    "Usage",
    "UsageEvent",
    "__version__",
    "check_spec",
    "clean_for_terminal",
    "download_plan",
    "escape_for_display",
    "list_sessions",
    "load_transcript",
    "tool",
]
