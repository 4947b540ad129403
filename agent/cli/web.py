"""``qwq-agent web``: the chat TUI in a browser, through textual-serve.

Contracts:

- Each browser session (each websocket) runs its own ``python -m agent.cli chat ...``
  process, with the model and agent options given to ``web`` passed through unchanged
  (:func:`chat_command`); closing the tab ends that process.
- The server binds to ``127.0.0.1`` by default. A host that is not loopback is refused
  unless ``--allow-remote`` is given, and then a loud warning says that the token is the
  only protection (there is no TLS: put it behind an SSH tunnel or a TLS proxy).
- Every request (index page, websocket, static files, downloads) needs the secret token
  (``secrets.token_urlsafe``), which is printed once as part of the URL: either as
  ``?token=`` or as the HttpOnly, SameSite=Strict cookie set on the first request that
  carried a valid ``?token=`` (the page's scripts, styles and websocket then need no token
  in their URLs). Anything else gets ``403``. Tokens are compared in constant time.
- The websocket also refuses a cross-origin ``Origin`` header (``403``), so another site
  open in the same browser cannot drive the agent.
- ``--port 0`` picks a free port; the URL printed is the one that was bound.
- Nothing is loaded from another site: the page (:data:`PAGE_TEMPLATES`, textual-serve's
  own with its font served locally instead of from a public font CDN) uses only
  textual-serve's static files, so it works offline and tells no third party it was opened;
  a ``Content-Security-Policy`` (:func:`content_security_policy`) makes the browser refuse
  any other origin should something try.
- A chat process that has not quit :data:`STOP_SECONDS` after its websocket closed (or the
  server stopped) is killed, so a tab closed early never leaves a process behind.
- All tabs share one model: when the model is embedded (a catalog name or a .gguf already on
  this machine), ``web`` loads it once in a model host (:mod:`models.llama.host`) served on
  loopback (:mod:`models.llama.host_server`, behind a random key the tabs get through the
  environment), and each tab's chat talks to it in completions mode; the host keeps each
  tab's KV cache (:func:`shared_model`). A model that is not downloaded yet, a server or a
  script is opened by each tab as before.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import re
import secrets
import shlex
import signal
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Handler
from textual_serve.app_service import AppService
from textual_serve.server import Server, log, to_int

from agent.cli.common import DEFAULTS, EXIT_BAD_INPUT, EXIT_OK, add_agent_options
from agent.config import ConfigError, load_config
from models import BackendError, model_path, parse_spec
from models.llama.host import is_embedded, open_host
from models.llama.host_server import HostServer
from models.llama.options import LlamaOptions
from models.options import BackendOptions

TOKEN_PARAMETER = "token"
"""The query parameter that carries the token."""

HOST_KEY_ENV = "QWQ_AGENT_HOST_KEY"
"""The environment variable through which the tabs' chats get the shared host's key."""

TAB_SEQUENCES = 4
"""Tabs whose conversations stay in the shared host's KV cache at once (more are swapped)."""

STOP_SECONDS = 5.0
"""How long a chat process may take to quit when its browser tab goes, before it is killed."""

_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]+)?|\[[0-9A-Fa-f:.]+\](:[0-9]+)?")

PAGE_TEMPLATES = Path(__file__).resolve().parent / "web_page"
"""The page's template (``app_index.html``), used instead of textual-serve's."""


def content_security_policy(host: str) -> str:
    """The policy sent with every response: this origin only (``host`` for the websocket);
    inline scripts and styles, which the page and xterm.js use; no framing by other sites.
    A ``host`` that is not a plain host[:port] is left out ('self' still allows the socket
    in current browsers), so a forged Host header cannot add to the policy."""
    sockets = f" ws://{host} wss://{host}" if _HOST.fullmatch(host) else ""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self' 'unsafe-inline'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src 'self'{sockets}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address or a name) only listens on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


def chat_command(args: argparse.Namespace) -> list[str]:
    """The command line that runs ``qwq-agent chat`` with the agent options of ``args``.

    Only the options shared with ``chat`` (:func:`agent.cli.common.add_agent_options`) are passed on, and only
    those the user set, so the config file keeps its say over the rest.
    """
    template = argparse.ArgumentParser(add_help=False)
    add_agent_options(template)
    options: list[str] = []
    for action in template._actions:
        if not action.option_strings:
            continue
        flag = action.option_strings[0]
        value = getattr(args, action.dest, action.default)
        if isinstance(action, argparse._StoreTrueAction):
            if value:
                options.append(flag)
        elif isinstance(action, argparse._AppendAction):
            for item in value or ():
                options += [flag, str(item)]
        elif value is not None and value != action.default:
            options += [flag, str(value)]
    return [sys.executable, "-m", "agent.cli", "chat", *options]


