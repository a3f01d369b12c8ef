"""The SSRF guard of outbound HTTP: which addresses the product may connect to, the check of
a customer's URL when it is saved, and the network backend that checks every address it
connects to.

Rule: an address may be connected to iff it is in the operator's allow-list
(CRM_OUTBOUND_ALLOW), or it is globally routable and not multicast. IPv6 forms that embed an
IPv4 address (mapped, compatible, NAT64, 6to4) are judged by the IPv4 address inside, since a
dual-stack socket or a translator reaches exactly that address.

A DNS name is not resolved when a URL is saved: what it resolves to then says nothing about
what it resolves to when a request is sent. GuardedBackend resolves the name itself at
connect time, checks every address, and connects to a checked IP literal only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
import string
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import httpcore

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Host name -> IP literals (the resolver of GuardedBackend; tests pass a fake one).
Resolver = Callable[[str, int], Awaitable[list[str]]]

ALLOW_ENV = "CRM_OUTBOUND_ALLOW"
MAX_URL = 2048

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_V4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: embedding varies by site
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


class OutboundRefused(Exception):
    """The guard refused a URL or an address. Permanent: retrying cannot help. Not a subclass
    of client.OutboundError (a transport failure, worth a retry): callers catch both.
    The reason never holds request headers or bodies."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AllowList:
    """Networks the operator allows besides public addresses (a local receiver, a proxy)."""

    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str) -> AllowList:
        """From CIDRs or single addresses separated by commas and/or white space."""
        networks = []
        for entry in re.split(r"[,\s]+", text.strip()):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry))
            except ValueError as exc:
                raise ValueError(f"bad allow-list entry {entry!r}: {exc}") from None
        return cls(tuple(networks))

    @classmethod
    def from_env(cls) -> AllowList:
        return cls.parse(os.environ.get(ALLOW_ENV, ""))

    def contains(self, ip: IPAddress) -> bool:
        return any(ip in network for network in self.networks)


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _V4_COMPATIBLE and int(ip) > 1):  # not :: nor ::1
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _kind(ip: IPAddress) -> str | None:
    """What makes an address off limits (None: nothing, it is public)."""
    checks: list[tuple[bool, str]] = [
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.version == 4 and ip.is_link_local, "a link-local (cloud metadata) address"),
        (ip.is_link_local, "a link-local address"),
        (ip in _CGNAT, "a carrier-grade NAT address"),
        (ip in _UNIQUE_LOCAL, "a unique-local address"),
        (ip in _NAT64_LOCAL, "a local-use NAT64 address"),
        (ip.is_multicast, "a multicast address"),
        (any(ip in network for network in _RFC1918), "a private address"),
        (ip.is_reserved, "a reserved address"),
        (not ip.is_global, "not a globally routable address"),
    ]
    return next((kind for hit, kind in checks if hit), None)


def refusal(ip: IPAddress, allow: AllowList) -> str | None:
    """None when the address may be connected to, else why not."""
    inner = embedded_ipv4(ip)
    if allow.contains(ip) or (inner is not None and allow.contains(inner)):
        return None
    kind = _kind(inner if inner is not None else ip)
    if kind is None:
        return None
    shown = f"{ip} (IPv4 {inner})" if inner is not None else str(ip)
    return f"{shown} is {kind}"


