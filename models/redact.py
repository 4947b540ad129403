"""One redaction function for every configured credential: what is blanked, and where.

A server backend is configured with secrets: the API key, every ``--header`` value (an
``Authorization``, an ``X-Api-Key``, a team id) and a ``user:pass@`` in its URL. Any of them
can come back in text the user sees or that is saved: a server that echoes the request in its
error, an httpx exception that quotes the URL, the backend's display name, a transcript.

:func:`register` records a backend's secrets for the life of the process (in every form they
may be shown in: raw, percent-decoded, JSON-escaped, the Basic-auth base64, the token after
``Bearer``), and :func:`redact` blanks all of them out of any text. Transcripts, server
errors and display names go through :func:`redact`; URLs meant for display go through
:func:`redact_url`, which also drops the ``user:pass@`` part and query values whatever was
registered.

Values shorter than :data:`MIN_SECRET_CHARS` are not registered (blanking every ``"1"`` of a
transcript would hide nothing and ruin the text). A header value that is no secret
(``Accept: text/plain``) is blanked too: the client cannot tell which are.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

MIN_SECRET_CHARS = 4
HIDDEN = "[secret hidden]"

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()
"""Every registered form, longest first (so that a secret inside another goes with it)."""


def register(
    *,
    api_key: str | None = None,
    headers: Mapping[str, str] | None = None,
    url: str | None = None,
) -> None:
    """Record the secrets of one configuration so that :func:`redact` blanks them."""
    values: list[str] = []
    if api_key:
        values.append(api_key)
    for value in (headers or {}).values():
        values.append(value)
        scheme, _, token = value.partition(" ")
        if token and scheme.lower() in ("bearer", "basic", "token", "apikey"):
            values.append(token.strip())
            if scheme.lower() == "basic":
                values.extend(_basic_decoded(token.strip()))
    if url:
        values.extend(_url_secrets(url))
    add(values)


def add(values: Iterable[str]) -> None:
    """Record ``values`` (and the forms they may be shown in) as secrets."""
    global _secrets
    forms: set[str] = set()
    for value in values:
        value = value.strip()
        if len(value) < MIN_SECRET_CHARS:
            continue
        forms.update({value, unquote(value), json.dumps(value, ensure_ascii=False)[1:-1]})
        forms.add(json.dumps(value)[1:-1])
    with _lock:
        merged = set(_secrets) | {f for f in forms if len(f) >= MIN_SECRET_CHARS}
        _secrets = tuple(sorted(merged, key=lambda s: (-len(s), s)))


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by :data:`HIDDEN`."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, HIDDEN)
    return text


def redact_url(url: str) -> str:
    """``url`` for display: no ``user:pass@``, query values blanked, registered secrets too."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL a client could use: show nothing of it that might be secret
        return HIDDEN
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{HIDDEN}@{netloc.rpartition('@')[2]}"
    query = "&".join(f"{k}={HIDDEN}" for k, _ in parse_qsl(parts.query, True))
    return redact(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


def blank_settings(value: Any, key: str = "") -> Any:
    """A copy of settings (nested dicts and lists, as loaded from a config file) fit to show:
    every value under a ``headers`` table blanked, every URL through :func:`redact_url`."""
    if isinstance(value, Mapping):
        if key == "headers":
            return {k: HIDDEN for k in value}
        return {k: blank_settings(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [blank_settings(v, key) for v in value]
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return redact_url(value)
    return redact(value) if isinstance(value, str) else value


@contextmanager
def scrubbed() -> Iterator[None]:
    """Blank registered secrets out of the messages of an exception leaving the block (and of
    the exceptions chained to it), then let it go on."""
    try:
        yield
    except BaseException as exc:
        scrub(exc)
        raise


def scrub(exc: BaseException) -> None:
    """Redact the text arguments of ``exc`` and of its causes and contexts, in place."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        with suppress(AttributeError, TypeError):  # a few exception types fix their args
            current.args = tuple(redact(a) if isinstance(a, str) else a for a in current.args)
        current = current.__cause__ or current.__context__


def clear() -> None:
    """Forget every registered secret (for tests)."""
    global _secrets
    with _lock:
        _secrets = ()


def _url_secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found: list[str] = []
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    if userinfo:
        found.append(userinfo)
        user, _, password = userinfo.partition(":")
        found.extend(x for x in (user, password) if x)
        plain = f"{unquote(user)}:{unquote(password)}"
        found.append(base64.b64encode(plain.encode()).decode())
    found.extend(value for _, value in parse_qsl(parts.query, True) if value)
    return found


def _basic_decoded(token: str) -> list[str]:
    try:
        decoded = base64.b64decode(token, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return []
    user, _, password = decoded.partition(":")
    return [x for x in (decoded, password) if x] + ([user] if password else [])
