"""The ``fetch_url`` tool: read a public web page as text, behind an SSRF guard.

Each hop of a fetch (the URL, then every redirect, at most ``max_redirects``):

1. the URL must be ``http`` or ``https``, with a host and without credentials;
2. the host is resolved once and every address checked by :mod:`tools.netguard`;
3. the request goes to the checked address itself (the URL's host is replaced by the IP),
   with the ``Host`` header and the TLS server name (``sni_hostname``, also used to verify
   the certificate) set to the original host, so a second DNS answer is never used;
4. redirects are not followed by httpx but here, and the next URL goes through step 1 again.

httpx runs with ``trust_env=False``: proxy variables, ``.netrc`` and the like from the
environment are ignored. The body is read raw and decompressed here, chunk by chunk with a
bound on the output (``gzip`` and ``deflate`` only), so the cap on the *decoded* body holds for
a gzip bomb too; past the cap the body is cut and the text says so. HTML is turned into
readable text (trafilatura, with a plain lxml fallback); other text and JSON are returned as
they are; binary content (images, PDFs, archives…) is refused before its body is read.

Settings (``ctx.settings_for("fetch_url")``): ``timeout`` (15 s, for the whole fetch),
``max_bytes`` (2,000,000 decoded bytes), ``max_redirects`` (5), ``allow_loopback`` (False;
tests only, see :mod:`tools.netguard`).
"""

from __future__ import annotations

import codecs
import contextlib
import re
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from tools import _html, netguard
from tools.base import ToolCancelledError, ToolContext, ToolError, tool

REDIRECTS = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "qwq-agent/0.1 (fetch_url; +https://pypi.org/project/qwq-agent/)"
_TEXT_TYPES = frozenset(
    {
        "application/json", "application/xml", "application/javascript", "application/ecmascript",
        "application/x-javascript", "application/x-yaml", "application/yaml", "application/toml",
        "application/x-ndjson", "application/sql", "application/graphql",
    }
)  # fmt: skip
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
EXTRACT_GRACE = 2.0
"""Seconds the text extraction of a page gets even when the fetch used its whole timeout."""


class FetchError(ToolError):
    """The page could not be fetched or read; the message says why."""


@dataclass(frozen=True)
class FetchSettings:
    """Limits of one fetch; see the module docstring."""

    timeout: float = 15.0
    max_bytes: int = 2_000_000
    max_redirects: int = 5
    allow_loopback: bool = False

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> FetchSettings:
        unknown = sorted(set(settings) - set(cls.__dataclass_fields__))
        if unknown:
            raise ToolError(f"unknown fetch_url settings {unknown}")
        values = dict(settings)
        for name in ("timeout", "max_bytes", "max_redirects"):
            value = values.get(name, 1)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ToolError(f"fetch_url setting {name} must be a number >= 0, got {value!r}")
        if not isinstance(values.get("allow_loopback", False), bool):
            raise ToolError("fetch_url setting allow_loopback must be true or false")
        return cls(**values)


@dataclass(frozen=True)
class Page:
    """What a fetch brought back."""

    url: str
    """The final URL, after redirects."""
    status: int
    content_type: str
    text: str
    truncated: bool
    """The body was longer than ``max_bytes`` and was cut."""

    def render(self) -> str:
        head = f"URL: {self.url}\nStatus: {self.status}\nContent-Type: {self.content_type}\n\n"
        tail = "\n[… body truncated at the byte limit]" if self.truncated else ""
        return head + self.text + tail


