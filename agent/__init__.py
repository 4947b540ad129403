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
"""

from __future__ import annotations

from agent.agent import Agent, Placement, ToolChoice
from agent.approval import ApprovalPolicy
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
from agent.transcript import Transcript, TranscriptRun, load_transcript
from models.base import Backend, BackendError, Sampling, Usage
from tools.base import Tool, ToolContext, ToolError, tool

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "Approval",
    "ApprovalPolicy",
    "Backend",
    "BackendError",
    "Compacted",
    "Error",
    "Event",
    "Finished",
    "Placement",
    "Repetition",
    "RunResult",
    "Sampling",
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
    "load_transcript",
    "tool",
]
