"""The typed events of a run: what ``Agent.stream()`` yields and transcripts store.

Every event is a frozen dataclass with a ``kind`` discriminator; the TUI, the YAML runner and
the transcript writer consume the same stream. Dispatch with ``match event.kind`` (or on the
class) and end with ``assert_never``.

``Approval`` is the one event a consumer may answer: when the policy is ``"ask"`` and no
callback was given, the run pauses at it and reads ``event.decision`` once the consumer asks
for the next event (call :meth:`Approval.approve` or :meth:`Approval.deny`; silence denies).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from models import Usage

CallPlacement = Literal["thinking", "answer"]
"""Where the model wrote a call: inside its thinking, or after ``</think>``."""

FinishReason = Literal[
    "completed",
    "max_steps",
    "max_tokens",
    "timeout",
    "repeated_call",
    "context_overflow",
    "repetition",
    "cancelled",
    "error",
]
"""Why a run ended. Only ``"completed"`` means the model ended its answer by itself.
``"repetition"``: the thinking kept repeating itself after the presence penalty was raised
(see :class:`Repetition`)."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete, parsed call the model asked for."""

    id: str
    """Unique within the run (``call_1``, ``call_2`` …); results are matched to calls by it."""
    name: str
    arguments: dict[str, Any]
    placement: CallPlacement
    raw: str = ""
    """The JSON text exactly as the model wrote it between the tags."""


@dataclass(frozen=True, slots=True)
class Thinking:
    """A piece of the model's reasoning, streamed as soon as it is known."""

    text: str
    kind: Literal["thinking"] = "thinking"


@dataclass(frozen=True, slots=True)
class Text:
    """A piece of the answer (after ``</think>``)."""

    text: str
    kind: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    """The model made a call; it is about to be validated, approved and run."""

    call: ToolCall
    kind: Literal["tool_call"] = "tool_call"


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The outcome of one call: ``output`` when it ran, ``error`` when it did not or failed."""

    call_id: str
    name: str
    output: str | None
    error: str | None
    duration: float
    """Seconds from start to result (0 for calls refused before running)."""
    error_type: str | None = None
    """A short category when ``error`` is set: ``validation`` (bad arguments),
    ``unknown_tool``, ``denied``, ``timeout``, ``cancelled``, ``limit`` (beyond
    ``max_calls_per_step``, not run), ``error`` (the tool reported a
    failure, :class:`tools.base.ToolError`) or ``exception`` (the tool raised anything else).
    Malformed calls and repeated calls never run, so they are :class:`Error` events
    (``error_type`` ``parse`` or ``repeated``), not results."""
    kind: Literal["tool_result"] = "tool_result"

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(slots=True)
class Approval:
    """A call waits for a yes or no (a dangerous one, or one the run's data flow holds, see
    :mod:`agent.approval`). ``decision`` is ``None`` until answered."""

    call: ToolCall
    tool_risk: str = "dangerous"
    decision: bool | None = None
    decided_by: str | None = None
    """Once decided: ``"policy"`` (the approval setting), ``"callback"``
    (``approval_callback``), ``"consumer"`` (:meth:`approve`/:meth:`deny` on the streamed
    event) or ``"default"`` (nobody answered, so the call was denied)."""
    reason: str | None = None
    """Why this call needs a yes beyond its risk, for the person to read (e.g. "this run has
    read private data (read_file '.env'); this call sends data off the machine")."""
    kind: Literal["approval"] = "approval"

    def approve(self) -> None:
        self.decision, self.decided_by = True, "consumer"

    def deny(self) -> None:
        self.decision, self.decided_by = False, "consumer"


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """Counters after a generation step (cumulative for the run so far)."""

    usage: Usage
    step: int
    kind: Literal["usage"] = "usage"


@dataclass(frozen=True, slots=True)
class Error:
    """Something went wrong. ``fatal`` errors end the run; others were told to the model."""

    message: str
    error_type: str
    fatal: bool = False
    call_id: str | None = None
    kind: Literal["error"] = "error"


@dataclass(frozen=True, slots=True)
class Finished:
    """The run is over; always the last event."""

    reason: FinishReason
    answer: str
    detail: str = ""
    """A sentence for a person when the reason is not ``completed`` (or the answer is empty)."""
    duration: float = 0.0
    """Wall-clock seconds of the run, tools and approvals included."""
    kind: Literal["finished"] = "finished"


@dataclass(frozen=True, slots=True)
class ThinkingClosed:
    """The runtime closed the model's thinking by inserting ``text`` (which ends with
    ``</think>``) into the context; the model then writes its answer."""

    reason: Literal["budget"]
    """``"budget"``: the run's thinking reached ``thinking_budget`` tokens."""
    tokens: int
    """Thinking tokens generated in the run when it was closed."""
    text: str
    """What was inserted (``prompts/thinking_budget.md.j2`` between blank lines, then
    ``</think>``); it is in the context and the transcript, not in the thinking events."""
    kind: Literal["thinking_closed"] = "thinking_closed"

    def note(self) -> str:
        """One line for a person: what the runtime did."""
        return f"thinking closed: its budget was spent ({self.tokens:,} tokens)"


@dataclass(frozen=True, slots=True)
class Repetition:
    """The thinking repeats itself: the same span of ``period`` characters, ``repeats``
    times in a row at the end of what the model wrote (:mod:`agent.repetition`)."""

    period: int
    repeats: float
    action: Literal["presence_penalty", "stopped"]
    """``"presence_penalty"``: generation goes on with ``presence_penalty`` for the rest of
    the step; ``"stopped"``: it went on repeating, so the run ends with ``"repetition"``."""
    presence_penalty: float
    """The presence penalty in force from now on (``"presence_penalty"``) or that was in force
    (``"stopped"``)."""
    unit: str = ""
    """The repeated text (its first 200 characters)."""
    kind: Literal["repetition"] = "repetition"

    def note(self) -> str:
        """One line for a person: what the runtime did."""
        if self.action == "stopped":
            return "the thinking kept repeating itself: stopped"
        return f"the thinking repeats itself: presence penalty {self.presence_penalty:g}"


@dataclass(frozen=True, slots=True)
class Compacted:
    """The context was full, so the reasoning of finished steps was dropped from it (their
    calls, the results and the current thought are kept) and the rest evaluated again."""

    tokens_before: int
    """Context tokens needed before compacting (what did not fit)."""
    tokens_after: int
    """Context tokens after compacting."""
    segments: int
    """Model segments (steps' outputs) whose reasoning was dropped."""
    estimated: bool = False
    """``tokens_after`` is estimated from characters: the backend evaluates nothing until its
    next request (servers), so it could not count them."""
    kind: Literal["compacted"] = "compacted"

    def note(self) -> str:
        """One line for a person: what the runtime did."""
        about = "about " if self.estimated else ""
        return (
            f"context compacted: {self.tokens_before:,} -> {about}{self.tokens_after:,} tokens "
            f"(the reasoning of {self.segments} finished steps dropped)"
        )


Event = (
    Thinking
    | Text
    | ToolCallEvent
    | ToolResult
    | Approval
    | UsageEvent
    | Error
    | Finished
    | ThinkingClosed
    | Repetition
    | Compacted
)
"""Any event of a run."""

EVENT_TYPES: dict[str, type[Any]] = {
    "thinking": Thinking,
    "text": Text,
    "tool_call": ToolCallEvent,
    "tool_result": ToolResult,
    "approval": Approval,
    "usage": UsageEvent,
    "error": Error,
    "finished": Finished,
    "thinking_closed": ThinkingClosed,
    "repetition": Repetition,
    "compacted": Compacted,
}


def event_to_dict(event: Event) -> dict[str, Any]:
    """A JSON-ready dict of ``event`` (``kind`` included)."""
    return dataclasses.asdict(event)


def event_from_dict(data: dict[str, Any]) -> Event:
    """The inverse of :func:`event_to_dict`.

    Raises:
        ValueError: unknown ``kind`` or fields that do not fit it.
    """
    kind = data.get("kind")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}")
    values = dict(data)
    if cls in (ToolCallEvent, Approval):
        values["call"] = ToolCall(**values["call"])
    if cls is UsageEvent:
        values["usage"] = Usage(**values["usage"])
    try:
        return cls(**values)  # type: ignore[no-any-return]
    except TypeError as exc:
        raise ValueError(f"event of kind {kind!r} has unexpected fields: {exc}") from exc


