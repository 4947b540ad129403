"""Browser tabs of ``qwq-agent web`` for :mod:`benchmarks.web_memory`, driven without a browser.

A tab is either a websocket to the real web server (:class:`WebTab`, speaking textual-serve's
protocol: ``["stdin", text]`` in, the terminal's bytes out), or a tab's chat process run the
way the server runs one but without the server (:func:`own_model_tab`, through
:class:`agent.cli.web.ChatService`). Either way :func:`use` waits for the prompt box, types
:data:`PROMPT` and Enter, and waits for the run to finish, which each chat's transcript says
(:func:`finished_runs`, with the tokens the model generated).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp

PROMPT = "Say hello."
"""What each tab types."""
READY = re.compile(r"Ask\s*the\s*agent")
"""The prompt box's placeholder in a tab's screen, with escape sequences removed."""
WAIT_S = 180.0
"""Seconds any one wait (server up, prompt box shown, answer) may take before it is a hang:
generous, because these figures are not about speed (a loaded machine starts Python slowly)."""
SIZE = (100, 30)
"""Columns and rows of each tab's terminal."""
_ESCAPE = re.compile(r"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


class Tab(Protocol):
    """A running tab: what it has drawn so far, and typing into it."""

    output: bytearray

    async def send(self, text: str) -> None: ...

    async def close(self) -> None: ...


def screen_text(output: bytes) -> str:
    """The text of a terminal stream, its escape sequences removed."""
    return _ESCAPE.sub("", output.decode("utf-8", "replace"))


def finished_runs(sessions: Path) -> dict[str, int]:
    """For each transcript in ``sessions`` whose run finished: the tokens the model generated
    (from its last ``usage`` record; 0 when it has none)."""
    runs: dict[str, int] = {}
    for path in sorted(sessions.glob("*.jsonl")):
        tokens, finished = 0, False
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line being written
                continue
            if record.get("kind") == "usage":
                tokens = int(record.get("usage", {}).get("completion_tokens", 0))
            finished = finished or record.get("kind") == "finished"
        if finished:
            runs[path.name] = tokens
    return runs


async def until(what: str, check: Callable[[], bool], alive: Callable[[], str | None]) -> None:
    """Wait until ``check()``.

    Raises:
        RuntimeError: ``alive()`` said something died (its words), or :data:`WAIT_S` passed.
    """
    deadline = time.monotonic() + WAIT_S
    while not check():
        if (problem := alive()) is not None:
            raise RuntimeError(f"{what}: {problem}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {WAIT_S} s (a hang? see the log above)")
        await asyncio.sleep(0.1)


def drawn(tab: Tab) -> Callable[[], bool]:
    """Whether ``tab`` shows its prompt box (:data:`READY`) yet."""
    return lambda: bool(READY.search(screen_text(bytes(tab.output))))


async def use(tabs: list[Tab], sessions: Path, alive: Callable[[], str | None]) -> None:
    """Each of ``tabs`` (just opened) waits for its prompt box and sends :data:`PROMPT`; then
    wait until every tab opened so far has finished a run (transcripts in ``sessions``).

    Raises:
        RuntimeError: see :func:`until`.
    """
    before = len(finished_runs(sessions))
    for number, tab in enumerate(tabs):
        await until(f"tab {number + 1}'s prompt box", drawn(tab), alive)
        await tab.send(PROMPT)
        await tab.send("\r")
    await until(
        f"{before + len(tabs)} finished runs",
        lambda: len(finished_runs(sessions)) >= before + len(tabs),
        alive,
    )


class WebTab:
    """A browser tab of the web server at ``base``: its websocket (the ``session`` has the
    token cookie from the page)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.output = bytearray()
        self._session = session
        self._base = base
        self._socket: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def open(self) -> WebTab:
        """Connect (the server starts the tab's chat process)."""
        width, height = SIZE
        url = f"{self._base.replace('http', 'ws', 1)}/ws?width={width}&height={height}"
        self._socket = await self._session.ws_connect(url, headers={"Origin": self._base})
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._socket is not None
        async for message in self._socket:
            if message.type == aiohttp.WSMsgType.BINARY:
                self.output += message.data

    async def send(self, text: str) -> None:
        assert self._socket is not None
        await self._socket.send_json(["stdin", text])

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


def isolated(environment: dict[str, str], folder: Path) -> dict[str, str]:
    """``environment`` with its own config, data and transcripts folders under ``folder``."""
    found = {**environment, "XDG_CONFIG_HOME": str(folder / "config")}
    found["XDG_DATA_HOME"] = str(folder / "data")
    found["QWQ_AGENT_SESSIONS"] = str(folder / "sessions")
    found.pop("QWQ_AGENT_CONFIG", None)
    return found


def pin(cpu: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that runs the child on ``cpu`` only (``None``: no pinning)."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to ``process``'s process group, then SIGKILL to whatever of it is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def own_model_tab(command: str, folder: Path, cpu: int | None) -> Any:
    """A tab's chat process running ``command`` as the web server runs one (environment,
    protocol, bounded stop), without the server: in its own process group (``kill()`` ends
    it), its config and transcripts under ``folder``, pinned to ``cpu``. Not started:
    ``await tab.start(*SIZE)``."""
    from textual_serve.download_manager import DownloadManager

    from agent.cli.web import ChatService

    class OwnModelTab(ChatService):
        def __init__(self) -> None:
            super().__init__(
                command,
                write_bytes=self._drew,
                write_str=_ignore,
                close=_nothing,
                download_manager=DownloadManager(),
            )
            self.output = bytearray()

        async def _drew(self, data: bytes) -> None:
            self.output += data

        def _build_environment(self, width: int = 80, height: int = 24) -> dict[str, str]:
            return isolated(super()._build_environment(width, height), folder)

        async def _open_app_process(self, width: int = 80, height: int = 24) -> Any:
            self._process = process = await asyncio.create_subprocess_shell(
                self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._build_environment(width=width, height=height),
                start_new_session=True,
                preexec_fn=pin(cpu),
            )
            assert process.stdin is not None
            self._stdin = process.stdin
            return process

        @property
        def pid(self) -> int | None:
            return None if self._process is None else self._process.pid

        def exited(self) -> int | None:
            return None if self._process is None else self._process.returncode

        async def send(self, text: str) -> None:
            await self.send_bytes(text.encode("utf-8"))

        async def close(self) -> None:
            await self.stop()

        async def kill(self) -> None:
            if self._process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._process.pid, signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._process.wait(), 10)

    return OwnModelTab()


async def _ignore(_: str) -> None:
    return None


async def _nothing() -> None:
    return None
