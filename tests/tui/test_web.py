"""``qwq-agent web``: the token guard, the chat process per websocket, and a real browser.

One server (``--model scripted:examples/scripted/add.yaml``, a free port on 127.0.0.1) runs
in its own process group for the whole module and is killed, group and all, at the end.
The headless-Chromium test needs Debian's ``chromium`` at ``/usr/bin/chromium`` and is
skipped without it; it drives the browser over the DevTools protocol so that it can wait
(boundedly) for the app's first bytes, types a prompt, and takes the screenshot.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from agent.cli import web
from agent.cli.common import EXIT_BAD_INPUT
from agent.cli.entry import build_parser
from tests.conftest import HANG_BOUND

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
STARTUP_SECONDS = 30.0
URL_PATTERN = re.compile(r"(http://127\.0\.0\.1:(\d+))/\?token=([A-Za-z0-9_-]+)")


@dataclass(frozen=True)
class Served:
    url: str
    """The URL printed, token included."""
    base: str
    """``http://127.0.0.1:PORT``."""
    token: str
    cookie: str
    """The name of the token cookie."""
    pid: int
    """The server process."""


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    with suppress(ProcessLookupError):  # and whatever of the group outlived the leader
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("web-home")
    env = {**os.environ, "XDG_CONFIG_HOME": str(home), "XDG_DATA_HOME": str(home)}
    command = [
        sys.executable, "-m", "agent.cli", "web", "--port", "0", "--no-transcript",
        "--model", "scripted:examples/scripted/add.yaml",
    ]  # fmt: skip
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        match = None
        while match is None:
            log.seek(0)
            output = log.read().decode("utf-8", "replace")
            match = URL_PATTERN.search(output)
            if process.poll() is not None:
                pytest.fail(f"the server exited ({process.returncode}): {output[-2000:]!r}")
            if time.monotonic() > deadline:
                pytest.fail(f"no URL printed within {STARTUP_SECONDS} s: {output[-2000:]!r}")
            time.sleep(0.05)
        base = match.group(1)
        while True:  # the URL is printed just before the socket starts listening
            try:
                httpx.get(base, timeout=1.0, trust_env=False)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the server did not answer within {STARTUP_SECONDS} s")
                time.sleep(0.05)
        yield Served(
            url=match.group(0),
            base=base,
            token=match.group(3),
            cookie=f"qwq_agent_token_{match.group(2)}",
            pid=process.pid,
        )
    finally:
        _stop_group(process)
        log.close()


def _get(url: str, **options: Any) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=10.0, **options) as client:
        return client.get(url)


@pytest.mark.parametrize("path", ["/", "/ws", "/static/js/textual.js", "/download/x", "/nope"])
def test_every_route_refuses_a_request_without_the_token(served: Served, path: str) -> None:
    response = _get(served.base + path)
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "query", ["?token=wrong", "?token=", "?token=%C3%A9t%C3%A9", "?fontsize=12"]
)
def test_a_wrong_token_is_refused(served: Served, query: str) -> None:
    assert _get(f"{served.base}/{query}").status_code == 403
    assert _get(f"{served.base}/static/js/textual.js{query}").status_code == 403


def test_a_wrong_cookie_is_refused(served: Served) -> None:
    response = _get(served.base + "/", cookies={served.cookie: served.token[:-1] + "x"})
    assert response.status_code == 403


def test_the_token_opens_the_page_and_sets_a_cookie_for_its_assets(served: Served) -> None:
    response = _get(served.url)
    assert response.status_code == 200
    port = served.base.rsplit(":", 1)[1]
    assert f'ws://127.0.0.1:{port}/ws"' in response.text
    assert f"{served.base}/static/js/textual.js" in response.text
    assert served.token not in response.text  # the page never repeats the token
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{served.cookie}={served.token};")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert response.headers["referrer-policy"] == "no-referrer"

    asset = _get(served.base + "/static/js/textual.js", cookies={served.cookie: served.token})
    assert asset.status_code == 200
    assert len(asset.content) > 1000


