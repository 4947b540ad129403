"""Tools from Model Context Protocol servers, through the official ``mcp`` SDK (2.x).

:class:`McpServer` connects to one server — a command started as a subprocess and spoken to
over stdio, or a streamable-HTTP URL — lists its tools, and exposes each as a
:class:`tools.base.Tool` with the server's name, description and input schema. Calling the
tool calls the server, bounded by the server's ``timeout``; the text content of the result is
the output (images and other blocks are described in a line), and a result the server marks
as an error becomes a :class:`~tools.base.ToolError` the model reads.

Trust: an MCP server is a program the user chose, but what it says is not trusted. Its tools
are ``"dangerous"`` (they need approval) unless the user marks them safe (``safe=True`` for
all, or a set of tool names); its annotations (``readOnlyHint`` …) are not believed. A tool
whose name is not a plain identifier (``[A-Za-z0-9_.-]``, at most 64 characters, prefix
included) or whose input schema is not valid JSON Schema is left out, with a logged warning
that names the server (see :attr:`McpServer.skipped`). Descriptions are cut to 4,000
characters; like every tool declaration they are made inert where the prompt is rendered
(:func:`models.qwq.chat_template.render_safe`), so a description holding
``<|im_end|><|im_start|>system`` opens no turn.
A stdio server gets the SDK's minimal environment (``PATH``, ``HOME`` …) plus ``env``, not
the user's secrets, and its stderr goes to a temporary file whose tail is quoted in errors.

Threads: the SDK is async. Each server has one background thread running an event loop that
owns the session from connection to close; the synchronous ``Tool.fn`` submits coroutines
to it (``asyncio.run_coroutine_threadsafe``). :meth:`McpServer.close` (or leaving the
``with`` block, or interpreter exit) ends the session, which stops the server process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import shlex
import tempfile
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

from models import redact
from tools._loop_thread import LoopThread, wait_result
from tools._mcp_names import bounded_description, refuse_name
from tools.base import Tool, ToolContext, ToolError

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = -32001
"""The JSON-RPC error code of the SDK's request timeout."""
CONTEXT_PARAM = "__qwq_context__"
"""Where the executor injects the ToolContext (never part of a schema)."""


class McpError(Exception):
    """An MCP server could not be started, connected to, or listed."""


class _ConnectTimeout(Exception):
    """The owner task's connection deadline passed (reported to the constructor)."""


_SHUTDOWN_GRACE = 10.0
"""Seconds to wait for a session to wind down; the SDK's own bounds add up to ~5 s."""


@dataclass(frozen=True)
class McpServerSpec:
    """How to reach one MCP server, and how far to trust its tools.

    Exactly one of ``command`` (a stdio server: the program and its arguments) and ``url``
    (a streamable-HTTP endpoint) is set.
    """

    command: tuple[str, ...] = ()
    url: str | None = None
    name: str | None = None
    """A display name (default: the program's or the host's name)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment variables for a stdio server."""
    cwd: str | None = None
    """The working folder of a stdio server."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra headers for an HTTP server."""
    safe: bool | frozenset[str] = False
    """``True``: every tool is safe; a set: these tool names (before ``prefix``) are safe."""
    timeout: float = 60.0
    """Seconds one tool call may take."""
    connect_timeout: float = 30.0
    """Seconds to start, connect and list the tools."""
    prefix: str = ""
    """Prepended to every tool name (to tell apart servers offering the same names)."""

    def __post_init__(self) -> None:
        if bool(self.command) == bool(self.url):
            raise McpError("an MCP server needs either a command or a url (not both)")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise McpError(f"the MCP server URL {self.url!r} must start with http:// or https://")

    @classmethod
    def parse(cls, text: str, **options: Any) -> McpServerSpec:
        """``"http(s)://…"`` is a URL; anything else a command line, split as a shell would
        (``--mcp "uvx mcp-server-time --local-timezone UTC"``)."""
        text = text.strip()
        if text.startswith(("http://", "https://")):
            return cls(url=text, **options)
        try:
            command = tuple(shlex.split(text))
        except ValueError as exc:
            raise McpError(f"cannot read the MCP server command {text!r}: {exc}") from exc
        if not command:
            raise McpError("an empty MCP server command; give the program and its arguments")
        return cls(command=command, **options)

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.url:
            return urlsplit(self.url).hostname or self.url
        program = _basename(self.command[0])
        if program.rstrip("0123456789.") not in _LAUNCHERS:
            return program
        arguments = iter(self.command[1:])  # python3 server.py, python -m pkg, npx -y pkg
        for argument in arguments:
            if argument == "-c":
                return program
            if argument == "-m":
                return next(arguments, program)
            if not argument.startswith("-"):
                return _basename(argument).removesuffix(".py").removesuffix(".js")
        return program

    def is_safe(self, tool_name: str) -> bool:
        return self.safe is True or (isinstance(self.safe, frozenset) and tool_name in self.safe)