def ip_literal(host: str) -> IPAddress | None:
    """The address when the host is an IP literal, including the numeric IPv4 forms that
    resolvers accept (127.1, 2130706433, 0x7f.0.0.1); None for a DNS name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    last = host.rstrip(".").rsplit(".", 1)[-1]
    if last.isdigit() or last.startswith("0x"):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class Target:
    """A syntactically valid absolute http(s) URL, split and normalised."""

    scheme: str  # "http" or "https"
    host: str  # lower case, ASCII (IDNA), IPv6 without brackets
    port: int | None
    target: str  # path and query, ASCII

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.target}"


def _ascii(text: str) -> str:
    # Percent-encode what is not ASCII; keep the customer's own escapes and delimiters.
    return urllib.parse.quote(text, safe=string.punctuation)


def _host(raw: str | None) -> str:
    if not raw:
        raise OutboundRefused("the URL has no host")
    if ip_literal(raw) is not None:
        return raw
    try:
        host = raw.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise OutboundRefused("the host name is not a valid (IDNA) name") from None
    if len(host) > 253 or not _HOST_NAME.fullmatch(host):
        raise OutboundRefused("the host name is not a valid name")
    return host


def parse_url(url: str) -> Target:
    """The URL split, or OutboundRefused saying what is wrong with its form."""
    if len(url) > MAX_URL:
        raise OutboundRefused(f"the URL is longer than {MAX_URL} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise OutboundRefused("the URL contains white space or control characters")
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.netloc:
        raise OutboundRefused("the URL must be an absolute http(s) URL")
    if "@" in parts.netloc:
        raise OutboundRefused("the URL must not contain user information (user:password@)")
    try:
        port = parts.port
    except ValueError:
        raise OutboundRefused("the URL's port is not a number from 1 to 65535") from None
    if port == 0 or (port is None and parts.netloc.endswith(":")):
        raise OutboundRefused("the URL's port is not a number from 1 to 65535")
    target = _ascii(parts.path or "/") + (f"?{_ascii(parts.query)}" if parts.query else "")
    return Target(scheme, _host(parts.hostname), port, target)


def check_url(url: str, allow: AllowList) -> str:
    """Check a URL a customer saves (a webhook endpoint): its normalised form, or
    OutboundRefused. IP literals are judged now; DNS names when a request connects."""
    target = parse_url(url)
    literal = ip_literal(target.host)
    reason = refusal(literal, allow) if literal is not None else None
    if reason is not None:
        raise OutboundRefused(reason)
    if target.scheme == "http" and not (literal is not None and allow.contains(literal)):
        raise OutboundRefused("the URL must use https (plain http only to allow-listed addresses)")
    return target.url


# Whether the connection being opened carries plain http. The client sets it around each
# request; a backend used without it assumes plain text, the stricter case.
_PLAINTEXT: ContextVar[bool] = ContextVar("outbound_plaintext", default=True)


@contextmanager
def plaintext(value: bool) -> Iterator[None]:
    """Connections opened inside carry plain http (value True) or TLS (False)."""
    token = _PLAINTEXT.set(value)
    try:
        yield
    finally:
        _PLAINTEXT.reset(token)


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's AnyIO backend behind the guard: resolves the host itself, refuses when any
    of its addresses is refused, and connects to a checked IP literal only, so the address
    checked is the address connected to (no DNS-rebinding gap). Every redirect hop and every
    new pooled connection comes through here."""

    def __init__(self, allow: AllowList, resolver: Resolver = system_resolver) -> None:
        self._allow = allow
        self._resolve = resolver
        self._inner = httpcore.AnyIOBackend()

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The checked addresses of a host, or OutboundRefused."""
        literal = ip_literal(host)
        if literal is not None:
            found: Iterable[str] = [str(literal)]
        else:
            try:
                found = await self._resolve(host, port)
            except OSError as exc:  # socket.gaierror
                raise httpcore.ConnectError(f"could not resolve the host name {host}") from exc
        # A scope (fe80::1%eth0) names an interface; the address is judged without it.
        ips = list(dict.fromkeys(ipaddress.ip_address(a.split("%")[0]) for a in found))
        if not ips:
            raise httpcore.ConnectError(f"could not resolve the host name {host}")
        for ip in ips:
            reason = refusal(ip, self._allow)
            if reason is None and _PLAINTEXT.get() and not self._allow.contains(ip):
                reason = f"plain http to {ip} refused: use https (http only to allow-listed)"
            if reason is not None:
                raise OutboundRefused(reason if literal is not None else f"{host}: {reason}")
        return ips

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: httpcore.ConnectError | None = None
        for ip in await self.addresses(host, port):
            try:
                return await self._inner.connect_tcp(
                    str(ip), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:  # try the host's next address
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused("unix sockets are not outbound destinations")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
