"""``ApprovalBridge``: approval questions from the run's thread to the person, and back.

The agent calls :meth:`ApprovalBridge.ask` (its ``approval_callback``) on the run's worker
thread. The bridge shows the pending events first (so the call's card is on screen), marks
the card as waiting, opens :class:`~tui.screens.approval.ApprovalScreen` on the UI thread
and blocks the worker on a future until the person answers. "Always" is recorded in the
agent's policy (``allow_always``) for the rest of the session.

Contract: :meth:`ask` returns ``True`` to run the call; it returns ``False`` when the person
denies, when the run is cancelled (:meth:`deny_pending`), or when the app closes
(``closing``); it never blocks past either of those.
"""

from __future__ import annotations

from concurrent.futures import Future
from functools import partial
from typing import TYPE_CHECKING

from agent import ToolCall
from tui.screens.approval import ApprovalScreen, Decision

if TYPE_CHECKING:
    from tui.app import ChatApp


class ApprovalBridge:
    """Asks the person about dangerous calls for one app."""

    def __init__(self, app: ChatApp) -> None:
        self.app = app
        self.closing = False
        """Set when the app quits: a waiting :meth:`ask` returns ``False`` at once."""
        self._pending: Future[Decision] | None = None

    def ask(self, call: ToolCall, reason: str | None = None) -> bool:
        """Whether ``call`` may run (called on the run's worker thread; blocks); ``reason``:
        why it needs a yes beyond its risk (shown on the screen)."""
        answer: Future[Decision] = Future()
        try:
            self.app.wait_on_ui(partial(self._show, call, answer, reason))
        except RuntimeError:  # the app is not running any more
            return False
        while True:
            try:
                decision = answer.result(timeout=0.1)
                break
            except TimeoutError:
                if self.closing:
                    return False
        if decision == "always":
            self.app.agent.policy.allow_always(call.name)
        return decision != "deny"

    async def _show(self, call: ToolCall, answer: Future[Decision], reason: str | None) -> None:
        app = self.app
        await app.drain()  # the card of this call is on screen before the question
        card = app.turn.card(call.id) if app.turn is not None else None
        if card is not None:
            card.awaiting()
        block = app.turn.thinking if app.turn is not None else None
        if block is not None:
            block.pause_clock()  # "Thought for" counts the model's time, not the person's
        registry = app.agent.registry
        risk = registry.get(call.name).risk if call.name in registry else "unknown"
        self._pending = answer

        def decided(decision: Decision | None) -> None:
            if block is not None:
                block.resume_clock()
            if not answer.done():
                answer.set_result(decision or "deny")

        await app.push_screen(ApprovalScreen(call, risk, reason), callback=decided)

    def deny_pending(self) -> None:
        """Deny the question on screen, if any, and close it (UI thread)."""
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.set_result("deny")
            if isinstance(self.app.screen, ApprovalScreen):
                self.app.pop_screen()
