"""HTML to readable text in bounded, linear time, for pages nobody vouches for.

A web page is adversarial input. Three things once froze the agent on a crafted page:

* a title regex (``<title[^>]*>(.*?)</title>``) that rescans the rest of the page from every
  unclosed ``<title>``: quadratic, inside one C call that holds the GIL (2 MB: hours);
* libxml2 checking each attribute of a tag against all the earlier ones: a tag with tens of
  thousands of attributes is quadratic in lxml (and trafilatura parses several times);
* trafilatura's cost per element (tens of microseconds), unbounded in the element count.

So before anything parses a page, :func:`bound_html` makes one linear pass that keeps at most
:data:`MAX_HTML_CHARS` characters and :data:`MAX_MARKUP` tags (comments, doctypes and
processing instructions included; the page is cut at the first one over) and rewrites any tag
whose attribute text is longer than :data:`MAX_ATTR_CHARS` to its first
:data:`MAX_ATTRS` attributes, each value cut to :data:`MAX_ATTR_CHARS`. Every regex here is
possessive (no backtracking) and fails at the next ``<``, so each one is linear.
:func:`page_title` finds the title with two linear searches.

:func:`extract_text` then runs trafilatura in a helper thread and waits for it only until a
deadline (or a cancel): lxml releases the GIL while it parses and trafilatura is Python code,
so the caller (and the agent's own deadline) keeps running. Past the deadline the helper is
abandoned (its work is bounded by the limits above) and the plain lxml text of the page is
used instead, which takes milliseconds.
"""

from __future__ import annotations

import html
import re
import threading
import time
from typing import Any

MAX_HTML_CHARS = 2_000_000
"""Characters of a page that are parsed at all (the fetch body cap is 2,000,000 bytes)."""
MAX_MARKUP = 30_000
"""Tags, comments and declarations parsed; the page is cut before the first one over."""
MAX_ATTRS = 32
"""Attributes kept on a tag whose attribute text is longer than :data:`MAX_ATTR_CHARS`."""
MAX_ATTR_CHARS = 2_048
"""Attribute text of one tag kept as it is; also the cap on one value of a rewritten tag."""
MAX_TITLE_CHARS = 500
EXTRACT_SECONDS = 10.0
"""The longest trafilatura may take when the caller gives no earlier deadline."""

_MARKUP = re.compile(r"<[!?/A-Za-z]")
_TAG = re.compile(
    r"<(/?)([A-Za-z][^\s/>\"'<=]*+)"  # the name, then the attributes as HTML reads them:
    r"((?:\s++|/|[^\s\"'>/=<]++"  # spaces, slashes, names,
    r"|=\s*+(?:\"[^\"]*+\"|'[^']*+'|[^\s>\"']*+)"  # values (quoted ones may hold < and >),
    r"|[\"'=])*+)"  # stray quotes; a < outside quotes ends the tag
    r"(>?)"
)
_ATTR = re.compile(r"([^\s\"'>/=<]++)(?:\s*+=\s*+(?:\"([^\"]*+)\"|'([^']*+)'|([^\s>\"']*+)))?")
_TITLE_OPEN = re.compile(r"<title\b[^<>]*+>", re.IGNORECASE)
_TITLE_CLOSE = re.compile(r"</title\s*+>", re.IGNORECASE)


def bound_html(document: str) -> str:
    """``document`` cut and rewritten so that any HTML parser works on it in linear time.

    See the module docstring for the limits. Text, and tags within the limits, are left as
    they are, so a normal page comes back unchanged (up to the size limits).
    """
    document = document[:MAX_HTML_CHARS]
    parts: list[str] = []
    position = kept = 0
    count = 0
    length = len(document)
    while position < length:
        found = _MARKUP.search(document, position)
        if found is None:
            break
        count += 1
        if count > MAX_MARKUP:
            parts.append(document[kept : found.start()])
            return "".join(parts)
        tag = _TAG.match(document, found.start())
        if tag is None:  # a comment, doctype or processing instruction: libxml2 is linear
            position = found.end()
            continue
        if len(tag.group(3)) > MAX_ATTR_CHARS or len(tag.group(2)) > 64:
            parts += [document[kept : tag.start()], _rewrite(tag)]
            kept = tag.end()
        position = max(tag.end(), found.end())
    parts.append(document[kept:])
    return "".join(parts)


def _rewrite(tag: re.Match[str]) -> str:
    """A tag with its first :data:`MAX_ATTRS` attributes, values cut, always closed."""
    close, name, attributes = tag.group(1), tag.group(2), tag.group(3)
    if len(name) > 64:
        return "&lt;" + tag.group()[1:200]  # not a tag any parser knows: keep a little text
    kept: list[str] = []
    for attribute in _ATTR.finditer(attributes):
        if len(kept) == MAX_ATTRS:
            break
        key = attribute.group(1)[:64]
        value = next((v for v in attribute.group(2, 3, 4) if v is not None), None)
        if value is None:
            kept.append(key)
        else:
            value = value[:MAX_ATTR_CHARS].replace("&", "&amp;").replace('"', "&quot;")
            kept.append(f'{key}="{value}"')
    return f"<{close}{name}{''.join(' ' + a for a in kept)}>"


def page_title(document: str) -> str:
    """The text of the first ``<title>`` (to its ``</title>``, or the end), one line, capped."""
    opened = _TITLE_OPEN.search(document)
    if opened is None:
        return ""
    closed = _TITLE_CLOSE.search(document, opened.end())
    raw = document[opened.end() : closed.start() if closed else len(document)]
    title = " ".join(html.unescape(raw[: MAX_TITLE_CHARS * 8]).split())
    return title[:MAX_TITLE_CHARS]


def extract_text(
    document: str,
    url: str = "",
    *,
    deadline: float | None = None,
    cancel: threading.Event | None = None,
) -> str:
    """The main text of a bounded page (:func:`bound_html`), or all its text.

    trafilatura runs in a helper thread until ``deadline`` (a ``time.monotonic()`` value;
    default :data:`EXTRACT_SECONDS` from now); when it is late, fails or finds nothing, the
    plain text of the page (:func:`all_text`) is returned instead.

    Raises:
        InterruptedError: ``cancel`` was set while trafilatura ran.
    """
    limit = time.monotonic() + EXTRACT_SECONDS
    deadline = limit if deadline is None else min(deadline, limit)
    outcome: dict[str, Any] = {}

    def run() -> None:
        import trafilatura

        try:
            outcome["text"] = trafilatura.extract(
                document,
                url=url or None,
                include_comments=False,
                include_tables=True,
                favor_recall=True,
            )
        except Exception as exc:  # a parser failure means: use the plain text
            outcome["error"] = exc

    helper = threading.Thread(target=run, name="html-extract", daemon=True)
    helper.start()
    while helper.is_alive() and time.monotonic() < deadline:
        helper.join(min(0.05, max(0.0, deadline - time.monotonic())))
        if cancel is not None and cancel.is_set():
            raise InterruptedError("the page extraction was cancelled")
    text = outcome.get("text")
    return text if isinstance(text, str) and text else all_text(document)


_BLOCKS = ("p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "section",
           "article", "header", "footer", "blockquote", "table", "ul", "ol", "dd", "dt")  # fmt: skip


def all_text(document: str) -> str:
    """Every text of a bounded page, one line per block, without scripts and styles."""
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