def event_to_json(event: Event) -> str:
    """One line of JSON (no newline inside) for a transcript."""
    return json.dumps(event_to_dict(event), ensure_ascii=False, separators=(",", ":"))


@dataclass
class ToolCallRecord:
    """A call and its outcome, as reported in :class:`agent.RunResult`."""

    id: str
    name: str
    arguments: dict[str, Any]
    placement: CallPlacement
    output: str | None = None
    error: str | None = None
    error_type: str | None = None
    duration: float = 0.0
    approved: bool | None = None
    """``None`` for safe tools (no approval needed)."""


@dataclass
class RunResult:
    """Everything a run produced. ``answer`` is what a caller usually wants."""

    answer: str
    thinking: str
    tool_calls: list[ToolCallRecord]
    usage: Usage
    events: list[Event]
    finish_reason: FinishReason
    detail: str = ""
    steps: int = 0
    """Model generations made."""
    duration: float = 0.0
    """Wall-clock seconds of the run (``Finished.duration``)."""
    transcript_path: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The model finished its answer by itself."""
        return self.finish_reason == "completed"

    @classmethod
    def from_events(
        cls, events: list[Event], *, usage: Usage, transcript_path: str | None = None
    ) -> RunResult:
        """Assemble the result of a run from its events (the last one is ``Finished``)."""
        records: dict[str, ToolCallRecord] = {}
        thinking: list[str] = []
        errors: list[str] = []
        steps = 0
        finished: Finished | None = None
        for event in events:
            if isinstance(event, Thinking):
                thinking.append(event.text)
            elif isinstance(event, ToolCallEvent):
                c = event.call
                records[c.id] = ToolCallRecord(c.id, c.name, c.arguments, c.placement)
            elif isinstance(event, Approval) and event.call.id in records:
                records[event.call.id].approved = event.decision
            elif isinstance(event, ToolResult) and event.call_id in records:
                record = records[event.call_id]
                record.output, record.error = event.output, event.error
                record.error_type, record.duration = event.error_type, event.duration
            elif isinstance(event, Error):
                errors.append(event.message)
            elif isinstance(event, UsageEvent):
                steps = event.step
            elif isinstance(event, Finished):
                finished = event
        if finished is None:
            finished = Finished("error", "", detail="the run ended without a finished event")
        return cls(
            answer=finished.answer,
            thinking="".join(thinking),
            tool_calls=list(records.values()),
            usage=usage,
            events=events,
            finish_reason=finished.reason,
            detail=finished.detail,
            steps=steps,
            duration=finished.duration,
            transcript_path=transcript_path,
            errors=errors,
        )