class _Decoder:
    """Content-Encoding decoding with a bound on what each call may produce."""

    def __init__(self, encoding: str) -> None:
        name = encoding.strip().lower()
        self.deflate = name == "deflate"
        if name in ("", "identity"):
            self.z: Any = None
        elif name in ("gzip", "x-gzip"):
            self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.deflate:
            self.z = zlib.decompressobj()
        else:
            raise FetchError(
                f"the server sent the body with the unsupported content encoding {encoding!r}"
            )

    def feed(self, data: bytes, room: int) -> bytes:
        """Decode ``data``; return at most ``room + 1`` bytes (one more means: over the cap)."""
        if self.z is None:
            return data[: room + 1]
        try:
            out = self.z.decompress(data, room + 1)
        except zlib.error:
            if not self.deflate:
                raise FetchError("the compressed body is corrupt") from None
            self.deflate, self.z = False, zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate
            return self.feed(data, room)
        self.deflate = False
        while self.z.unconsumed_tail and len(out) <= room:
            out += self.z.decompress(self.z.unconsumed_tail, room + 1 - len(out))
        return bytes(out)


def _check_url(url: httpx.URL) -> None:
    try:
        url.host  # noqa: B018 (decoding an IDNA host can fail: say so, as for any bad URL)
    except Exception as exc:
        raise FetchError(f"the URL {str(url)[:200]!r} has an invalid host name: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise FetchError(
            f"only http and https URLs can be fetched, not {url.scheme or 'a relative'!r} URLs"
        )
    if not url.host:
        raise FetchError(f"the URL {str(url)[:200]!r} has no host")
    if url.userinfo:
        raise FetchError("URLs with a user name or password are not fetched; remove them")


def _charset(content_type: str, head: bytes) -> str:
    match = re.search(r"charset=[\"']?([\w.:-]+)", content_type, re.IGNORECASE) or re.search(
        rb"<meta[^<>]+charset=[\"']?([\w.:-]+)", head[:4096], re.IGNORECASE
    )
    if match:
        name = match.group(1)
        name = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        try:
            return codecs.lookup(name).name
        except LookupError:
            pass
    return "utf-8"


def html_to_text(
    document: str,
    url: str = "",
    *,
    deadline: float | None = None,
    cancel_event: threading.Event | None = None,
) -> str:
    """Readable text of an HTML page: title first, then the main content (or all text).

    Linear in the page's size and bounded (see :mod:`tools._html`): the page is cut to
    2,000,000 characters and 30,000 tags, and the main-content extraction is given up for the
    page's plain text at ``deadline`` (a ``time.monotonic()`` value; default 10 s from now).

    Raises:
        ToolCancelledError: ``cancel_event`` was set during the extraction.
    """
    bounded = _html.bound_html(document)
    title = _html.page_title(bounded)
    try:
        text = _html.extract_text(bounded, url, deadline=deadline, cancel=cancel_event)
    except InterruptedError:
        raise ToolCancelledError("the fetch was cancelled") from None
    return f"Title: {title}\n\n{text}" if title else text


def _kind(mime: str, head: bytes) -> str:
    """``html``, ``text`` or ``binary``."""
    if mime in _HTML_TYPES:
        return "html"
    if mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith(("+json", "+xml")):
        return "text"
    if mime:
        return "binary"
    start = head[:512].lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html")):
        return "html"
    return "binary" if b"\x00" in head[:8192] else "text"


def _read(response: httpx.Response, settings: FetchSettings,
          abandoned: threading.Event) -> tuple[bytes, bool]:  # fmt: skip
    decoder = _Decoder(response.headers.get("content-encoding", ""))
    body = bytearray()
    raw_budget = settings.max_bytes + (1 << 20)
    for chunk in response.iter_raw():  # as received: a chunk size would buffer (and delay checks)
        if abandoned.is_set():  # the caller has given up (deadline or cancel): stop reading
            raise FetchError("the fetch was abandoned")
        raw_budget -= len(chunk)
        body += decoder.feed(chunk, settings.max_bytes - len(body))
        if len(body) > settings.max_bytes or raw_budget < 0:
            return bytes(body[: settings.max_bytes]), True
    return bytes(body), False