class McpServer:
    """A connected MCP server and its tools. Connects on creation; see the module docstring.

    Args:
        target: a spec, a command line or URL string (:meth:`McpServerSpec.parse`), or the
            command as a list of arguments.
        **options: :class:`McpServerSpec` fields (when ``target`` is not a spec).

    Raises:
        McpError: the server could not be started, connected to or listed in time.
    """

    def __init__(self, target: McpServerSpec | str | Sequence[str], **options: Any) -> None:
        if isinstance(target, McpServerSpec):
            self.spec = target
        elif isinstance(target, str):
            self.spec = McpServerSpec.parse(target, **options)
        else:
            self.spec = McpServerSpec(command=tuple(target), **options)
        # Header values and URL credentials are secrets: blanked wherever text is shown or saved.
        redact.register(headers=self.spec.headers, url=self.spec.url)
        self.name = self.spec.display_name
        self.skipped: dict[str, str] = {}
        """Tools left out, by name, with the reason."""
        # Closed by the finalizer, with the loop thread.
        self._errlog: TextIO = tempfile.TemporaryFile(  # noqa: SIM115
            "w+", encoding="utf-8", errors="replace"
        )
        self._runner = LoopThread(f"mcp-{self.name}")
        self._finalizer = weakref.finalize(self, _shutdown, self._runner, self._errlog)
        self._client: Any = None
        self._stop: asyncio.Event | None = None
        ready: concurrent.futures.Future[list[Any]] = concurrent.futures.Future()
        self._owner = self._runner.submit(self._own(ready))
        try:
            # The owner task enforces connect_timeout itself and shuts the transport down
            # (stopping the server process) before it reports; the margin covers that.
            listing = ready.result(timeout=self.spec.connect_timeout + _SHUTDOWN_GRACE)
        except (concurrent.futures.TimeoutError, _ConnectTimeout):
            tail = self._stderr_tail()
            self.close()
            raise McpError(
                f"the MCP server {self.name!r} did not connect and list its tools within "
                f"{self.spec.connect_timeout:g} s{tail}; check that the command starts an MCP "
                "server on stdio (or that the URL serves MCP), or raise connect_timeout"
            ) from None
        except Exception as exc:
            tail = self._stderr_tail()
            self.close()
            raise McpError(
                f"cannot connect to the MCP server {self.name!r} ({_describe(self.spec)}): "
                f"{_reason(exc)}{tail}; check that the command runs on its own, or the URL"
            ) from exc
        self._tools = [t for t in (self._make_tool(item) for item in listing) if t is not None]

    def tools(self) -> list[Tool]:
        """The server's tools, as tools of this runtime."""
        return list(self._tools)

    def call(
        self, name: str, arguments: Mapping[str, Any], context: ToolContext | None = None
    ) -> str:
        """Call the server's tool ``name`` (its own name, without ``prefix``); its text output.

        Raises:
            ToolError: the server reported an error, failed, timed out, or the run was
                cancelled; the message is for the model.
        """
        if self._client is None:
            raise ToolError(f"the MCP server {self.name!r} is not connected (it was closed)")
        timeout = self.spec.timeout
        future = self._runner.submit(
            self._client.call_tool(name, dict(arguments), read_timeout_seconds=timeout)
        )
        cancel = context.cancel_event if context is not None else threading.Event()
        too_slow = ToolError(
            f"the MCP tool {name!r} of {self.name!r} did not answer within {timeout:g} s; "
            "try smaller input, or raise the server's timeout"
        )
        try:
            result = wait_result(future, timeout + 1.0, cancel)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise too_slow from None
        except concurrent.futures.CancelledError:
            raise ToolError("the run was cancelled while the MCP tool ran") from None
        except Exception as exc:
            if getattr(exc, "code", None) == REQUEST_TIMEOUT:
                raise too_slow from exc
            raise ToolError(
                f"the MCP server {self.name!r} failed on {name!r}: {_reason(exc)}"
                f"{self._stderr_tail()}"
            ) from exc
        text = result_text(result)
        if getattr(result, "is_error", False):
            raise ToolError(text or f"the MCP tool {name!r} reported an error")
        return text

    def close(self) -> None:
        """End the session and stop the server process. Idempotent.

        Waits (bounded) for the owner task to shut the transport down, which closes a stdio
        server's stdin and, if it does not exit within the SDK's grace period, kills its
        process group; only then is the loop thread stopped.
        """
        if self._runner.alive and not self._owner.done():
            if self._stop is not None:
                self._runner.loop.call_soon_threadsafe(self._stop.set)  # a clean goodbye
            with contextlib.suppress(Exception, concurrent.futures.CancelledError):
                self._owner.result(timeout=_SHUTDOWN_GRACE)
            if not self._owner.done():  # a transport that would not wind down
                self._owner.cancel()
                with contextlib.suppress(Exception, concurrent.futures.CancelledError):
                    self._owner.result(timeout=_SHUTDOWN_GRACE)
        self._client = None
        self._finalizer()

    def __enter__(self) -> McpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"McpServer({self.name!r}, {len(self._tools) if hasattr(self, '_tools') else 0} tools)"
        )

    async def _own(self, ready: concurrent.futures.Future[list[Any]]) -> None:
        """The task that owns the session, from connection to close (anyio wants one task).

        The connection phase runs under a deadline of ``connect_timeout``; when it passes,
        anyio cancels the phase from inside, so the transport's shielded shutdown stops the
        server process before ``ready`` reports :class:`_ConnectTimeout`. (Cancelling the
        task from another thread would be a native cancel, which that shield cannot stop.)
        """
        import anyio
        from mcp import Client

        self._stop = asyncio.Event()
        connected = False
        try:
            with anyio.CancelScope(
                deadline=anyio.current_time() + self.spec.connect_timeout
            ) as deadline:
                async with contextlib.AsyncExitStack() as stack:
                    transport = await self._transport(stack)
                    client = await stack.enter_async_context(
                        Client(transport, read_timeout_seconds=self.spec.timeout)
                    )
                    listing: list[Any] = []
                    cursor: str | None = None
                    for _ in range(100):  # pages, bounded
                        page = await client.list_tools(cursor=cursor)
                        listing.extend(page.tools)
                        cursor = page.next_cursor
                        if cursor is None:
                            break
                    deadline.deadline = math.inf
                    connected = True
                    self._client = client
                    ready.set_result(listing)
                    await self._stop.wait()
            if deadline.cancelled_caught and not connected and not ready.done():
                ready.set_exception(_ConnectTimeout())
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else McpError(repr(exc)))
            if not isinstance(exc, Exception):
                raise
        finally:
            self._client = None
            if not ready.done():  # ended without connecting or failing (should not happen)
                ready.set_exception(McpError("the MCP session ended before it connected"))

    async def _transport(self, stack: contextlib.AsyncExitStack) -> Any:
        spec = self.spec
        if spec.url:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            http = await stack.enter_async_context(
                httpx2.AsyncClient(
                    headers=dict(spec.headers),
                    timeout=httpx2.Timeout(spec.connect_timeout, read=spec.timeout + 5.0),
                )
            )
            return streamable_http_client(spec.url, http_client=http)
        from mcp.client.stdio import StdioServerParameters, stdio_client

        parameters = StdioServerParameters(
            command=spec.command[0],
            args=list(spec.command[1:]),
            env=dict(spec.env) or None,
            cwd=spec.cwd,
        )
        return stdio_client(parameters, errlog=self._errlog)

    def _make_tool(self, item: Any) -> Tool | None:
        from jsonschema import Draft202012Validator, SchemaError

        name: str = item.name
        refusal = refuse_name(self.spec.prefix + name)
        if refusal is not None:
            self.skipped[name[:80]] = refusal
            log.warning("MCP server %r: tool %r left out: %s", self.name, name[:80], refusal)
            return None
        schema = dict(item.input_schema or {})
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            self.skipped[name] = f"its input schema is not valid JSON Schema: {exc.message}"
            return None
        server = self

        def call(**arguments: Any) -> str:
            context = arguments.pop(CONTEXT_PARAM, None)
            return server.call(
                name, arguments, context if isinstance(context, ToolContext) else None
            )

        description = bounded_description(item.description or getattr(item, "title", None) or name)
        return Tool(
            name=self.spec.prefix + name,
            description=f"{description}\n\n(from the MCP server {self.name!r})",
            parameters=schema,
            fn=call,
            risk="safe" if self.spec.is_safe(name) else "dangerous",
            capabilities={"reads_private", "sends_out", "untrusted_content"},
            timeout=self.spec.timeout + 2.0,
            context_param=CONTEXT_PARAM,
        )

    def _stderr_tail(self) -> str:
        try:
            self._errlog.seek(0)
            tail = self._errlog.read()[-600:].strip()
        except (OSError, ValueError):
            return ""
        return f"; its stderr ends with: {tail!r}" if tail else ""