OUTSIDE = re.compile(r"googleapis|gstatic|jsdelivr|unpkg|cdnjs|\bcdn\b|https?://", re.IGNORECASE)
"""What a page that loads nothing from another site has no trace of."""
LOADED = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')\s]+)""")
"""A URL the browser loads: a script or link, or a CSS url() (fonts, images)."""


def _loaded_urls(text: str) -> list[str]:
    return [a or b for a, b in LOADED.findall(re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL))]


def test_the_page_loads_nothing_from_another_site(served: Served) -> None:
    """Issue 12: the page loaded its font from a public font CDN; now every asset is served
    here (the page works offline and tells no third party), and a CSP forbids the rest."""
    cookies = {served.cookie: served.token}
    page = _get(served.url)
    assert page.status_code == 200
    assert not OUTSIDE.findall(page.text.replace(served.base, "")), OUTSIDE.findall(page.text)
    urls = _loaded_urls(page.text)
    assert f"{served.base}/static/fonts/RobotoMono-VariableFont_wght.ttf" in urls
    assets = {}
    for url in urls:
        assert url.startswith(served.base + "/static/"), f"{url!r} is not served here"
        asset = _get(url, cookies=cookies)
        assert asset.status_code == 200, url
        assets[url] = asset
    fonts = [a for u, a in assets.items() if u.endswith(".ttf")]
    assert len(fonts) == 2 and all(f.content[:4] == b"\x00\x01\x00\x00" for f in fonts)
    # What the page's own scripts and styles load is served here too.
    for url, asset in assets.items():
        if url.endswith((".css", ".js")):
            for inner in _loaded_urls(asset.text):
                assert not OUTSIDE.search(inner), f"{url} loads {inner!r}"
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "font-src 'self'" in policy
    port = served.base.rsplit(":", 1)[1]
    assert f"connect-src 'self' ws://127.0.0.1:{port} wss://127.0.0.1:{port}" in policy
    assert "frame-ancestors 'none'" in policy and not OUTSIDE.search(
        policy.replace(f"ws://127.0.0.1:{port}", "").replace(f"wss://127.0.0.1:{port}", "")
    )


def test_a_forged_host_cannot_widen_the_policy() -> None:
    assert "connect-src 'self';" in web.content_security_policy("x; script-src *")
    assert "ws://[::1]:8000" in web.content_security_policy("[::1]:8000")


async def _first_bytes(served: Served, *, origin: str | None = None) -> int:
    """Open the websocket with the token cookie; how many bytes of app output arrived."""
    jar = aiohttp.CookieJar(unsafe=True)  # unsafe: cookies for an IP address
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.get(served.url) as page:
            assert page.status == 200
        headers = {"Origin": origin} if origin else {}
        url = served.base.replace("http", "ws", 1) + "/ws?width=100&height=30"
        received = 0
        async with session.ws_connect(url, headers=headers) as socket:
            deadline = time.monotonic() + STARTUP_SECONDS
            while received < 2000 and time.monotonic() < deadline:
                message = await socket.receive(timeout=STARTUP_SECONDS)
                if message.type == aiohttp.WSMsgType.BINARY:
                    received += len(message.data)
                elif message.type != aiohttp.WSMsgType.TEXT:
                    break
        return received


def test_the_websocket_runs_a_chat_process(served: Served) -> None:
    assert asyncio.run(_first_bytes(served, origin=served.base)) >= 2000