def fetch(
    url: str,
    settings: FetchSettings | None = None,
    cancel_event: threading.Event | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
) -> Page:
    """Fetch ``url`` behind the guard and return its text; see the module docstring.

    One deadline, ``settings.timeout`` from the call, bounds the whole fetch: resolving,
    connecting, the headers and the body of every hop, redirects included (httpx's own
    timeouts restart with each byte, so a server that drips would otherwise hold the call).
    The text extraction of an HTML page gets what is left, and at least ``EXTRACT_GRACE``.
    ``transport`` replaces httpx's network transport (tests use ``httpx.MockTransport``).

    Raises:
        netguard.BlockedAddressError: a hop leads to a non-public address.
        FetchError: bad URL, HTTP error status, timeout, too many redirects, binary content.
        ToolCancelledError: ``cancel_event`` was set meanwhile.
    """
    settings = settings or FetchSettings()
    deadline = time.monotonic() + settings.timeout
    try:
        current = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchError(f"the URL {url[:200]!r} is not valid: {exc}") from None
    for _hop in range(settings.max_redirects + 1):
        _check_url(current)
        reply = _Hop(current, settings, deadline, transport).run_within(cancel_event)
        if reply.location is None:
            return _page(reply, str(current), settings, deadline, cancel_event)
        try:
            current = current.join(reply.location)
        except Exception as exc:  # InvalidURL, or an IDNA error from a bad label
            raise FetchError(f"bad redirect location {reply.location[:200]!r}: {exc}") from None
    raise FetchError(f"too many redirects (more than {settings.max_redirects}); last: {current}")


@dataclass(frozen=True)
class _Reply:
    """What one hop brought back: a redirect (``location``) or a page's raw body."""

    status: int
    content_type: str
    location: str | None = None
    body: bytes = b""
    truncated: bool = False


