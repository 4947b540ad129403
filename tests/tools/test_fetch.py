"""fetch_url and its SSRF guard: SECURITY.md group D (0 requests reach a private address)."""

from __future__ import annotations

import contextlib
import gzip
import ipaddress
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

import tools.netguard as netguard
from tests.conftest import HANG_BOUND
from tools.base import ToolCancelledError, ToolContext, ToolError
from tools.fetch import FetchError, FetchSettings, fetch, fetch_url, html_to_text
from tools.netguard import BlockedAddressError, parse_literal, refusal
from tools.registry import builtin

PAGE = b"""<!doctype html><html><head><title>Local &amp; Test Page</title>
<script>var secret = "do not show";</script><style>body { color: red }</style></head>
<body><nav>Home | About</nav><article><h1>Sandboxed tools</h1>
<p>The quick brown fox jumps over the lazy dog. This paragraph is the main content of the
page and should survive the extraction into readable text.</p>
<p>A second paragraph keeps the article long enough to look like an article.</p>
</article></body></html>"""
BOMB = gzip.compress(b"a" * 50_000_000, compresslevel=9)
LOOPBACK = FetchSettings(timeout=5, allow_loopback=True)


@dataclass
class Server:
    """A local HTTP server that counts the requests it receives."""

    port: int
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)

    def url(self, path: str = "/page", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def make_handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def reply(self, body: bytes, content_type: str | None, status: int = 200,
                  headers: dict[str, str] | None = None) -> None:  # fmt: skip
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            server.requests.append((self.path, self.headers.get("Host", "")))
            url = urlparse(self.path)
            route, query = url.path, parse_qs(url.query)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.route(route, query)

        def route(self, route: str, query: dict[str, list[str]]) -> None:
            if route == "/page":
                self.reply(PAGE, "text/html; charset=utf-8")
            elif route == "/plain":
                self.reply("plain text, café\n".encode(), "text/plain; charset=utf-8")
            elif route == "/latin1":
                self.reply("café".encode("latin-1"), "text/plain; charset=iso-8859-1")
            elif route == "/json":
                self.reply(b'{"answer": 42}', "application/json")
            elif route.startswith("/redirect/"):
                left = int(route.rsplit("/", 1)[1])
                target = "/page" if left <= 1 else f"/redirect/{left - 1}"
                self.reply(b"", None, 302, {"Location": target})
            elif route == "/to":
                self.reply(b"", None, 307, {"Location": query["url"][0]})
            elif route == "/big":
                self.reply(b"x" * 5_000_000, "text/plain")
            elif route == "/bomb":
                self.reply(BOMB, "text/plain", headers={"Content-Encoding": "gzip"})
            elif route == "/deflate":
                raw = query.get("raw") == ["1"]
                comp = zlib.compressobj(wbits=-15 if raw else 15)
                body = comp.compress(b"deflated text " * 100) + comp.flush()
                self.reply(body, "text/plain", headers={"Content-Encoding": "deflate"})
            elif route == "/br":
                self.reply(b"\x0b\x02\x80hi\x03", "text/plain", headers={"Content-Encoding": "br"})
            elif route == "/png":
                self.reply(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "image/png")
            elif route == "/untyped-binary":
                self.reply(b"\x7fELF\x00\x00\x00\x01" * 10, None)
            elif route == "/nul-text":
                self.reply(b"looks like text\x00\x00\x01", "text/plain")
            elif route == "/missing":
                self.reply(b"not here", "text/plain", 404)
            elif route == "/slow-headers":  # a header byte every 0.3 s, for a minute
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                for _ in range(200):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.3)
            elif route == "/drip-stall":  # a few bytes of the body, then nothing for a minute
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                for _ in range(3):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
                time.sleep(60)
            elif route == "/slow-hop":  # a redirect to itself, each hop answered after 0.4 s
                time.sleep(0.4)
                self.reply(b"", None, 302, {"Location": "/slow-hop"})
            elif route == "/drip":
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                for _ in range(100):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            else:
                self.reply(b"no route", "text/plain", 404)

    return Handler


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = Server(port=httpd.server_address[1])
    httpd.RequestHandlerClass = make_handler(state)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail any outgoing TCP connection attempt (and record it)."""
    attempts: list[Any] = []

    def refuse(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        attempts.append(address)
        raise AssertionError(f"a connection to {address} was attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


# -- the guard on its own ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.255.0.1", "0.0.0.0", "10.1.2.3", "172.16.0.1", "172.31.255.255",
     "192.168.1.1", "169.254.169.254", "169.254.0.1", "100.64.0.1", "100.127.255.254",
     "192.0.0.8", "192.0.2.1", "198.18.0.1", "198.51.100.7", "203.0.113.9", "224.0.0.1",
     "239.255.255.250", "240.0.0.1", "255.255.255.255", "::", "::1", "fc00::1", "fd12:3456::1",
     "fe80::1", "fec0::1", "ff02::1", "2001:db8::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
     "::ffff:169.254.169.254", "::127.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe",
     "2002:7f00:1::1", "2002:a00:1::", "2001:0:4136:e378:8000:63bf:80ff:fffe", "100::1",
     "::ffff:0:7f00:1", "64:ff9b:1::a9fe:a9fe"],
)  # fmt: skip
def test_private_and_special_addresses_are_refused(address: str) -> None:
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None and reason


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "2a00:1450::1",
                "::ffff:8.8.8.8", "64:ff9b::808:808"]
)  # fmt: skip
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("spelling", "meaning"),
    [("2130706433", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"),
     ("127.1", "127.0.0.1"), ("127.0.1", "127.0.0.1"), ("0x7f.1", "127.0.0.1"),
     ("017700000001", "127.0.0.1"), ("127.0.0.1.", "127.0.0.1"), ("0", "0.0.0.0"),
     ("[::1]", "::1"), ("3232235777", "192.168.1.1"), ("0xa9fea9fe", "169.254.169.254"),
     ("example.com", None), ("1.2.3.4.5", None), ("0x", None)],
)  # fmt: skip
def test_legacy_spellings_are_read_as_the_address_they_mean(
    spelling: str, meaning: str | None
) -> None:
    parsed = parse_literal(spelling)
    assert (str(parsed) if parsed else None) == meaning


def test_loopback_allowance_admits_loopback_only() -> None:
    assert refusal(ipaddress.ip_address("127.0.0.1"), allow_loopback=True) is None
    assert refusal(ipaddress.ip_address("::1"), allow_loopback=True) is None
    for still_refused in ("::ffff:127.0.0.1", "10.0.0.1", "169.254.169.254", "0.0.0.0"):
        assert refusal(ipaddress.ip_address(still_refused), allow_loopback=True)
    assert netguard.ALLOW_LOOPBACK is False
    assert FetchSettings().allow_loopback is False


def test_every_address_of_a_name_must_be_public(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {
        "intranet.example": ["10.0.0.5"],
        "mixed.example": ["93.184.215.14", "192.168.0.10"],
        "public.example": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    }

    def fake(host: str, port: int, **kwargs: Any) -> list[tuple[Any, ...]]:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answers[host]
        ]

    monkeypatch.setattr(netguard, "resolver", fake)
    with pytest.raises(BlockedAddressError, match=r"'intranet.example' \(10.0.0.5\)"):
        netguard.resolve("intranet.example", 80)
    with pytest.raises(BlockedAddressError, match=r"192\.168\.0\.10"):
        netguard.resolve("mixed.example", 80)
    assert str(netguard.resolve("public.example", 80)) == "93.184.215.14"


# -- fetch_url with the guard on: nothing reaches the local server ----------------------------

BAD_HOSTS = ["127.0.0.1", "localhost", "2130706433", "0x7f000001", "0177.0.0.1", "127.1",
             "127.0.0.1.", "0", "0.0.0.0", "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",
             "[0:0:0:0:0:ffff:127.0.0.1]", "[::]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]",
             "LOCALHOST", "[::127.0.0.1]"]  # fmt: skip


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_loopback_in_any_spelling_gets_zero_requests(server: Server, host: str) -> None:
    with pytest.raises(ToolError, match=r"loopback|unspecified|not valid"):
        fetch(server.url("/page", host), FetchSettings(timeout=2))
    assert server.requests == []


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://172.16.5.4:8080/",
     "http://192.168.1.1/", "http://100.64.0.1/", "https://[fc00::1]/", "http://[fe80::1%25eth0]/",
     "http://224.0.0.1/", "http://0xa9fea9fe/", "http://[::ffff:a9fe:a9fe]/"],
)  # fmt: skip
def test_private_targets_are_refused_before_connecting(url: str, no_connections: list[Any]) -> None:
    with pytest.raises(ToolError):
        fetch(url)
    assert no_connections == []


@pytest.mark.parametrize(
    ("url", "message"),
    [("file:///etc/passwd", "only http and https"), ("ftp://example.com/x", "only http and https"),
     ("gopher://127.0.0.1:70/", "only http and https"), ("data:text/plain,hi", "only http"),
     ("javascript:alert(1)", "only http"), ("//example.com/x", "only http"),
     ("http:///nohost", "no host"), ("http://user:pw@example.com/", "user name or password"),
     ("http://127.0.0.1:80@example.com/", "user name or password"), ("http://[::1/", "not valid")],
)  # fmt: skip
def test_bad_urls_are_refused(url: str, message: str, no_connections: list[Any]) -> None:
    with pytest.raises(FetchError, match=message):
        fetch(url)
    assert no_connections == []


def test_tool_refuses_loopback_by_default(server: Server) -> None:
    assert builtin("fetch_url") is fetch_url and fetch_url.risk == "dangerous"
    with pytest.raises(BlockedAddressError, match="loopback"):
        fetch_url.invoke({"url": server.url()}, ToolContext())
    assert server.requests == []


# -- with the test allowance on: real fetches from the local server ---------------------------


def test_html_page_becomes_readable_text(server: Server) -> None:
    ctx = ToolContext(settings={"fetch_url": {"allow_loopback": True}})
    text = fetch_url.invoke({"url": server.url("/page")}, ctx)
    assert text.startswith(f"URL: {server.url('/page')}\nStatus: 200\nContent-Type: text/html\n")
    assert "Title: Local & Test Page" in text
    assert "The quick brown fox jumps over the lazy dog." in text
    assert "do not show" not in text and "color: red" not in text and "<p>" not in text
    assert server.requests == [("/page", f"127.0.0.1:{server.port}")]


def test_module_switch_also_allows_loopback(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(netguard, "ALLOW_LOOPBACK", True)
    assert "plain text, café" in fetch(server.url("/plain")).text


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/plain", "plain text, café\n"), ("/latin1", "café"), ("/json", '{"answer": 42}'),
     ("/deflate", "deflated text " * 100), ("/deflate?raw=1", "deflated text " * 100)],
)  # fmt: skip
def test_text_and_json_come_back_as_they_are(server: Server, path: str, expected: str) -> None:
    page = fetch(server.url(path), LOOPBACK)
    assert page.text == expected and not page.truncated


@pytest.mark.parametrize(
    ("path", "message"),
    [("/png", "image/png, binary content"), ("/untyped-binary", "binary content"),
     ("/nul-text", "binary content"), ("/br", "unsupported content encoding 'br'"),
     ("/missing", "HTTP 404 Not Found")],
)  # fmt: skip
def test_binary_bodies_and_errors_are_refused(server: Server, path: str, message: str) -> None:
    with pytest.raises(FetchError, match=message):
        fetch(server.url(path), LOOPBACK)


def test_redirects_are_followed_by_hand_up_to_the_limit(server: Server) -> None:
    page = fetch(server.url("/redirect/5"), LOOPBACK)
    assert page.url == server.url("/page") and "quick brown fox" in page.text
    assert [path for path, _ in server.requests] == [
        "/redirect/5", "/redirect/4", "/redirect/3", "/redirect/2", "/redirect/1", "/page"
    ]  # fmt: skip
    server.requests.clear()
    with pytest.raises(FetchError, match="too many redirects"):
        fetch(server.url("/redirect/6"), LOOPBACK)
    assert len(server.requests) == 6
    with pytest.raises(FetchError, match="too many redirects"):
        fetch(server.url("/redirect/2"), FetchSettings(allow_loopback=True, max_redirects=1))


@pytest.mark.parametrize(
    "target",
    ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[::ffff:127.0.0.1]:{port}/page",
     "http://0.0.0.0:{port}/page", "file:///etc/passwd", "http://user@127.0.0.1:{port}/page"],
)  # fmt: skip
def test_every_redirect_hop_is_checked(server: Server, target: str) -> None:
    location = target.replace("{port}", str(server.port))
    with pytest.raises(ToolError):
        fetch(server.url("/to?url=" + location), LOOPBACK)
    assert len(server.requests) == 1  # the first hop only; the target was never requested


@pytest.mark.parametrize("location", ["http://127.0.0.1:{port}/page", "http://2130706433:{port}/page",
                                      "http://localhost:{port}/page", "http://[::1]:{port}/page"])  # fmt: skip
def test_public_page_redirecting_to_loopback_is_stopped(
    server: Server, location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def resolver(host: str, port: int, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host == "public.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port))]
        return socket.getaddrinfo(host, port, **kwargs)

    monkeypatch.setattr(netguard, "resolver", resolver)
    seen: list[httpx.Request] = []

    def public_site(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            302, headers={"Location": location.replace("{port}", str(server.port))}
        )

    with pytest.raises(BlockedAddressError):
        fetch("https://public.example/start", transport=httpx.MockTransport(public_site))
    assert len(seen) == 1 and server.requests == []
    # The request went to the checked address, named by Host header and TLS server name.
    assert seen[0].url.host == "93.184.215.14"
    assert seen[0].headers["Host"] == "public.example"
    assert seen[0].extensions["sni_hostname"] == "public.example"


def test_dns_rebinding_is_defeated_by_pinning(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []

    def rebinding(host: str, port: int, **kwargs: Any) -> list[tuple[Any, ...]]:
        lookups.append(host)
        if len(lookups) > 1:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    real_getaddrinfo = socket.getaddrinfo

    def no_name_lookups(host: Any, *args: Any, **kwargs: Any) -> Any:
        assert host != "rebind.example", "httpx resolved the name itself"
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(netguard, "resolver", rebinding)
    monkeypatch.setattr(socket, "getaddrinfo", no_name_lookups)
    page = fetch(f"http://rebind.example:{server.port}/plain", LOOPBACK)
    assert page.text == "plain text, café\n"
    assert lookups == ["rebind.example"]
    assert server.requests == [("/plain", f"rebind.example:{server.port}")]


def test_five_megabyte_body_is_cut_at_the_cap(server: Server) -> None:
    page = fetch(server.url("/big"), LOOPBACK)
    assert page.truncated and len(page.text) == 2_000_000
    assert page.render().endswith("[… body truncated at the byte limit]")
    small = fetch(server.url("/big"), FetchSettings(allow_loopback=True, max_bytes=1000))
    assert small.text == "x" * 1000


def test_gzip_bomb_is_capped_on_the_decoded_size(server: Server) -> None:
    tracemalloc.start()
    try:
        started = time.monotonic()
        page = fetch(server.url("/bomb"), LOOPBACK)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert page.truncated and page.text == "a" * 2_000_000
    assert peak < 30_000_000  # the 50 MB the bomb expands to is never held
    assert elapsed < HANG_BOUND


def test_silent_server_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(FetchError, match="did not answer within 1 s"):
            fetch(f"http://127.0.0.1:{port}/", FetchSettings(timeout=1, allow_loopback=True))
        assert time.monotonic() - started < HANG_BOUND  # it never answers
        connection, _ = listener.accept()  # it was accepted (by the kernel) and never answered
        connection.close()


def test_slow_drip_is_stopped_at_the_total_timeout(server: Server) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match="longer than 1 s"):
        fetch(server.url("/drip"), FetchSettings(timeout=1, allow_loopback=True))
    assert time.monotonic() - started < HANG_BOUND  # the drip lasts 20 s


def test_a_drip_then_a_stall_is_stopped_at_the_total_timeout(server: Server) -> None:
    """httpx's read timeout restarts with each byte: a server that sent a few bytes of the
    body and then stalled held a fetch for about twice its timeout ("stopped sending within")
    before the fetch's one deadline covered the body as well."""
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"took longer than 1 s \(.* was still sending\)"):
        fetch(server.url("/drip-stall"), FetchSettings(timeout=1, allow_loopback=True))
    assert time.monotonic() - started < HANG_BOUND  # the server stalls for a minute


