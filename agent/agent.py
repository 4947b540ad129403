"""``Agent``: the public entry point. Holds a conversation, a backend and the tools.

An agent is one conversation: ``run()`` twice continues it (``reset()`` starts anew). Each
run streams typed events (:mod:`agent.events`), writes them to a JSONL transcript as they
happen, and ends with exactly one :class:`agent.events.Finished` event. The work of a run is
in :mod:`agent.loop`; this module wires the pieces and keeps the conversation.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Unpack

from agent.approval import ApprovalCallback, ApprovalPolicy
from agent.errors import InputError
from agent.events import Event, RunResult
from agent.executor import ToolExecutor
from agent.loop import RunState, run_loop
from agent.settings import (
    DEFAULT_MODEL,
    DEFAULTS,
    AgentSettings,
    Placement,
    SettingArguments,
    ToolChoice,
)
from agent.state import Limits
from agent.transcript import TranscriptWriter, default_sessions_dir, load_transcript
from models import Backend, ProgressCallback, Sampling, Usage
from models.options import BackendOptions
from tools import ToolContext, ToolError, ToolRegistry, ToolSpec, check_tool_settings


class Agent:
    """A QwQ agent: a model, tools, and a conversation.

    How it runs is an :class:`agent.settings.AgentSettings` (:attr:`settings`): ``settings``
    if given, else the defaults, with the setting keyword arguments laid over it (the top
    layer, see :mod:`agent.settings`). Each setting's meaning and default is documented
    there; in short:

    * ``placement``: ``"interleaved"`` (calls honoured inside the thinking too) or
      ``"template"`` (calls only after ``</think>``);
    * ``approval``: the policy for dangerous tools (see :mod:`agent.approval`);
    * ``workspace``: the only folder file tools may touch;
    * limits: ``max_steps``, ``max_tokens``, ``thinking_budget`` (then the runtime closes the
      thinking, emits ``thinking_closed``, and the model answers), ``timeout``,
      ``max_repeated_calls``, ``max_calls_per_step``, ``tool_output_chars``;
    * sampling: ``temperature``, ``seed`` override the model's defaults; ``sampling``
      replaces them;
    * ``tool_choice``: ``"required"`` makes the first step a tool call (grammar-constrained
      where the backend supports grammars);
    * ``system``: the system prompt (default: ``prompts/system.md.j2``);
    * ``tool_settings``: per-tool settings (limits) by tool name, seen by tools;
    * ``transcript``, ``sessions_dir``: where the JSONL transcript goes (or none);
    * ``session_kv``: keep the conversation's KV state beside its transcript
      (``TRANSCRIPT.kv``, written after each run) so that :meth:`resume` restores it instead
      of evaluating the conversation again (llama.cpp backends only; others ignore it).

    Args:
        model: a catalog name (``"qwq-32b"``, ``"smollm2-135m"``), a path to a ``.gguf``, an
            ``http(s)://`` endpoint, ``"scripted:FILE.yaml"``, or a :class:`models.base.Backend`.
            A name is loaded on first use (or by :meth:`load`).
        tools: built-in names, ``@tool`` objects or typed functions.
        approval_callback: decides ``"ask"`` calls; without it the stream's
            :class:`agent.events.Approval` event decides, and silence denies.
        backend_options: how :func:`models.catalog.open_backend` opens ``model`` when it is a
            name, a path or a URL: a :class:`models.options.BackendOptions`, or its flat
            names (:data:`models.options.FLAT_NAMES`): for llama.cpp ``n_ctx``,
            ``n_gpu_layers``, ``flash_attn``, ``type_k``/``type_v``, ``chat_template``,
            ``warm_start``…; for a server ``api_mode`` (``"completions"`` or ``"chat"``),
            ``model_name``, ``api_key_env``, ``headers``, ``api_strict``. Checked, but unused,
            when ``model`` is a backend.
        mcp_servers: Model Context Protocol servers whose tools join ``tools``: commands
            (``"npx server-x --flag"``), ``http(s)://`` URLs, or ``tools.mcp.McpServerSpec``.
            They are started here and stopped by :meth:`close`; their tools are dangerous
            unless the spec marks them safe.
        settings: the settings to start from (default: :data:`agent.settings.DEFAULTS`).
        **arguments: settings (:class:`agent.settings.SettingArguments`) that override
            ``settings``.

    Raises:
        TypeError: an unknown keyword argument, a setting of the wrong type, or ``settings``
            that is not an :class:`agent.settings.AgentSettings`.
        InputError: unknown ``backend_options`` names (checked even when ``model`` is a
            backend; a ``ValueError``).
        agent.errors.InputError: an unknown setting value, a limit that could never be met,
            or ``tool_settings`` a built-in tool does not know (an ``InputError`` is a
            ``ValueError``).
        models.errors.BackendError: a backend option no model could take (a thread count
            of 0, an unknown server mode).
        tools.mcp.McpError: an MCP server in ``mcp_servers`` could not be started or listed.
    """

    def __init__(
        self,
        model: str | Backend = DEFAULT_MODEL,
        tools: Sequence[ToolSpec] = (),
        *,
        approval_callback: ApprovalCallback | None = None,
        backend_options: BackendOptions | Mapping[str, Any] | None = None,
        mcp_servers: Sequence[Any] = (),
        settings: AgentSettings | None = None,
        **arguments: Unpack[SettingArguments],
    ) -> None:
        if settings is not None and not isinstance(settings, AgentSettings):
            raise TypeError(
                f"settings must be an AgentSettings, got {settings!r}; make one with "
                "AgentSettings(...), or pass the settings as keyword arguments"
            )
        self.settings = (settings or DEFAULTS).replace(**arguments)
        """How this agent runs (see :mod:`agent.settings`)."""
        chosen = self.settings
        self._model_spec = model
        self._backend: Backend | None = model if isinstance(model, Backend) else None
        self.backend_options = BackendOptions()
        """How :meth:`load` opens the model (unused when it was given as a backend)."""
        if isinstance(backend_options, BackendOptions):
            self.backend_options = backend_options
        elif backend_options:  # checked even when unused (a backend given): a typo is an error
            self.backend_options = BackendOptions.from_mapping(backend_options)
        self._mcp: list[Any] = []
        mcp_tools: list[ToolSpec] = []
        if mcp_servers:
            from tools import connect_mcp

            self._mcp, found = connect_mcp(mcp_servers)
            mcp_tools = list(found)
        self.registry = ToolRegistry([*tools, *mcp_tools])
        self.policy = ApprovalPolicy(chosen.approval)
        self.approval_callback = approval_callback
        self.workspace = Path(chosen.workspace).expanduser().resolve()
        self.tool_settings: dict[str, Mapping[str, Any]] = dict(chosen.tool_settings)
        try:
            check_tool_settings(self.tool_settings, self.registry.names())
        except ToolError as exc:
            self._close_mcp()
            raise InputError(f"tool_settings: {exc}") from None
        self.history: list[dict[str, Any]] = []
        """The conversation so far, as OpenAI-style messages (reasoning included)."""
        self._cancel = threading.Event()
        self._sessions_dir = Path(chosen.sessions_dir) if chosen.sessions_dir is not None else None
        self._writer: TranscriptWriter | None = None
        self.last_usage = Usage()
        """The counters of the last run (also in its ``RunResult``)."""
        self._session_kv = _session_kv_bytes(chosen.session_kv)
        self.kv_note: str | None = None
        """What became of the session's KV state at the last :meth:`resume` or run: restored,
        saved, or why not (``None`` when ``session_kv`` is off)."""

    # -- the model -----------------------------------------------------------------------

    @property
    def model_spec(self) -> str | None:
        """The model as named (a catalog name, a path, a URL …); ``None`` when a
        :class:`~models.base.Backend` was given."""
        return self._model_spec if isinstance(self._model_spec, str) else None

    @property
    def backend(self) -> Backend:
        """The backend, loaded on first access."""
        if self._backend is None:
            self._backend = self.load()
        return self._backend

    def load(self, progress: ProgressCallback | None = None) -> Backend:
        """Load the model now (it is loaded on first use otherwise) and return its backend.

        Args:
            progress: told how downloading and loading the model file go
                (:class:`models.progress.LoadProgress`), from this thread; without it a
                download draws a terminal progress bar. Unused when already loaded.

        Raises:
            models.base.BackendError: the model cannot be found or loaded; the message says why.
        """
        if self._backend is not None:
            return self._backend
        from models import open_backend

        assert isinstance(self._model_spec, str)
        self._backend = open_backend(self._model_spec, self.backend_options, progress=progress)
        return self._backend

    # -- settings read from :attr:`settings`, the one place they are kept ---------------------

    @property
    def placement(self) -> Placement:
        """Where tool calls are honoured (see :class:`agent.settings.AgentSettings`); setting
        it (the TUI's ``/placement``) changes :attr:`settings` for the next run."""
        return self.settings.placement

    @placement.setter
    def placement(self, value: Placement) -> None:
        self.settings = self.settings.replace(placement=value)

    @property
    def limits(self) -> Limits:
        """The numbers that bound a run (from :attr:`settings`)."""
        return self.settings.limits

    @property
    def tool_choice(self) -> ToolChoice:
        """``"auto"`` or ``"required"`` (from :attr:`settings`)."""
        return self.settings.tool_choice

    @property
    def system(self) -> str | None:
        """The system prompt given, or ``None`` for the built-in one (from :attr:`settings`)."""
        return self.settings.system

    @property
    def tool_output_chars(self) -> int:
        """The cap on each tool result placed in the context (from :attr:`settings`)."""
        return self.settings.tool_output_chars

    @property
    def effective_placement(self) -> Placement:
        """The placement runs use: "template" when the backend cannot continue a turn after
        inserted text (chat-only APIs), else the one asked for."""
        if self.placement == "interleaved" and not self.backend.info.continues_in_turn:
            return "template"
        return self.placement

    @property
    def sampling(self) -> Sampling:
        """The sampler settings of the next run: the model's defaults with any overrides."""
        chosen = self.settings
        base = chosen.sampling or self.backend.info.default_sampling
        if chosen.temperature is not None:
            base = replace(base, temperature=chosen.temperature)
        if chosen.seed is not None:
            base = replace(base, seed=chosen.seed)
        return base

    # -- running -------------------------------------------------------------------------

    def stream(self, prompt: str) -> Iterator[Event]:
        """Run ``prompt`` and yield its events as they happen; the last is ``Finished``."""
        self._cancel.clear()
        context = ToolContext(
            workspace=self.workspace,
            cancel_event=self._cancel,
            settings=self.tool_settings,
        )
        executor = ToolExecutor(self.registry, context, output_chars=self.tool_output_chars)
        writer = self._transcript_writer()
        state = RunState(
            backend=self.backend,
            registry=self.registry,
            executor=executor,
            policy=self.policy,
            approval_callback=self.approval_callback,
            placement=self.effective_placement,
            limits=self.limits,
            sampling=self.sampling,
            tool_choice=self.tool_choice,
            system=self.system,
            workspace=self.workspace,
            cancel=self._cancel,
        )
        if writer is not None:
            writer.start_run(prompt, self._describe())
        answer: list[str] = []
        undecided: Event | None = None  # an approval is written once the consumer answered
        try:
            for event in run_loop(state, self.history, prompt):
                if event.kind == "text":
                    answer.append(event.text)
                if writer is not None:
                    if event.kind == "approval":
                        undecided = event
                    else:
                        writer.write(event)
                yield event
                if writer is not None and undecided is not None:
                    writer.write(undecided)
                    undecided = None
        finally:
            executor.shutdown()
            if state.new_messages and state.new_messages[-1]["role"] == "user":
                # Abandoned (the consumer stopped iterating, or a callback raised): keep the
                # turns alternating so that the next prompt is not a second user turn in a row.
                text = "".join(answer).strip() or "(the run was stopped before an answer)"
                state.new_messages.append({"role": "assistant", "content": text})
            if writer is not None:
                if undecided is not None:
                    writer.write(undecided)
                writer.end_run(state.new_messages)
                writer.close()  # reopened (append) by the next run of this conversation
            self.history.extend(state.new_messages)
            self.last_usage = state.usage
            if writer is not None and self._session_kv is not None:
                self._save_kv(writer.path)

    def run(self, prompt: str) -> RunResult:
        """Run ``prompt`` to the end and return the result (approvals: callback or policy)."""
        events = list(self.stream(prompt))
        return RunResult.from_events(
            events,
            usage=self.last_usage,
            transcript_path=str(self._writer.path) if self._writer is not None else None,
        )

    async def astream(self, prompt: str) -> AsyncIterator[Event]:
        """Async twin of :meth:`stream`: the blocking work runs in a worker thread.

        Each event is fetched only when the consumer asks for it, so answering an
        ``Approval`` event works as it does with :meth:`stream`.
        """
        loop = asyncio.get_running_loop()
        iterator = self.stream(prompt)
        try:
            while True:
                event = await loop.run_in_executor(None, next, iterator, None)
                if event is None:
                    return
                yield event
        finally:
            await loop.run_in_executor(None, _close, iterator)

    async def arun(self, prompt: str) -> RunResult:
        """Async twin of :meth:`run`."""
        events = [event async for event in self.astream(prompt)]
        return RunResult.from_events(
            events,
            usage=self.last_usage,
            transcript_path=str(self._writer.path) if self._writer is not None else None,
        )

    def resume(self, transcript: str | Path) -> None:
        """Continue the conversation saved in ``transcript``: its messages become the history
        and the next runs append to the same file.

        Raises:
            OSError: the file cannot be read.
        """
        saved = load_transcript(transcript)
        self._forget()
        self.history.extend(saved.history())
        if self.settings.transcript is not False:
            self._writer = TranscriptWriter(saved.path)
        if self._session_kv is not None:
            from models.llama.kv_state import KVStateful, SessionKV

            backend = self.backend
            if isinstance(backend, KVStateful):
                kv = SessionKV(Path(saved.path), self._session_kv)
                self.kv_note = kv.load(backend, self.history)

    def _save_kv(self, transcript: Path) -> None:
        """Keep the backend's KV state beside ``transcript`` (never fails the run)."""
        from models.llama.kv_state import KVStateful, SessionKV

        backend = self._backend
        if not isinstance(backend, KVStateful) or self._session_kv is None:
            return
        try:
            reason = SessionKV(transcript, self._session_kv).save(backend, self.history)
        except Exception as exc:  # an optimisation: a failure to save is a note, not an error
            reason = f"{type(exc).__name__}: {exc}"
        self.kv_note = "saved the KV state" if reason is None else f"KV state not saved: {reason}"

    def cancel(self) -> None:
        """Ask the running generation or tool to stop; the run ends with ``"cancelled"``."""
        self._cancel.set()

    def reset(self) -> None:
        """Forget the conversation (the model stays loaded). The next run starts a new
        transcript file; with a fixed ``transcript=PATH`` it goes on in that file after a
        ``reset`` record, so that resuming the file continues only what came after."""
        if self._writer is not None and self._fixed_transcript:
            self._writer.reset()
        self._forget()

    def _forget(self) -> None:
        self.history.clear()
        if self._writer is not None:
            self._writer.close()
        if not self._fixed_transcript:
            self._writer = None

    @property
    def _fixed_transcript(self) -> bool:
        return isinstance(self.settings.transcript, str | Path)

    def close(self) -> None:
        """Free the model, the transcript file and the MCP server processes."""
        if self._writer is not None:
            self._writer.close()
        if self._backend is not None:
            self._backend.close()
        self._close_mcp()

    def _close_mcp(self) -> None:
        if self._mcp:
            from tools import close_all

            close_all(self._mcp)
            self._mcp = []

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transcripts ---------------------------------------------------------------------

    @property
    def transcript_path(self) -> Path | None:
        """The transcript of the current conversation, once a run has started."""
        return self._writer.path if self._writer is not None else None

    def _transcript_writer(self) -> TranscriptWriter | None:
        if self.settings.transcript is False:
            return None
        if self._writer is None:
            if isinstance(self.settings.transcript, str | Path):
                path = Path(self.settings.transcript)
            else:
                folder = self._sessions_dir or default_sessions_dir()
                path = TranscriptWriter.new_path(folder)
            self._writer = TranscriptWriter(path)
        return self._writer

    def _describe(self) -> dict[str, Any]:
        return {
            "model": self.backend.info.name,
            "placement": self.effective_placement,
            "tools": self.registry.names(),
            "workspace": str(self.workspace),
        }


def _session_kv_bytes(setting: bool | int) -> int | None:
    """The bound of a ``session_kv`` setting (checked by :class:`AgentSettings`)."""
    if setting is False:
        return None
    if setting is True:
        from models.llama.kv_state import DEFAULT_SESSION_BYTES

        return DEFAULT_SESSION_BYTES
    return setting


def _close(iterator: Iterator[Event]) -> None:
    close: Callable[[], None] | None = getattr(iterator, "close", None)
    if close is not None:
        close()
