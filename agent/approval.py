"""The approval policy: which calls may run without a person's yes.

Safe tools always run. For dangerous tools the policy is one of:

* ``"allow"``: run every call; ``"deny"``: refuse every call (the model is told);
* ``"ask"``: a person decides, through the callback given to the agent, or by answering the
  :class:`agent.events.Approval` event of the stream; with neither, the call is denied;
* a mapping from tool name to one of those words (``"*"`` sets the default, else ``"ask"``),
  which is how headless runs give an allowlist;
* a callable ``(ToolCall) -> bool`` that decides each call itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal, TypeAlias, get_args

from agent.events import ToolCall
from tools.base import Tool

Decision = Literal["allow", "deny", "ask"]
ApprovalSetting: TypeAlias = Decision | Mapping[str, Decision] | Callable[[ToolCall], bool]
ApprovalCallback: TypeAlias = Callable[[ToolCall], bool]

_WORDS = set(get_args(Decision))


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
        """From now on, run every call to ``tool_name`` without asking (the TUI's "always")."""
        self._always.add(tool_name)

    def decide(self, call: ToolCall, tool: Tool) -> Decision:
        """``"allow"``, ``"deny"`` or ``"ask"`` for this call."""
        if tool.risk == "safe" or call.name in self._always:
            return "allow"
        setting = self._setting
        if isinstance(setting, str):
            return setting
        if isinstance(setting, Mapping):
            return setting.get(call.name, setting.get("*", "ask"))
        return "allow" if setting(call) else "deny"


def _check_word(word: object, what: str) -> None:
    if word not in _WORDS:
        raise ValueError(f"{what} must be one of {sorted(_WORDS)}, got {word!r}")
