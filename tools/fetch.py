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
import html
import re
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from tools import netguard
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
        rb"<meta[^>]+charset=[\"']?([\w.:-]+)", head[:4096], re.IGNORECASE
    )
    if match:
        name = match.group(1)
        name = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        try:
            return codecs.lookup(name).name
        except LookupError:
            pass
    return "utf-8"


def html_to_text(document: str, url: str = "") -> str:
    """Readable text of an HTML page: title first, then the main content (or all text)."""
    import trafilatura

    match = re.search(r"<title[^>]*>(.*?)</title>", document, re.IGNORECASE | re.DOTALL)
    title = " ".join(html.unescape(match.group(1)).split()) if match else ""
    text = trafilatura.extract(
        document, url=url or None, include_comments=False, include_tables=True, favor_recall=True
    )
    if not text:
        text = _all_text(document)
    return f"Title: {title}\n\n{text}" if title else str(text)


_BLOCKS = ("p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "section",
           "article", "header", "footer", "blockquote", "table", "ul", "ol", "dd", "dt")  # fmt: skip


def _all_text(document: str) -> str:
    import lxml.html  # type: ignore[import-untyped]

    try:
        root = lxml.html.document_fromstring(document)
    except (ValueError, lxml.etree.ParserError):
        return ""
    for bad in root.xpath("//script|//style|//noscript|//template"):
        bad.drop_tree()
    for element in root.iter(*_BLOCKS):
        element.tail = "\n" + (element.tail or "")
    lines = (" ".join(line.split()) for line in str(root.text_content()).splitlines())
    return "\n".join(line for line in lines if line)


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


def _read(response: httpx.Response, settings: FetchSettings, deadline: float,
          cancel_event: threading.Event | None) -> tuple[bytes, bool]:  # fmt: skip
    decoder = _Decoder(response.headers.get("content-encoding", ""))
    body = bytearray()
    raw_budget = settings.max_bytes + (1 << 20)
    for chunk in response.iter_raw():  # as received: a chunk size would buffer (and delay checks)
        if cancel_event is not None and cancel_event.is_set():
            raise ToolCancelledError("the fetch was cancelled")
        if time.monotonic() > deadline:
            raise FetchError(f"the fetch took longer than {settings.timeout:g} s")
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

    ``transport`` replaces httpx's network transport (tests use ``httpx.MockTransport``).

    Raises:
        netguard.BlockedAddressError: a hop leads to a non-public address.
        FetchError: bad URL, HTTP error status, timeout, too many redirects, binary content.
    """
    settings = settings or FetchSettings()
    deadline = time.monotonic() + settings.timeout
    try:
        current = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchError(f"the URL {url[:200]!r} is not valid: {exc}") from None
    for _hop in range(settings.max_redirects + 1):
        _check_url(current)
        port = current.port or (443 if current.scheme == "https" else 80)
        host = current.raw_host.decode("ascii")
        ip = netguard.resolve(host, port, allow_loopback=settings.allow_loopback)
        remaining = max(0.001, deadline - time.monotonic())
        request = httpx.Request(
            "GET",
            current.copy_with(host=str(ip), userinfo=b"", fragment=None),
            headers={"Host": current.netloc.decode("ascii"), "User-Agent": USER_AGENT,
                     "Accept-Encoding": "gzip, deflate", "Accept": "text/html,text/*;q=0.9,*/*;q=0.5"},
            extensions={"sni_hostname": host,
                        "timeout": httpx.Timeout(min(settings.timeout, remaining)).as_dict()},
        )  # fmt: skip
        # A client per hop: no connection (and no TLS session checked for another name) is reused.
        with httpx.Client(trust_env=False, follow_redirects=False, transport=transport) as client:
            try:
                response = _send_within(client, request, deadline, cancel_event)
            except httpx.TimeoutException:
                raise FetchError(
                    f"{current} did not answer within {settings.timeout:g} s"
                ) from None
            except httpx.HTTPError as exc:
                raise FetchError(f"could not fetch {current}: {exc}") from None
            try:
                location = response.headers.get("location")
                if response.status_code in REDIRECTS and location:
                    try:
                        current = current.join(location)
                    except Exception as exc:  # InvalidURL, or an IDNA error from a bad label
                        raise FetchError(
                            f"bad redirect location {location[:200]!r}: {exc}"
                        ) from None
                    continue
                return _page(response, str(current), settings, deadline, cancel_event)
            finally:
                response.close()
    raise FetchError(f"too many redirects (more than {settings.max_redirects}); last: {current}")


def _send_within(
    client: httpx.Client,
    request: httpx.Request,
    deadline: float,
    cancel_event: threading.Event | None,
) -> httpx.Response:
    """``client.send(request, stream=True)``, but bounded by ``deadline`` and the cancel event.

    httpx's timeouts apply to each read, so a server that sends its headers a byte at a time
    would hold the call for as long as it likes. The request runs in a helper thread; when the
    deadline passes (or the run is cancelled) the client is closed, which ends the helper's
    connection, and the caller gets the error at once.

    Raises:
        httpx.TimeoutException: the deadline passed before the headers were in.
        ToolCancelledError: the run was cancelled meanwhile.
        httpx.HTTPError: as ``client.send``.
    """
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["response"] = client.send(request, stream=True)
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    helper = threading.Thread(target=send, name="fetch-send", daemon=True)
    helper.start()
    while helper.is_alive():
        helper.join(0.05)
        if cancel_event is not None and cancel_event.is_set():
            client.close()
            raise ToolCancelledError("the fetch was cancelled")
        if helper.is_alive() and time.monotonic() > deadline:
            client.close()
            raise httpx.ReadTimeout("the headers did not arrive in time", request=request)
    if "error" in outcome:
        raise outcome["error"]
    response: httpx.Response = outcome["response"]
    return response


def _page(response: httpx.Response, url: str, settings: FetchSettings, deadline: float,
          cancel_event: threading.Event | None) -> Page:  # fmt: skip
    status = response.status_code
    if status >= 400:
        raise FetchError(f"HTTP {status} {response.reason_phrase} from {url}")
    content_type = response.headers.get("content-type", "")
    mime = content_type.split(";")[0].strip().lower()
    if mime and _kind(mime, b"") == "binary":  # refused before the body is read
        raise FetchError(f"{url} is {mime}, binary content; fetch_url reads HTML and text only")
    try:
        body, truncated = _read(response, settings, deadline, cancel_event)
    except httpx.TimeoutException:
        raise FetchError(f"{url} stopped sending within {settings.timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"the body of {url} could not be read: {exc}") from None
    kind = _kind(mime, body)
    if kind == "binary" or b"\x00" in body[:8192]:
        raise FetchError(f"{url} sent binary content; fetch_url reads HTML and text only")
    text = body.decode(_charset(content_type, body), errors="replace")
    if kind == "html":
        text = html_to_text(text, url)
    return Page(
        url=url, status=status, content_type=mime or "(none)", text=text, truncated=truncated
    )


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
