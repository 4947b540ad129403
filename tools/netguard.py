"""The SSRF guard: which addresses a network tool may connect to.

Only globally routable addresses pass. :func:`check_address` refuses, with a reason:
unspecified (``0.0.0.0``, ``::``), loopback, private (10/8, 172.16/12, 192.168/16),
link-local (169.254/16 with the cloud metadata service, fe80::/10), carrier-grade NAT
(100.64/10), unique-local (fc00::/7), site-local, multicast, reserved and documentation
ranges, and IPv6 forms that embed an IPv4 address (IPv4-mapped ``::ffff:127.0.0.1``,
IPv4-compatible, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo), judged by the address
they carry. Anything else must also be ``is_global``.

:func:`resolve` turns a URL's host into checked addresses: a literal address is parsed (legacy
spellings such as ``2130706433``, ``0x7f000001``, ``0177.0.0.1`` and ``127.1`` are read the
way ``inet_aton`` and the resolver read them, so they are judged as the address they mean);
a name is resolved once with ``getaddrinfo`` and **every** address it returns must pass. The
caller then connects to the returned address, never to the name again (DNS rebinding).

The loopback allowance exists for tests only: pass ``allow_loopback=True`` (the ``fetch_url``
tool reads it from its ``allow_loopback`` setting) or set :data:`ALLOW_LOOPBACK`. It admits
127.0.0.0/8 and ``::1`` only; every other refusal stays. It is off by default.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from typing import Any

from tools.base import ToolError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_LOOPBACK = False
"""Tests only: admit loopback addresses (see the module docstring). Never set in production."""

Resolver = Callable[..., list[tuple[Any, ...]]]
resolver: Resolver = socket.getaddrinfo
"""The name resolver (``socket.getaddrinfo``); tests replace it to simulate DNS answers."""


class BlockedAddressError(ToolError):
    """The destination is not a public address; the message names the address and the range."""


_V4_REFUSED: list[tuple[str, str]] = [
    ("0.0.0.0/8", "the unspecified 'this network' range"),
    ("10.0.0.0/8", "a private range"),
    ("100.64.0.0/10", "carrier-grade NAT (shared address space)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (includes the cloud metadata service 169.254.169.254)"),
    ("172.16.0.0/12", "a private range"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "a documentation range"),
    ("192.88.99.0/24", "the 6to4 relay anycast range"),
    ("192.168.0.0/16", "a private range"),
    ("198.18.0.0/15", "the benchmarking range"),
    ("198.51.100.0/24", "a documentation range"),
    ("203.0.113.0/24", "a documentation range"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
]
_V6_REFUSED: list[tuple[str, str]] = [
    ("::/128", "the unspecified address"),
    ("::1/128", "loopback"),
    ("100::/64", "the discard-only range"),
    ("2001:db8::/32", "a documentation range"),
    ("fc00::/7", "unique-local (private)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
    ("::ffff:0:0:0/96", "an IPv4-translated address (SIIT), which may reach a private host"),
    ("64:ff9b:1::/48", "a local-use NAT64 prefix, which may reach a private IPv4 host"),
]
_V4_NETS = [(ipaddress.IPv4Network(n), why) for n, why in _V4_REFUSED]
_V6_NETS = [(ipaddress.IPv6Network(n), why) for n, why in _V6_REFUSED]
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_V4_COMPAT = ipaddress.IPv6Network("::/96")


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or (ip in _V4_COMPAT and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def is_loopback(ip: IPAddress) -> bool:
    """127.0.0.0/8 or ``::1`` (not the IPv4-mapped forms: those stay refused)."""
    return (
        ip.is_loopback if isinstance(ip, ipaddress.IPv4Address) else ip == ipaddress.IPv6Address(1)
    )


def refusal(ip: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why ``ip`` may not be reached, or ``None`` when it is a public address."""
    if allow_loopback and is_loopback(ip):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "an IPv6 address with a scope (zone) is link-local"
        inner = _embedded_v4(ip)
        if inner is not None:
            why = refusal(inner)
            return f"it embeds the IPv4 address {inner}, which is {why}" if why else None
        for net6, why in _V6_NETS:
            if ip in net6:
                return why
    else:
        for net, why in _V4_NETS:
            if ip in net:
                return why
    if not ip.is_global:
        return "not a globally routable address"
    return None


_LEGACY_V4 = re.compile(r"(?:0[xX][0-9a-fA-F]*|[0-9]+)(?:\.(?:0[xX][0-9a-fA-F]*|[0-9]+)){0,3}")


def parse_literal(host: str) -> IPAddress | None:
    """The address ``host`` spells, in any form the resolver accepts, or ``None`` for a name.

    Accepts dotted quads, IPv6 (with or without brackets), and the legacy IPv4 forms that
    ``inet_aton`` reads: decimal (``2130706433``), hex (``0x7f000001``), octal (``0177.0.0.1``)
    and short forms (``127.1``).
    """
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _LEGACY_V4.fullmatch(text.rstrip(".")):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text.rstrip(".")))
        except OSError:
            return None
    return None


def check_address(ip: IPAddress, host: str, *, allow_loopback: bool = False) -> None:
    """Raise :class:`BlockedAddressError` unless ``ip`` (what ``host`` means) is public."""
    why = refusal(ip, allow_loopback=allow_loopback or ALLOW_LOOPBACK)
    if why is not None:
        shown = host if host == str(ip) else f"{host!r} ({ip})"
        raise BlockedAddressError(
            f"refused to connect to {shown}: {why}. fetch_url only reaches public internet "
            "addresses"
        )


def resolve(host: str, port: int, *, allow_loopback: bool = False) -> IPAddress:
    """Resolve ``host`` once, check every address, and return the one to connect to.

    Raises:
        BlockedAddressError: any address ``host`` resolves to is not public (all must pass:
            a name with one private answer is refused, not tried elsewhere).
        ToolError: the name does not resolve.
    """
    literal = parse_literal(host)
    if literal is not None:
        check_address(literal, host, allow_loopback=allow_loopback)
        return literal
    if not host or len(host) > 253:
        raise ToolError(f"the host name {host[:80]!r} is not valid")
    try:
        answers = resolver(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ToolError(f"cannot resolve the host {host!r}: {exc}") from None
    addresses: list[IPAddress] = []
    for family, *_, sockaddr in answers:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        check_address(ip, host, allow_loopback=allow_loopback)
        addresses.append(ip)
    if not addresses:
        raise ToolError(f"the host {host!r} has no IPv4 or IPv6 address")
    return addresses[0]
