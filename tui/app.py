"""The chat app: a conversation with the agent, its thinking, tool calls and approvals.

Build it with :func:`make_app` from an :class:`agent.Agent` (or a factory of agents, which
``/model`` needs to load another model); ``qwq-agent chat`` calls it through :func:`agent.cli.chat.run_chat`. Tests
inject an agent on a :class:`models.scripted.ScriptedBackend`.

Threads (the contract that keeps the UI responsive):

* The model runs in a thread worker (``@work(thread=True)``): it iterates
  ``agent.stream(prompt)`` and puts each event on a queue, with the run's live figures
  (:class:`tui.live_usage.LiveMeter`: tokens/s, context, thinking tokens) at most every
  0.25 s. The UI drains the queue :data:`DRAIN_HZ` times a second, merges text deltas and
  applies them in order, so the cost of drawing does not grow with the number of tokens and
  never slows the model.
* A dangerous call makes the agent call its approval callback on the worker thread:
  :class:`tui.approvals.ApprovalBridge` shows the approval modal and the thread waits for
  the person's answer (a cancel or quit answers "deny").
* Esc calls ``agent.cancel()``: the generation or tool stops and the run ends with
  ``"cancelled"``; the transcript keeps what happened. Ctrl+C cancels a run and, pressed
  again within :data:`QUIT_WINDOW` seconds, quits.

``deterministic=True`` makes every frame a function of the events alone (no clocks, no
durations, no speed, no spinner motion, no cursor blink, no animations, live figures only
after each step): for snapshot tests and screenshots.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.timer import Timer
from textual.widgets import Footer

from agent import Agent, Error, Event, Finished, UsageEvent
from tui import command_handlers, commands, errors, loading
from tui.approvals import ApprovalBridge
from tui.live_usage import INTERVAL, LiveFigures, LiveMeter
from tui.palette import SlashCommands
from tui.widgets.conversation import Conversation
from tui.widgets.prompt import PromptInput
from tui.widgets.status import StatusBar
from tui.widgets.thinking import ThinkingBlock
from tui.widgets.turn import AssistantTurn, Note, UserMessage, coalesce

AgentFactory = Callable[[str | None], Agent]
"""Builds an agent; the argument is a model to use instead of the default (``/model``)."""

DRAIN_HZ = 20
QUIT_WINDOW = 2.0
ORPHAN_CHECK_SECONDS = 1.0
ORPHAN_GRACE_SECONDS = 5.0
"""How often a chat process under `qwq-agent web` checks that its server is still there."""
WELCOME = (
    "Type a task and press Enter. /help lists commands and keys; "
    "Esc cancels a run; Ctrl+C twice quits."
)


class ChatApp(App[int]):
    """The qwq-agent chat. Build it with :func:`make_app`."""

    CSS_PATH = "app.tcss"
    TITLE = "qwq-agent"
    COMMANDS = App.COMMANDS | {SlashCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel_run", "Cancel run"),
        Binding("ctrl+t", "toggle_thinking", "Fold thinking"),
        Binding("ctrl+c", "interrupt", "Quit (twice)", priority=True),
    ]

    def __init__(
        self,
        agent: Agent,
        factory: AgentFactory | None = None,
        *,
        model_label: str | None = None,
        deterministic: bool = False,
        sessions_dir: Path | None = None,
        confirm_downloads: bool = True,
    ) -> None:
        super().__init__()
        self.agent = agent
        self.factory = factory
        self.confirm_downloads = confirm_downloads
        """Ask before a model load starts a large download (``--yes`` turns it off)."""
        self.deterministic = deterministic
        self.show_timings = not deterministic
        self.sessions_dir = sessions_dir
        self.model_label = model_label or "model"
        if deterministic:
            self.animation_level = "none"
        self.running = False
        self.loading = False
        """A model is loading (:mod:`tui.loading`); tasks sent meanwhile wait."""
        self.loading_agent: Agent | None = None
        """The agent whose model is loading: ``agent`` at first, a ``/model`` one later."""
        self.model_ready = False
        """Whether ``agent``'s model has loaded."""
        self.turn: AssistantTurn | None = None
        self.run_done = threading.Event()
        self.run_done.set()
        self._events: queue.SimpleQueue[Event | LiveFigures | None] = queue.SimpleQueue()
        """Events and live figures from the run's worker thread; ``None`` when it has ended."""
        self._drain_timer: Timer | None = None
        self.pending_prompt: str | None = None
        """A task sent while the model loads; it starts when the model is ready."""
        self.approvals = ApprovalBridge(self)
        self._last_interrupt = 0.0
        agent.approval_callback = self.approvals.ask

    # -- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Conversation(id="conversation")
        yield PromptInput(id="prompt", placeholder="Ask the agent…  (/help for commands)")
        yield StatusBar(show_timings=self.show_timings, id="status")
        yield Footer()

    @property
    def conversation(self) -> Conversation:
        return self.query_one("#conversation", Conversation)

    @property
    def prompt_input(self) -> PromptInput:
        return self.query_one("#prompt", PromptInput)

    @property
    def status(self) -> StatusBar:
        return self.query_one("#status", StatusBar)

    async def on_mount(self) -> None:
        if self.deterministic:
            self.prompt_input.cursor_blink = False
        self._drain_timer = self.set_interval(1 / DRAIN_HZ, self.drain, pause=True)
        self.status.set_placement(self.agent.placement)
        await self.note(WELCOME)
        self.prompt_input.focus()
        loading.start(self, self.agent, self.model_label)

    def exit_with_parent(self, parent_pid: int) -> None:
        """Quit when this process's parent is no longer ``parent_pid`` (``qwq-agent web``: a
        chat process whose server died has nobody to serve and must not linger).

        A daemon thread checks every :data:`ORPHAN_CHECK_SECONDS`, so it works whatever state
        the app is in, even one that never finished starting; it asks the app to exit, and
        ends the process itself if the app has not within :data:`ORPHAN_GRACE_SECONDS`.
        """

        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(ORPHAN_CHECK_SECONDS)
            self.agent.cancel()
            with suppress(Exception):
                self.call_from_thread(
                    self.exit, return_code=1, message="qwq-agent chat: the web server went away"
                )
            time.sleep(ORPHAN_GRACE_SECONDS)
            os._exit(1)  # the app did not exit: nobody is left to see it, and it must not run

        threading.Thread(target=watch, name="qwq-agent-parent-watch", daemon=True).start()

    async def note(self, text: str, kind: str = "info") -> Note:
        """Show a line from the app in the conversation."""
        widget = Note(text, kind)
        await self.conversation.add(widget)
        return widget

    # -- runs ------------------------------------------------------------------------------

    async def on_prompt_input_submitted(self, message: PromptInput.Submitted) -> None:
        try:
            invocation = commands.parse(message.text)
        except commands.UnknownCommandError as exc:
            self.prompt_input.restore(message.text)  # to fix the typo
            await self.note(str(exc), "error")
            return
        if invocation is not None:
            if not await self.run_command(invocation):
                self.prompt_input.restore(message.text)
        elif self.running or self.pending_prompt is not None:
            self.prompt_input.restore(message.text)  # to send once the run is over
            await self.note(
                "A run is in progress: wait for it (your text stays in the box), "
                "or press Esc to cancel it.",
                "warning",
            )
        elif self.loading:
            self.pending_prompt = commands.message_text(message.text)
            await self.conversation.add(UserMessage(self.pending_prompt))
            await self.note("The model is loading; the task starts when it is ready.")
        else:
            await self.start_run(commands.message_text(message.text))

    async def start_run(self, prompt: str, *, shown: bool = False) -> None:
        """Show ``prompt`` (unless ``shown``) and run it in a worker thread."""
        if not shown:
            await self.conversation.add(UserMessage(prompt))
        self.turn = AssistantTurn(show_timings=self.show_timings)
        await self.conversation.add(self.turn)
        self.running = True
        self.run_done.clear()
        self.status.start_run()
        assert self._drain_timer is not None
        self._drain_timer.resume()
        self._run_worker(prompt)

    @work(thread=True, exclusive=True, group="run", exit_on_error=False)
    def _run_worker(self, prompt: str) -> None:
        try:
            backend = self.agent.backend
            interval = None if self.deterministic else INTERVAL
            meter = LiveMeter(lambda: backend.usage, interval=interval)
            for event in self.agent.stream(prompt):
                self._events.put(event)
                if (figures := meter.observe(event)) is not None:
                    self._events.put(figures)
        except Exception as exc:  # a crash of the run is shown, not raised into the UI
            message = f"the run failed: {errors.describe(exc)}"
            self._events.put(Error(message, "internal", fatal=True))
            self._events.put(Finished("error", "", detail=message))
        finally:
            self._events.put(None)
            self.run_done.set()

    async def drain(self) -> None:
        """Apply the events the worker has queued since the last drain."""
        items: list[Event | LiveFigures | None] = []
        while True:
            try:
                items.append(self._events.get_nowait())
            except queue.Empty:
                break
        if not items:
            return
        turn = self.turn
        events = [item for item in items if item is not None and not isinstance(item, LiveFigures)]
        for event in coalesce(events):
            if isinstance(event, UsageEvent):
                self.status.update_usage(event.usage, event.step)
            if turn is not None:
                await turn.apply(event)
        live = [item for item in items if isinstance(item, LiveFigures)]
        if live:  # the meter reads after each UsageEvent: its last figures are the newest
            self.status.update_live(live[-1])
        self.call_after_refresh(self.conversation.follow)
        if None in items:
            self._run_ended()

    def _run_ended(self) -> None:
        self.running = False
        outcome = "idle"
        if self.turn is not None and self.turn.finished is not None:
            reason = self.turn.finished.reason
            outcome = "done" if reason == "completed" else reason.replace("_", " ")
        self.status.end_run(outcome)
        if self._drain_timer is not None:
            self._drain_timer.pause()

    def wait_on_ui(self, callback: Callable[[], Awaitable[None]]) -> None:
        """From a worker thread: run ``callback`` on the UI's loop and wait for it.

        Raises:
            RuntimeError: the app is not running (any more).
        """
        # Textual's signature infers ``Never`` for coroutine functions; the call is fine.
        self.call_from_thread(callback)  # type: ignore[arg-type]

    # -- keys ------------------------------------------------------------------------------

    def cancel_run(self) -> None:
        """Stop the running generation or tool; a pending approval is denied."""
        if not self.running:
            return
        self.agent.cancel()
        self.status.set_activity("cancelling")
        self.approvals.deny_pending()

    def action_cancel_run(self) -> None:
        """Esc: stop the running generation or tool."""
        self.cancel_run()

    def action_toggle_thinking(self) -> None:
        """Ctrl+T: fold or unfold the latest thinking block."""
        blocks = self.conversation.query(ThinkingBlock)
        if blocks:
            block = blocks.last()
            block.collapsed = not block.collapsed

    async def action_interrupt(self) -> None:
        """Ctrl+C: cancel the run; a second press within :data:`QUIT_WINDOW` s quits."""
        now = time.monotonic()
        if now - self._last_interrupt < QUIT_WINDOW:
            self.quit_app()
            return
        self._last_interrupt = now
        if self.running:
            self.cancel_run()
            self.notify("Run cancelled. Press Ctrl+C again to quit.")
        else:
            self.notify("Press Ctrl+C again to quit.")

    def quit_app(self) -> None:
        """Cancel what runs and exit."""
        self.approvals.closing = True
        self.cancel_run()
        self.exit(return_code=0)

    def on_unmount(self) -> None:
        self.approvals.closing = True
        self.agent.cancel()

    # -- commands --------------------------------------------------------------------------

    async def run_command(self, invocation: commands.Invocation) -> bool:
        """Do ``invocation``; ``False`` when it must wait for the run to end (not done)."""
        command = invocation.command
        if self.running and not command.while_running:
            await self.note(
                f"/{command.name} must wait for the run to end (Esc cancels it).", "warning"
            )
            return False
        await command_handlers.run(self, command.name, invocation.argument)
        return True

    def adopt_agent(self, agent: Agent) -> None:
        """Use ``agent``, whose model has loaded (``/model``), and close the one it replaces."""
        old, self.agent = self.agent, agent
        agent.approval_callback = self.approvals.ask
        old.close()
        self.status.set_placement(agent.placement)
        self.status.clear_run()


def make_app(
    agent: Agent | AgentFactory,
    *,
    model_label: str | None = None,
    deterministic: bool = False,
    sessions_dir: Path | None = None,
    confirm_downloads: bool = True,
) -> ChatApp:
    """Build the chat app around ``agent`` (or ``agent(None)`` when given a factory).

    Args:
        agent: the agent, or a factory of agents (``/model NAME`` calls it with ``NAME``).
        model_label: what the status bar calls the model until it has loaded.
        deterministic: frames depend on events only (snapshot tests, screenshots).
        sessions_dir: where ``/sessions`` looks (default: the agent's sessions folder).
        confirm_downloads: ask before a model load starts a large download.
    """
    if isinstance(agent, Agent):
        return ChatApp(
            agent,
            None,
            model_label=model_label,
            deterministic=deterministic,
            sessions_dir=sessions_dir,
            confirm_downloads=confirm_downloads,
        )
    return ChatApp(
        agent(None),
        agent,
        model_label=model_label,
        deterministic=deterministic,
        sessions_dir=sessions_dir,
        confirm_downloads=confirm_downloads,
    )