class _Hop:
    """One request of a fetch, run in a helper thread so that the fetch's deadline bounds all
    of it (resolving, connecting, headers, body); see :meth:`run_within`."""

    def __init__(self, url: httpx.URL, settings: FetchSettings, deadline: float,
                 transport: httpx.BaseTransport | None) -> None:  # fmt: skip
        self.url, self.settings, self.deadline, self.transport = url, settings, deadline, transport
        self.answered = False
        """The response headers are in (the body is being read)."""
        self.abandoned = threading.Event()
        self._client: httpx.Client | None = None
        self._outcome: _Reply | BaseException | None = None

    def run_within(self, cancel_event: threading.Event | None) -> _Reply:
        """Run the hop in a helper thread and wait for it until the deadline or a cancel; then
        the helper is abandoned (its client closed; its own httpx timeouts end it).

        Raises:
            FetchError: the deadline passed, or the hop failed (see :meth:`_exchange`).
            netguard.BlockedAddressError: the host is not public.
            ToolCancelledError: ``cancel_event`` was set meanwhile.
        """
        helper = threading.Thread(target=self._run, name="fetch-hop", daemon=True)
        helper.start()
        while helper.is_alive():
            helper.join(max(0.0, min(0.05, self.deadline - time.monotonic())))
            if cancel_event is not None and cancel_event.is_set():
                self._abandon()
                raise ToolCancelledError("the fetch was cancelled")
            if helper.is_alive() and time.monotonic() >= self.deadline:
                self._abandon()
                timeout = f"{self.settings.timeout:g} s"
                if self.answered:
                    raise FetchError(
                        f"the fetch took longer than {timeout} ({self.url} was still sending)"
                    )
                raise FetchError(f"{self.url} did not answer within {timeout}")
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        assert self._outcome is not None  # the helper ended: it left a reply or an error
        return self._outcome

    def _abandon(self) -> None:
        self.abandoned.set()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()

    def _run(self) -> None:
        try:
            self._outcome = self._exchange()
        except BaseException as exc:  # handed to the waiting caller
            self._outcome = exc

    def _exchange(self) -> _Reply:
        url, settings = self.url, self.settings
        port = url.port or (443 if url.scheme == "https" else 80)
        host = url.raw_host.decode("ascii")
        ip = netguard.resolve(host, port, allow_loopback=settings.allow_loopback)
        remaining = max(0.001, self.deadline - time.monotonic())
        request = httpx.Request(
            "GET",
            url.copy_with(host=str(ip), userinfo=b"", fragment=None),
            headers={"Host": url.netloc.decode("ascii"), "User-Agent": USER_AGENT,
                     "Accept-Encoding": "gzip, deflate", "Accept": "text/html,text/*;q=0.9,*/*;q=0.5"},
            extensions={"sni_hostname": host,
                        "timeout": httpx.Timeout(min(settings.timeout, remaining)).as_dict()},
        )  # fmt: skip
        # A client per hop: no connection (and no TLS session checked for another name) is reused.
        with httpx.Client(
            trust_env=False, follow_redirects=False, transport=self.transport
        ) as client:
            self._client = client
            try:
                response = client.send(request, stream=True)
            except httpx.TimeoutException:
                raise FetchError(f"{url} did not answer within {settings.timeout:g} s") from None
            except httpx.HTTPError as exc:
                raise FetchError(f"could not fetch {url}: {exc}") from None
            self.answered = True
            try:
                return self._reply(response)
            finally:
                response.close()

    def _reply(self, response: httpx.Response) -> _Reply:
        status, url = response.status_code, self.url
        content_type = response.headers.get("content-type", "")
        location = response.headers.get("location")
        if status in REDIRECTS and location:
            return _Reply(status, content_type, location=location)
        if status >= 400:
            raise FetchError(f"HTTP {status} {response.reason_phrase} from {url}")
        mime = content_type.split(";")[0].strip().lower()
        if mime and _kind(mime, b"") == "binary":  # refused before the body is read
            raise FetchError(f"{url} is {mime}, binary content; fetch_url reads HTML and text only")
        try:
            body, truncated = _read(response, self.settings, self.abandoned)
        except httpx.TimeoutException:
            raise FetchError(f"{url} stopped sending within {self.settings.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"the body of {url} could not be read: {exc}") from None
        return _Reply(status, content_type, body=body, truncated=truncated)


def _page(reply: _Reply, url: str, settings: FetchSettings, deadline: float,
          cancel_event: threading.Event | None) -> Page:  # fmt: skip
    mime = reply.content_type.split(";")[0].strip().lower()
    kind = _kind(mime, reply.body)
    if kind == "binary" or b"\x00" in reply.body[:8192]:
        raise FetchError(f"{url} sent binary content; fetch_url reads HTML and text only")
    text = reply.body.decode(_charset(reply.content_type, reply.body), errors="replace")
    if kind == "html":
        # What is left of the timeout, and at least EXTRACT_GRACE: a page read at the last
        # moment still gets its main text (or, if even that is late, its plain text).
        by = max(deadline, time.monotonic() + EXTRACT_GRACE)
        text = html_to_text(text, url, deadline=by, cancel_event=cancel_event)
    return Page(
        url=url, status=reply.status, content_type=mime or "(none)", text=text,
        truncated=reply.truncated,
    )  # fmt: skip


# timeout=None: fetch_url enforces its own deadline, then kills
@tool(risk="dangerous", capabilities={"sends_out", "untrusted_content"}, timeout=None)
def fetch_url(url: str, ctx: ToolContext) -> str:
    """Fetch a public web page (http or https) and return its readable text.

    HTML is reduced to its main text; JSON and other text come back as they are; binary
    files are refused. Private and local addresses are blocked. Limits: 15 s, 2 MB, 5
    redirects.

    Args:
        url: The full URL, e.g. "https://example.com/page".
    """
    settings = FetchSettings.from_settings(ctx.settings_for("fetch_url"))
    return fetch(url, settings, ctx.cancel_event).render()