def _chat_children(pid: int) -> list[int]:
    """Live (not zombie) chat processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == pid and stat[0] not in "ZX" and b"chat" in command:
            found.append(int(entry.name))
    return found


async def _open_resize_and_leave(served: Served) -> None:
    """What a browser tab closed at once does: resizes, then goes, before the app is up."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.get(served.url) as page:
            assert page.status == 200
        url = served.base.replace("http", "ws", 1) + "/ws?width=100&height=30"
        async with session.ws_connect(url, headers={"Origin": served.base}) as socket:
            for height in (30, 35):
                await socket.send_json(["resize", {"width": 100, "height": height}])
            await asyncio.sleep(0.1)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_a_tab_closed_during_startup_leaves_no_chat_process(served: Served) -> None:
    """Such a process once went on spinning a CPU forever (found 2026-11-24): textual-serve's
    stop returned before the process exited, and nothing killed it."""
    for _ in range(3):
        asyncio.run(_open_resize_and_leave(served))
    deadline = time.monotonic() + web.STOP_SECONDS + HANG_BOUND
    while _chat_children(served.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _chat_children(served.pid) == []


def test_the_websocket_refuses_another_origin(served: Served) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        asyncio.run(_first_bytes(served, origin="http://evil.example"))
    assert caught.value.status == 403


async def _devtools(port: int, url: str, screenshot: Path) -> dict[str, Any]:
    """Open ``url`` in the browser's page, wait for the app's first bytes, screenshot it;
    return what the page loaded (``resources``: URLs) and its loaded ``fonts``."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/json/list") as listing:
            targets = await listing.json()
        page = next(t for t in targets if t["type"] == "page")
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as cdp:
            calls = 0

            async def call(method: str, **params: Any) -> dict[str, Any]:
                nonlocal calls
                calls += 1
                await cdp.send_json({"id": calls, "method": method, "params": params})
                while True:
                    reply = json.loads(await cdp.receive_str(timeout=STARTUP_SECONDS))
                    if reply.get("id") == calls:
                        assert "error" not in reply, reply
                        result: dict[str, Any] = reply["result"]
                        return result

            await call("Page.navigate", url=url)
            deadline = time.monotonic() + STARTUP_SECONDS
            expression = "document.body !== null && document.body.classList.contains('-first-byte')"
            while True:
                found = await call("Runtime.evaluate", expression=expression)
                if found["result"].get("value") is True:
                    break
                assert time.monotonic() < deadline, "the app sent no bytes to the browser"
                await asyncio.sleep(0.2)
            await asyncio.sleep(2.0)  # the app's first frames
            await call("Emulation.setFocusEmulationEnabled", enabled=True)
            focus = "document.querySelector('.xterm-helper-textarea').focus()"
            await call("Runtime.evaluate", expression=focus)
            await call("Input.insertText", text="What is 2 + 3?")
            for kind in ("keyDown", "keyUp"):
                await call(
                    "Input.dispatchKeyEvent",
                    type=kind,
                    key="Enter",
                    code="Enter",
                    windowsVirtualKeyCode=13,
                    text="\r" if kind == "keyDown" else "",
                )
            await asyncio.sleep(3.0)  # the scripted run: thinking, a calculator call, 5
            shot = await call("Page.captureScreenshot", format="png")
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            seen = (
                "JSON.stringify({resources: performance.getEntriesByType('resource')"
                ".map(e => e.name), fonts: [...document.fonts]"
                ".filter(f => f.status === 'loaded').map(f => f.family + ' ' + f.style)})"
            )
            found = await call("Runtime.evaluate", expression=seen)
            loaded: dict[str, Any] = json.loads(found["result"]["value"])
            return loaded


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_headless_chromium_shows_the_tui(served: Served, tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    screenshot = tmp_path / "web.png"
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--window-size=1200,800",
        "--remote-debugging-port=0", "about:blank",
    ]  # fmt: skip
    browser = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + STARTUP_SECONDS
        while not (active.exists() and active.read_text().strip()):
            assert browser.poll() is None, f"chromium exited ({browser.returncode})"
            assert time.monotonic() < deadline, "chromium opened no DevTools port"
            time.sleep(0.1)
        port = int(active.read_text().split()[0])
        loaded = asyncio.run(asyncio.wait_for(_devtools(port, served.url, screenshot), 90))
    finally:
        _stop_group(browser)
    if os.environ.get("QWQ_WEB_SCREENSHOT"):  # keep it to look at
        Path(os.environ["QWQ_WEB_SCREENSHOT"]).write_bytes(screenshot.read_bytes())
    data = screenshot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 20_000  # the intro dialog alone is ~11 kB; the TUI is much busier
    # Everything the browser fetched came from this server; the font is the one served here.
    assert loaded["resources"] and all(
        u.startswith((served.base + "/", served.base.replace("http", "ws", 1) + "/"))
        for u in loaded["resources"]
    ), loaded["resources"]
    assert any(
        u.endswith("/static/fonts/RobotoMono-VariableFont_wght.ttf") for u in loaded["resources"]
    )
    assert "Roboto Mono normal" in loaded["fonts"], loaded["fonts"]


def _web_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["web", *argv])


def test_chat_command_passes_the_agent_options_through() -> None:
    args = _web_args(
        "--port", "0", "--model", "scripted:x.yaml", "--tools", "", "--mcp", "a b",
        "--mcp", "http://m/", "--yes", "--temperature", "0.5", "--header", "A: b",
    )  # fmt: skip
    assert web.chat_command(args) == [
        sys.executable, "-m", "agent.cli", "chat", "--model", "scripted:x.yaml",
        "--temperature", "0.5", "--header", "A: b", "--tools", "", "--mcp", "a b",
        "--mcp", "http://m/", "--yes",
    ]  # fmt: skip
    assert web.chat_command(_web_args()) == [sys.executable, "-m", "agent.cli", "chat"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert web.is_loopback(host) is loopback


def test_a_remote_host_is_refused_without_allow_remote(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert web.run_web(_web_args("--host", "0.0.0.0", "--port", "0")) == EXIT_BAD_INPUT
    assert "--allow-remote" in capsys.readouterr().err


def test_allow_remote_warns_that_the_token_is_the_only_protection(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served: list[web.TokenServer] = []

    def serve(self: web.TokenServer, sock: Any) -> None:
        served.append(self)
        sock.close()

    monkeypatch.setattr(web.TokenServer, "serve_socket", serve)
    model = f"scripted:{ROOT / 'examples' / 'scripted' / 'add.yaml'}"  # never a real model
    args = _web_args("--host", "0.0.0.0", "--port", "0", "--allow-remote", "--model", model)
    assert web.run_web(args) == 0
    assert "ONLY protection" in capsys.readouterr().err
    (server,) = served
    assert server.url.startswith(f"http://0.0.0.0:{server.port}/?token=")
    assert len(server.token) >= 40


def _gone(pid: int) -> bool:
    """The process has exited (reaped, or a zombie nobody reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in {"Z", "X"}


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_a_chat_process_whose_server_died_exits(tmp_path: Path) -> None:
    """A chat process started for a browser tab quits when the server that started it dies
    (SIGKILL, no goodbye), instead of lingering with nobody to serve."""
    chat = [
        sys.executable, "-m", "agent.cli", "chat", "--no-transcript",
        "--model", "scripted:examples/scripted/add.yaml",
    ]  # fmt: skip
    stand_in = (
        "import os, subprocess, sys, time\n"
        "env = dict(os.environ, TEXTUAL_DRIVER='textual.drivers.web_driver:WebDriver',\n"
        "           COLUMNS='80', ROWS='24')\n"
        f"p = subprocess.Popen({chat!r}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,\n"
        "                     stderr=subprocess.DEVNULL, env=env)\n"
        "print(p.pid, flush=True)\n"
        "p.stdout.readline()  # the app is up once it writes\n"
        "import threading  # keep reading, as the server does\n"
        "threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()\n"
        "time.sleep(3)  # until the app is idle: no output that could hit a broken pipe\n"
        "print('up', flush=True)\n"
        "time.sleep(600)\n"
    )
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)}
    server = subprocess.Popen(
        [sys.executable, "-c", stand_in], cwd=ROOT, env=env, stdout=subprocess.PIPE
    )
    assert server.stdout is not None
    pid = int(server.stdout.readline())
    try:
        assert server.stdout.readline().strip() == b"up"
        assert not _gone(pid)
        server.kill()
        server.wait()
        deadline = time.monotonic() + HANG_BOUND
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(pid), "the orphaned chat process is still running"
    finally:
        server.stdout.close()
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with suppress(ProcessLookupError):
            server.kill()
        server.wait()
