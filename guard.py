"""The SSRF guard: which URLs and addresses the service may ever fetch.

Used twice: at submission (sources.route refuses a bad URL with its reason: check_url_shape)
and at every fetch hop, where approve() is the hop's one decision: the URL's shape checked
and its host resolved once, every answer public. The Target it returns gives politeness its
host and the connection the approved address to pin (jobs/fetch/pinning.py), so a second
DNS answer cannot redirect it.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from errors import BlockedAddress

MAX_URL_LENGTH = 2048
# The schemes the service fetches, and the port each means when a URL names none (the one
# home of these ports: robots.txt origins and the frontier's Lua read them from here).
DEFAULT_PORTS = {"http": 80, "https": 443}
ALLOWED_SCHEMES = tuple(DEFAULT_PORTS)
# Names that always mean "this machine" or an internal network, whatever DNS says.
BLOCKED_NAME_SUFFIXES = ("localhost", ".localhost", ".local", ".internal", ".home.arpa")
# A host made only of digits, hex and dots is an IPv4 spelling (2130706433, 0x7f.1, 0177.0.0.1).
NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?$", re.IGNORECASE)
FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
# Lone surrogates (JSON can carry "\ud800") are not text: no UTF-8, so no Redis key, job id or request.
SURROGATES = re.compile("[\ud800-\udfff]")


def check_url_shape(url: str) -> SplitResult:
    """Refuse a URL whose spelling alone is unsafe or ambiguous; return its parts."""
    if len(url) > MAX_URL_LENGTH:
        raise BlockedAddress(f"URL is longer than {MAX_URL_LENGTH} characters")
    if FORBIDDEN_CHARS.search(url):
        raise BlockedAddress("URL contains whitespace, control characters or a backslash")
    if SURROGATES.search(url):
        raise BlockedAddress("URL is not valid Unicode (it contains a lone surrogate)")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname or ""
    except ValueError as exc:  # e.g. an unclosed or invalid [IPv6] literal
        raise BlockedAddress(f"malformed URL: {exc}") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise BlockedAddress(f"scheme {parts.scheme or '(none)'!r} is not allowed; use http or https")
    if "@" in parts.netloc:
        raise BlockedAddress("URLs with a user name or password are not allowed")
    _check_port(parts)
    check_host(hostname)
    return parts


def _check_port(parts: SplitResult) -> None:
    try:
        port = parts.port
    except ValueError as exc:
        raise BlockedAddress(f"invalid port: {exc}") from None
    if port == 0:
        raise BlockedAddress("invalid port: 0")


def check_host(host: str) -> None:
    """Refuse empty hosts, local names, odd numeric spellings and non-public IP literals."""
    host = ascii_host(host).lower().rstrip(".")
    if not host:
        raise BlockedAddress("URL has no host")
    if host.endswith(BLOCKED_NAME_SUFFIXES):
        raise BlockedAddress(f"host {host!r} names a local or internal network")
    literal = _ip_literal(host)
    if literal is not None:
        check_address(literal)


def ascii_host(host: str) -> str:
    """The host as DNS and the fetcher will see it: IDNA maps look-alikes (fullwidth
    digits, circled numbers) to ASCII, so "１２７.0.0.1" is judged as 127.0.0.1."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise BlockedAddress(f"invalid international host name {host!r}") from None


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise BlockedAddress(f"invalid IPv6 address {host!r}") from None
    if not NUMERIC_HOST.match(host):
        return None
    try:
        return ipaddress.IPv4Address(host)
    except ValueError:
        raise BlockedAddress(f"ambiguous numeric host {host!r}; write IPv4 as a.b.c.d") from None


def check_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | str) -> None:
    """Refuse every address that is not a public unicast one."""
    ip = ipaddress.ip_address(ip)
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        return check_address(embedded)
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        raise BlockedAddress(f"address {ip} is not public (loopback, private, link-local or reserved)")


def _embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address hidden in an IPv4-mapped, 6to4 or NAT64 IPv6 address."""
    if ip.version != 6:
        return None
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip in ipaddress.IPv6Network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def resolve_public(host: str, port: int) -> str:
    """Resolve host once and return an address to connect to; refuse if any answer is not public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise BlockedAddress(f"cannot resolve {host!r}: {exc}") from None
    addresses = [info[4][0] for info in infos]
    for address in addresses:
        check_address(address.split("%")[0])
    return addresses[0]


@dataclass(frozen=True)
class Target:
    """One fetch hop as the guard approved it."""

    url: str
    parts: SplitResult  # url split, its shape checked
    host: str  # the URL's host name, lower case: what DNS is asked (TLS and Host keep the URL's name)
    port: int  # the URL's port, or its scheme's default
    address: tuple[str, int]  # the approved (ip, port) the connection must go to


def approve(url: str, pinned: Mapping[tuple[str, int], tuple[str, int]] | None = None) -> Target:
    """The one guard decision a fetch hop needs: BlockedAddress, or the Target to connect to.

    pinned: addresses the operator set in advance per (host, port) (FETCH_CONNECT_TO, like
    curl's --connect-to), used instead of DNS.
    """
    parts = check_url_shape(url)
    host = (parts.hostname or "").lower()
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    address = (pinned or {}).get((host, port)) or (resolve_public(host, port), port)
    return Target(url, parts, host, port, address)