class ChatService(AppService):
    """textual-serve's process per websocket, with a bounded :meth:`stop`."""

    async def stop(self) -> None:
        """Ask the app to quit; kill it if it has not exited within :data:`STOP_SECONDS`.

        textual-serve's own ``stop`` returns once its reader task ends, which is not the
        process exiting: a process that never finished starting (a tab closed at once) went
        on running, so the exit itself is waited for here.
        """
        deadline = asyncio.get_running_loop().time() + STOP_SECONDS
        try:
            await asyncio.wait_for(super().stop(), STOP_SECONDS)
        except TimeoutError:
            self._task = None
        process = self._process
        if process is None or process.returncode is not None:
            return
        try:
            left = max(0.0, deadline - asyncio.get_running_loop().time())
            await asyncio.wait_for(process.wait(), left)
        except TimeoutError:
            log.warning("a chat process did not quit; killing it")
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


class TokenServer(Server):
    """A textual-serve :class:`Server` whose every route needs the token.

    The check is an aiohttp middleware added to the application that
    :meth:`Server._make_app` builds, so it covers the routes textual-serve has now and any
    it adds later. The index page takes its URLs from the request's own host, so the page
    works whichever name (127.0.0.1, localhost, a tunnel) the browser used.
    """

    def __init__(self, command: str, *, token: str, host: str, port: int, url: str) -> None:
        super().__init__(
            command, host=host, port=port, title="qwq-agent", templates_path=PAGE_TEMPLATES
        )
        self.token = token
        self.url = url
        self.cookie_name = f"qwq_agent_token_{port}"  # cookies ignore ports; names do not

    def _matches(self, value: str | None) -> bool:
        if value is None:
            return False
        return secrets.compare_digest(value.encode(), self.token.encode())

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Let a request through only with the token (query or cookie); else ``403``."""
        by_query = self._matches(request.query.get(TOKEN_PARAMETER))
        by_cookie = self._matches(request.cookies.get(self.cookie_name))
        if not (by_query or by_cookie):
            return web.Response(status=403, text="403: forbidden (the URL needs its token)\n")
        origin = request.headers.get("Origin")
        if request.path == "/ws" and origin and urlsplit(origin).netloc != request.host:
            return web.Response(status=403, text="403: cross-origin websocket\n")
        response = await handler(request)
        if not response.prepared:  # a websocket has already sent its headers
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers["Content-Security-Policy"] = content_security_policy(request.host)
            response.headers["Cache-Control"] = "no-store"
            if by_query and not by_cookie:
                response.set_cookie(
                    self.cookie_name, self.token, path="/", httponly=True, samesite="Strict"
                )
        return response

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self.guard)
        return app

    async def handle_index(self, request: web.Request) -> web.Response:
        """The page of the app, its URLs on the host the browser asked for."""
        base = f"{request.scheme}://{request.host}"
        websocket = f"{'wss' if request.scheme == 'https' else 'ws'}://{request.host}"
        context: dict[str, Any] = {
            "font_size": to_int(request.query.get("fontsize", "16"), 16),
            "app_websocket_url": f"{websocket}/ws",
            "config": {"static": {"url": f"{base}/static/"}},
            "application": {"name": self.title},
        }
        return aiohttp_jinja2.render_template("app_index.html", request, context)

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """Run a chat process for this websocket (as textual-serve does, with
        :class:`ChatService` so that the process cannot outlive the connection)."""
        websocket = web.WebSocketResponse(heartbeat=15)
        width = to_int(request.query.get("width", "80"), 80)
        height = to_int(request.query.get("height", "24"), 24)
        service: ChatService | None = None

        async def close() -> None:
            await websocket.close()

        try:
            await websocket.prepare(request)
            service = ChatService(
                self.command,
                write_bytes=websocket.send_bytes,
                write_str=websocket.send_str,
                close=close,
                download_manager=self.download_manager,
                debug=self.debug,
            )
            await service.start(width, height)
            await self._process_messages(websocket, service)
        except asyncio.CancelledError:
            await websocket.close()
        except Exception as error:
            log.exception(error)
        finally:
            if service is not None:
                await service.stop()
        return websocket

    async def on_startup(self, app: web.Application) -> None:
        print(f"qwq-agent web: each browser tab runs: {self.command}", flush=True)
        print(f"Open this URL (it holds the access token): {self.url}", flush=True)
        print("Press Ctrl+C to stop.", flush=True)

    def serve_socket(self, sock: socket.socket) -> None:
        """Serve on the bound ``sock`` until SIGINT or SIGTERM."""
        self.initialize_logging()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.request_exit)
        try:
            web.run_app(
                self._make_app(),
                sock=sock,
                handle_signals=False,
                loop=loop,
                print=None,
                access_log=None,  # the access log would print tokens
            )
        finally:
            sock.close()


def shared_model(args: argparse.Namespace) -> str | None:
    """The embedded model every tab would load (``--model``, else the config's, else the
    default), or ``None`` when the tabs open their model themselves (a server, a script, a
    config endpoint, or a config that does not load: the tab reports it)."""
    spec = getattr(args, "model", None)
    try:
        config = load_config(getattr(args, "config", None))
    except ConfigError:
        return None
    if spec is None:
        spec = config.model or DEFAULTS.get("model")
    if not isinstance(spec, str) or config.endpoint(spec) is not None:
        return None
    return spec if is_embedded(spec) else None


def tab_arguments(args: argparse.Namespace, url: str) -> argparse.Namespace:
    """``args`` for a tab's chat that talks to the shared host at ``url``: the model is the
    host's endpoint (completions mode, its key from :data:`HOST_KEY_ENV`); loading options
    (``--ctx``, ``--n-gpu-layers``, ``--no-lookup``) were the host's."""
    tab = argparse.Namespace(**vars(args))
    tab.model, tab.api_mode, tab.api_key_env = url, "completions", HOST_KEY_ENV
    tab.ctx = tab.n_gpu_layers = None
    tab.no_lookup = False
    return tab