def test_one_deadline_covers_every_redirect_hop(server: Server) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match="did not answer within 1 s"):
        fetch(
            server.url("/slow-hop"),
            FetchSettings(timeout=1, max_redirects=50, allow_loopback=True),
        )
    assert time.monotonic() - started < HANG_BOUND  # 50 hops of 0.4 s would take 20 s
    assert 2 <= len(server.requests) < 50


def test_cancel_stops_a_stalled_body(server: Server) -> None:
    cancel = threading.Event()
    threading.Timer(0.6, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(ToolCancelledError):
        fetch(server.url("/drip-stall"), FetchSettings(timeout=60, allow_loopback=True), cancel)
    assert time.monotonic() - started < HANG_BOUND


def test_headers_sent_a_byte_at_a_time_are_stopped_at_the_total_timeout(server: Server) -> None:
    """httpx's read timeout restarts with every byte; the fetch's own deadline does not."""
    started = time.monotonic()
    with pytest.raises(FetchError, match="did not answer within 1 s"):
        fetch(server.url("/slow-headers"), FetchSettings(timeout=1, allow_loopback=True))
    assert time.monotonic() - started < HANG_BOUND  # the server would go on for a minute


def test_cancel_stops_a_fetch_waiting_for_headers(server: Server) -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(ToolCancelledError):
        fetch(server.url("/slow-headers"), FetchSettings(timeout=60, allow_loopback=True), cancel)
    assert time.monotonic() - started < HANG_BOUND


def test_proxy_variables_are_ignored(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    proxy_state = Server(port=proxy.server_address[1])
    proxy.RequestHandlerClass = make_handler(proxy_state)
    thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy_state.port}")
        monkeypatch.setenv("NO_PROXY", "")
        page = fetch(server.url("/plain"), LOOPBACK)
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join()
    assert page.text == "plain text, café\n"
    assert proxy_state.requests == [] and len(server.requests) == 1


def test_cancel_stops_a_fetch(server: Server) -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(ToolCancelledError):
        fetch(server.url("/drip"), FetchSettings(timeout=60, allow_loopback=True), cancel)
    assert time.monotonic() - started < HANG_BOUND  # the drip lasts 20 s


def test_settings_are_validated() -> None:
    with pytest.raises(ToolError, match="unknown fetch_url settings"):
        FetchSettings.from_settings({"timout": 1})
    with pytest.raises(ToolError, match="timeout must be a number"):
        FetchSettings.from_settings({"timeout": "soon"})
    with pytest.raises(ToolError, match="allow_loopback must be true or false"):
        FetchSettings.from_settings({"allow_loopback": "yes"})


def test_html_to_text_falls_back_to_all_text_for_tiny_pages() -> None:
    assert html_to_text("<html><body><p>one</p><p>two</p><script>x()</script></body></html>") == (
        "one\ntwo"
    )
    assert html_to_text("<title>T</title><div>only</div>") == "Title: T\n\nonly"


@pytest.mark.parametrize("url", ["http://xn--127-0.0.0.1/", "http://xn--a.com/"])
def test_an_invalid_idna_host_is_a_fetch_error(url: str) -> None:
    with pytest.raises(FetchError, match="invalid host name"):
        fetch(url)