def connect_mcp(
    specs: Iterable[McpServerSpec | str], **options: Any
) -> tuple[list[McpServer], list[Tool]]:
    """Connect to every server of ``specs`` (specs, or ``--mcp`` strings with ``options``).

    Returns the servers (close them when done) and all their tools, in order.

    Raises:
        McpError: a server failed to connect (those already connected are closed), or two
            tools have the same name (give a server a ``prefix``).
    """
    servers: list[McpServer] = []
    try:
        for spec in specs:
            servers.append(McpServer(spec, **options) if isinstance(spec, str) else McpServer(spec))
        tools: list[Tool] = []
        seen: dict[str, str] = {}
        for server in servers:
            for item in server.tools():
                if item.name in seen:
                    raise McpError(
                        f"the MCP servers {seen[item.name]!r} and {server.name!r} both offer a "
                        f"tool named {item.name!r}; give one of them a prefix"
                    )
                seen[item.name] = server.name
                tools.append(item)
    except BaseException:
        close_all(servers)
        raise
    return servers, tools


def close_all(servers: Iterable[McpServer]) -> None:
    """Close every server (errors while closing are ignored)."""
    for server in servers:
        with contextlib.suppress(Exception):
            server.close()


def result_text(result: Any) -> str:
    """The text of a ``CallToolResult``: text blocks as they are, other blocks in a line,
    structured content as JSON when there is no text."""
    import json

    parts: list[str] = []
    for block in getattr(result, "content", None) or ():
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(str(block.text))
        elif kind == "resource":
            resource = block.resource
            text = getattr(resource, "text", None)
            parts.append(str(text) if text is not None else f"[resource {resource.uri}]")
        elif kind == "resource_link":
            parts.append(f"[link {block.uri}]")
        else:
            mime = getattr(block, "mime_type", None) or "unknown type"
            parts.append(f"[{kind or 'content'} block, {mime}, not shown]")
    structured = getattr(result, "structured_content", None)
    if not parts and structured is not None:
        parts.append(json.dumps(structured, ensure_ascii=False))
    return "\n".join(parts)


def _shutdown(runner: LoopThread, errlog: TextIO) -> None:
    runner.stop()
    errlog.close()


_LAUNCHERS = frozenset({"python", "node", "npx", "uvx", "bunx"})


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _describe(spec: McpServerSpec) -> str:
    return spec.url or shlex.join(spec.command)


def _reason(exc: BaseException) -> str:
    """A readable reason, looking inside exception groups (anyio task groups wrap errors)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
