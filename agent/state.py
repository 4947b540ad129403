"""What one run is given and what it keeps: its limits, its state, the prompt it opens with,
and how it ends (:class:`Ending`).

Data, no control flow: :class:`RunState` is built by :meth:`agent.Agent.stream` and read (and
its ``usage``, ``new_messages``, ``flow`` and ``budget`` updated) by :mod:`agent.loop`,
:mod:`agent.step` and :mod:`agent.calls`. :mod:`agent.loop` re-exports
:data:`DEFAULT_MAX_STEPS`, :class:`Limits` and :class:`RunState`, their long-standing home.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import prompts
from agent.approval import ApprovalCallback, ApprovalPolicy, DataFlow
from agent.events import FinishReason
from agent.executor import ToolExecutor
from agent.thinking_budget import ThinkingBudget
from models import Backend, Neutraliser, Sampling, Usage, neutraliser
from models.qwq import chat_template
from tools import ToolRegistry

DEFAULT_MAX_STEPS = 20
"""Model generations per run unless told otherwise (the one place this default is set)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The numbers that bound one run; breaking one ends the run with its reason."""

    max_steps: int = DEFAULT_MAX_STEPS
    max_tokens: int | None = None
    timeout: float | None = None
    max_repeated_calls: int = 3
    max_calls_per_step: int = 16
    """Calls run from one generation; the rest get an error observation (one step cannot
    start thousands of tools or sandboxes)."""
    thinking_budget: int | None = None
    """Thinking tokens per run; then the runtime closes the thinking and the model answers
    (:mod:`agent.thinking_budget`). ``None``: no budget."""

    def __post_init__(self) -> None:
        """Raises ``ValueError`` for a limit that could never be met (zero, negative)."""
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps!r}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1 (or None), got {self.max_tokens!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout must be more than 0 seconds (or None), got {self.timeout!r}")
        if self.max_calls_per_step < 1:
            raise ValueError(
                f"max_calls_per_step must be at least 1, got {self.max_calls_per_step!r}"
            )
        if self.max_repeated_calls < 1:
            raise ValueError(
                f"max_repeated_calls must be at least 1, got {self.max_repeated_calls!r}"
            )
        if self.thinking_budget is not None and self.thinking_budget < 0:
            raise ValueError(
                f"thinking_budget must be 0 or more tokens (or None), got {self.thinking_budget!r}"
            )


@dataclass
class RunState:
    """Everything one run needs, and what it leaves behind (``usage``, ``new_messages``)."""

    backend: Backend
    registry: ToolRegistry
    executor: ToolExecutor
    policy: ApprovalPolicy
    approval_callback: ApprovalCallback | None
    placement: str
    limits: Limits
    sampling: Sampling
    tool_choice: str
    system: str | None
    workspace: Path | None
    cancel: threading.Event
    usage: Usage = field(default_factory=Usage)
    new_messages: list[dict[str, Any]] = field(default_factory=list)
    started: float = 0.0
    """``time.monotonic()`` when the run began."""
    flow: DataFlow = field(default_factory=DataFlow)
    """The private reads so far, for the exfiltration gate (:mod:`agent.approval`)."""
    budget: ThinkingBudget = field(default_factory=lambda: ThinkingBudget(None))
    """The run's thinking tokens against ``limits.thinking_budget`` (set by
    :func:`agent.loop.run_loop`)."""
    usage_start: Usage = field(default_factory=Usage)
    """The backend's counters when the run began (the run's usage is the difference)."""


@dataclass(frozen=True, slots=True)
class Ending:
    """How a run ends: the reason, answer and detail of its one ``Finished`` event."""

    reason: FinishReason
    answer: str = ""
    detail: str = ""


def build_messages(
    state: RunState, history: Sequence[dict[str, Any]], prompt: str
) -> list[dict[str, Any]]:
    """The OpenAI-style messages of a new run: system, the conversation so far, the prompt."""
    system = state.system
    if system is None:
        system = prompts.render(
            "system",
            tools=len(state.registry) > 0,
            placement=state.placement,
            required=state.tool_choice == "required",
            workspace=any(n in state.registry for n in ("read_file", "write_file", "list_dir")),
        )
    # Control tokens in the conversation are made inert where it is rendered (render_prompt).
    return [{"role": "system", "content": system}, *history, {"role": "user", "content": prompt}]


def inert(state: RunState) -> Neutraliser:
    """What makes untrusted text inert for this run's model (its own control tokens too)."""
    return neutraliser(state.backend.info.control_tokens)


def render_prompt(state: RunState, messages: list[dict[str, Any]]) -> str:
    """The prompt text through the model's own chat template (QwQ's when it has none), every
    untrusted string in it made inert (:func:`models.qwq.chat_template.render_safe`).

    Raises:
        models.qwq.chat_template.TemplateError: the template failed on these messages.
    """
    info = state.backend.info
    return chat_template.render_safe(
        info.chat_template or chat_template.qwq_template(),
        messages,
        state.registry.specs() or None,
        inert=inert(state),
        declare_in_system=not info.template_supports_tools,
    )