def open_shared_host(args: argparse.Namespace, spec: str) -> Any:
    """Load ``spec`` once in a model host served on loopback (a
    :class:`models.llama.host_server.HostServer`), its key put in :data:`HOST_KEY_ENV` for the
    tabs; ``None`` (each tab loads the model) when it is not on this machine yet, so that a
    large download is asked for in a tab, as without a shared host.

    Raises:
        models.base.BackendError: the model is here but cannot be loaded.
    """
    if parse_spec(spec).kind == "catalog":
        try:
            model_path(spec, download=False)
        except BackendError:
            print("qwq-agent web: the model is not downloaded yet; each tab opens it", flush=True)
            return None
    print(f"qwq-agent web: loading {spec} once, for every tab…", flush=True)
    llama = LlamaOptions(
        n_ctx=getattr(args, "ctx", None), n_gpu_layers=getattr(args, "n_gpu_layers", None)
    )
    host = open_host(spec, BackendOptions(llama, download=False), n_seq_max=TAB_SEQUENCES)
    key = secrets.token_urlsafe(32)
    os.environ[HOST_KEY_ENV] = key  # inherited by the tabs' chat processes only
    return HostServer(host, api_key=key, owns_host=True)


def run_web(args: argparse.Namespace) -> int:
    """``qwq-agent web``: serve the chat TUI over HTTP, one chat process per browser tab."""
    host: str = args.host
    if not is_loopback(host):
        if not args.allow_remote:
            print(
                f"qwq-agent web: refusing to listen on {host!r}, which is reachable from "
                "other machines; pass --allow-remote to do it anyway, or keep 127.0.0.1 "
                "and use an SSH tunnel (ssh -L 8000:127.0.0.1:8000 HOST)",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
        print(
            "!" * 78 + f"\nWARNING: listening on {host!r}: anyone who can reach this port and "
            "learns the URL's token\ncontrols the agent and its tools. The token is the ONLY "
            "protection, and plain HTTP\nsends it unencrypted: prefer an SSH tunnel or a TLS "
            "proxy.\n" + "!" * 78,
            file=sys.stderr,
            flush=True,
        )
    try:
        family = socket.getaddrinfo(host, args.port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, args.port), family=family)
    except OSError as exc:
        print(f"qwq-agent web: cannot listen on {host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    port = sock.getsockname()[1]
    shared = None
    spec = shared_model(args)
    if spec is not None:
        try:
            shared = open_shared_host(args, spec)
        except BackendError as exc:
            print(f"qwq-agent web: {exc}", file=sys.stderr)
            sock.close()
            return EXIT_BAD_INPUT
        if shared is not None:
            args = tab_arguments(args, shared.url)
    token = secrets.token_urlsafe(32)
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    url = f"http://{shown}:{port}/?{TOKEN_PARAMETER}={token}"
    command = "exec " + shlex.join(chat_command(args))  # exec: the shell's pid is the app's
    server = TokenServer(command, token=token, host=host, port=port, url=url)
    try:
        server.serve_socket(sock)
    finally:
        if shared is not None:
            shared.close()
    return EXIT_OK
