"""The approval policy: which calls may run without a person's yes.

Safe tools run, unless the run's data flow gates them (below). For dangerous tools the
policy is one of:

* ``"allow"``: run every call; ``"deny"``: refuse every call (the model is told);
* ``"ask"``: a person decides, through the callback given to the agent, or by answering the
  :class:`agent.events.Approval` event of the stream; with neither, the call is denied;
* a mapping from tool name to one of those words (``"*"`` sets the default, else ``"ask"``),
  which is how headless runs give an allowlist;
* a callable ``(ToolCall) -> bool`` that decides each call itself.

The exfiltration gate (the "lethal trifecta", :mod:`tools.capabilities`): once a run has
run a tool that reads private data (``read_file``, ``list_dir``, MCP tools …; earlier turns
of the conversation count), a call to a tool that sends data off the machine (``web_search``,
``fetch_url``, MCP tools) needs a yes even when the tool is safe. A tool named explicitly in
a mapping gets its word, a callable decides as always; otherwise ``"deny"`` (or a ``"*"`` of
``"deny"``) denies, and everything else, ``"allow"`` included, asks: a blanket yes given
before the run read private data is not a yes to sending it out. "Always" answers
(:meth:`ApprovalPolicy.allow_always`) do not lift the gate either. The reason reaches the
:class:`~agent.events.Approval` event, a callback that takes a ``reason`` keyword, and the
model when the call is denied.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypeAlias, get_args

from agent.events import ToolCall
from models.qwq.tags import CALL_CLOSE, CALL_OPEN
from tools import Tool, escape_for_display

Decision = Literal["allow", "deny", "ask"]
ApprovalSetting: TypeAlias = Decision | Mapping[str, Decision] | Callable[[ToolCall], bool]
ApprovalCallback: TypeAlias = Callable[[ToolCall], bool]
"""Decides an ``"ask"`` call. A callback that also accepts a ``reason`` keyword argument is
given the reason the call needs a yes (``None`` when it has none beyond its risk)."""

_WORDS = set(get_args(Decision))
_CALL_BLOCK = re.compile(f"{CALL_OPEN}(.*?){CALL_CLOSE}", re.DOTALL)


class ApprovalPolicy:
    """Decides, per call, whether it runs, is refused, or needs a person."""

    def __init__(self, setting: ApprovalSetting = "ask") -> None:
        if isinstance(setting, str):
            _check_word(setting, "approval")
        elif isinstance(setting, Mapping):
            for name, word in setting.items():
                _check_word(word, f"approval for {name!r}")
        elif not callable(setting):
            raise TypeError(
                f"approval must be 'allow', 'deny', 'ask', a mapping or a callable, got {setting!r}"
            )
        self._setting = setting
        self._always: set[str] = set()

    def allow_always(self, tool_name: str) -> None:
        """From now on, run every call to ``tool_name`` without asking (the TUI's "always");
        a call the exfiltration gate holds is still asked about."""
        self._always.add(tool_name)

    def decide(self, call: ToolCall, tool: Tool, gate: str | None = None) -> Decision:
        """``"allow"``, ``"deny"`` or ``"ask"`` for this call.

        Args:
            gate: why the run's data flow holds this call (:meth:`DataFlow.gate`), if it does;
                see the module docstring for how a held call is decided.
        """
        setting = self._setting
        if gate is not None:
            if isinstance(setting, Mapping):
                if call.name in setting:
                    return setting[call.name]
                return "deny" if setting.get("*", "ask") == "deny" else "ask"
            if isinstance(setting, str):
                return "deny" if setting == "deny" else "ask"
            return "allow" if setting(call) else "deny"
        if tool.risk == "safe" or call.name in self._always:
            return "allow"
        if isinstance(setting, str):
            return setting
        if isinstance(setting, Mapping):
            return setting.get(call.name, setting.get("*", "ask"))
        return "allow" if setting(call) else "deny"


class DataFlow:
    """What one run has let into its context that matters for approvals: the private reads.

    The loop notes every call that ran (:meth:`note`) and, at the start, the calls of the
    conversation so far (:meth:`note_history`); :meth:`gate` says whether a call must be held.
    """

    def __init__(self) -> None:
        self.private_reads: list[str] = []
        """Short descriptions (``read_file '.env'``) of the calls that read private data."""

    def note(self, call: ToolCall, tool: Tool) -> None:
        """Record that ``call`` ran (its output, or its error, reached the model)."""
        if tool.can("reads_private"):
            self.private_reads.append(_describe(call.name, call.arguments))

    def note_history(self, history: Iterable[Mapping[str, Any]], tools: Iterable[Tool]) -> None:
        """Record the private reads of earlier turns (the data is still in the context)."""
        private = {t.name for t in tools if t.can("reads_private")}
        for message in history:
            for name, arguments in _calls_in(message):
                if name in private:
                    self.private_reads.append(_describe(name, arguments) + " in an earlier turn")

    def gate(self, tool: Tool) -> str | None:
        """Why a call to ``tool`` needs a yes now (``None``: the data flow does not hold it)."""
        if not self.private_reads or not tool.can("sends_out"):
            return None
        reads = ", ".join(dict.fromkeys(self.private_reads[-3:]))
        more = len(set(self.private_reads)) - len(set(self.private_reads[-3:]))
        if more > 0:
            reads += f" and {more} more"
        return f"this run has read private data ({reads}); this call sends data off the machine"


def ask_callback(callback: ApprovalCallback, call: ToolCall, reason: str | None) -> bool:
    """Ask ``callback`` about ``call``, giving it ``reason`` when it takes a ``reason`` keyword."""
    if reason is not None and _takes_reason(callback):
        answer: Callable[..., object] = callback
        return bool(answer(call, reason=reason))
    return bool(callback(call))


def _takes_reason(callback: Callable[..., object]) -> bool:
    try:
        parameters = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False
    return any(
        p.kind is p.VAR_KEYWORD
        or (p.name == "reason" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        for p in parameters
    )


def _describe(name: str, arguments: Mapping[str, Any]) -> str:
    """``read_file '.env'``: the tool and its first text argument, escaped and shortened."""
    first = next((v for v in arguments.values() if isinstance(v, str)), None)
    if first is None:
        return name
    shown = escape_for_display(first)
    return f"{name} {(shown if len(shown) <= 60 else shown[:60] + '…')!r}"


def _calls_in(message: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    """The calls an assistant message made: its ``tool_calls``, and the ``<tool_call>`` blocks
    of its text (calls made inside the thinking are kept only there)."""
    if message.get("role") != "assistant":
        return
    for item in message.get("tool_calls") or ():
        function = item.get("function", {}) if isinstance(item, Mapping) else {}
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            yield function["name"], _arguments(function.get("arguments"))
    content = message.get("content")
    if not isinstance(content, str):
        return
    for block in _CALL_BLOCK.findall(content):
        try:
            parsed = json.loads(block)
        except ValueError:
            continue
        if isinstance(parsed, dict) and isinstance(parsed.get("name"), str):
            yield parsed["name"], _arguments(parsed.get("arguments"))


def _arguments(value: object) -> Mapping[str, Any]:
    """Call arguments as saved: an object, or (OpenAI's wire form) a JSON string of one."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, Mapping) else {}


def _check_word(word: object, what: str) -> None:
    if word not in _WORDS:
        raise ValueError(f"{what} must be one of {sorted(_WORDS)}, got {word!r}")
