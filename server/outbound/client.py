"""The one outbound HTTP client of the product: webhooks, Slack messages and enrichment
connectors send every request to a customer-configured URL through OutboundClient.

Why the SSRF check happens at connect time, inside the network backend (guard.GuardedBackend),
and not on the URL before the request:
- DNS rebinding: a name can resolve to a public address when checked and to 127.0.0.1 or
  169.254.169.254 a moment later when connected to. The backend resolves once, checks every
  address and connects to a checked IP literal, so what is checked is what is connected to.
- Redirects: every hop opens its connection through the same backend, so a redirect cannot
  lead around the check. (Redirects are also only followed to the same host.)
TLS still verifies the certificate against the URL's host name: httpcore passes the origin's
host, not the address, to start_tls as server_hostname.

Errors: OutboundRefused (guard) when the guard refuses a URL or an address, a permanent
failure; OutboundError for transport failures (time-outs, refused or reset connections, TLS,
redirects not followed), worth a retry. The two are separate classes: catch both. Neither
message holds request headers or bodies, and nothing here logs them (secrets travel there).
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import urllib.parse
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import cast

import anyio
import httpcore

from server.outbound.guard import (
    AllowList,
    GuardedBackend,
    OutboundRefused,
    Resolver,
    Target,
    parse_url,
    plaintext,
    system_resolver,
)
from server.outbound.pools import OriginPools

REDIRECTS = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110)
# Framing headers the client sets itself: a caller's value could desynchronise the request.
_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection"})

RequestHeaders = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]  # names in lower case, in the order received
    body: bytes  # at most the request's max_response_bytes: the rest is not read

    def header(self, name: str) -> str | None:
        """The first value of a header, None when absent."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)


class OutboundError(Exception):
    """A transport failure (time-out, connection, TLS, redirect not followed). The reason
    never holds request headers or bodies."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OutboundClient:
    """A pool of connections to customer URLs, every one of them through the SSRF guard.
    `resolver` replaces the system's DNS (tests, an in-process resolver)."""

    def __init__(
        self,
        *,
        allow: AllowList | None = None,
        max_connections: int = 100,
        user_agent: str = "tnx-crm/1",
        resolver: Resolver | None = None,
    ) -> None:
        self._allow = AllowList.from_env() if allow is None else allow
        self._user_agent = user_agent
        self._pools = OriginPools(
            ssl.create_default_context(),
            GuardedBackend(self._allow, resolver or system_resolver),
            max_connections,
        )

    async def __aenter__(self) -> OutboundClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._pools.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - applied with asyncio.timeout below
        follow_redirects: int = 0,
        max_response_bytes: int = 64 * 1024,
    ) -> Response:
        """Send one request; the whole exchange (every hop's connect, send and capped read)
        within `timeout` seconds. With follow_redirects=0 a 3xx is returned as it is; with N
        up to N redirects to the same host are followed (303 becomes a GET without body).
        Raises OutboundRefused (the guard) or OutboundError (transport); ValueError for
        header names or values that HTTP cannot carry."""
        if not _TOKEN.fullmatch(method):
            raise ValueError(f"{method!r} is not a valid HTTP method")
        if timeout <= 0 or follow_redirects < 0 or max_response_bytes < 0:
            raise ValueError("timeout must be positive, the other limits not negative")
        target = parse_url(url)
        exchange = _Exchange(method.upper(), _request_headers(headers, self._user_agent), body)
        try:
            async with asyncio.timeout(timeout):
                return await self._follow(
                    exchange, target, timeout, follow_redirects, max_response_bytes
                )
        except TimeoutError:
            raise OutboundError(f"timed out after {timeout:g} s") from None

    async def _follow(
        self, exchange: _Exchange, target: Target, seconds: float, redirects: int, cap: int
    ) -> Response:
        for hop in range(redirects + 1):
            response = await self._send(exchange, target, seconds, cap)
            location = response.header("location")
            if redirects == 0 or response.status not in REDIRECTS or location is None:
                return response
            if hop == redirects:
                break
            target = _next_hop(target, location)
            if response.status == 303 and exchange.method != "HEAD":
                exchange = _Exchange("GET", exchange.without_body(), None)
        raise OutboundError(f"too many redirects (more than {redirects})")

    async def _send(
        self, exchange: _Exchange, target: Target, seconds: float, cap: int
    ) -> Response:
        url = httpcore.URL(
            scheme=target.scheme.encode(),
            host=target.host.encode(),
            port=target.port,
            target=target.target.encode(),
        )
        # httpcore would write an IPv6 host without brackets.
        headers = [(b"Host", target.netloc.encode()), *exchange.headers]
        # Each phase's own limit backs up the overall one (asyncio.timeout in request()).
        limits = {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}
        with plaintext(target.scheme == "http"), _transport_errors(seconds):
            async with (
                self._pools.lease((target.scheme, target.host, _port(target))) as pool,
                pool.stream(
                    exchange.method.encode(),
                    url,
                    headers=headers,
                    content=exchange.body,
                    extensions={"timeout": limits},
                ) as response,
            ):
                body = await _read_capped(response, cap)
        return Response(
            status=response.status,
            headers=tuple(
                (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in response.headers
            ),
            body=body,
        )


@dataclass(frozen=True)
class _Exchange:
    """What is sent on every hop."""

    method: str
    headers: RequestHeaders
    body: bytes | None

    def without_body(self) -> RequestHeaders:
        return [(k, v) for k, v in self.headers if k.lower() != b"content-type"]


def _request_headers(given: Mapping[str, str] | None, user_agent: str) -> RequestHeaders:
    """The caller's headers, checked, with our User-Agent unless the caller set one. Errors
    name the header, never its value (it may be a secret)."""
    headers: dict[str, tuple[bytes, bytes]] = {"user-agent": (b"User-Agent", user_agent.encode())}
    for name, value in (given or {}).items():
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid header name")
        if name.lower() in _FRAMING:
            raise ValueError(f"the {name} header is set by the client")
        if any(ch in value for ch in "\r\n\x00"):
            raise ValueError(f"the value of header {name} contains a line break or NUL")
        try:
            headers[name.lower()] = (name.encode(), value.encode("latin-1"))
        except UnicodeEncodeError:
            raise ValueError(f"the value of header {name} is not Latin-1 text") from None
    return list(headers.values())


def _next_hop(current: Target, location: str) -> Target:
    """Where a redirect leads, if it may be followed: the same host (and port, unless the
    scheme goes from http to https), never from https down to http."""
    try:
        target = parse_url(urllib.parse.urljoin(current.url, location))
    except OutboundRefused as exc:
        raise OutboundError(f"redirect to an unusable URL not followed: {exc.reason}") from None
    if target.host != current.host:
        raise OutboundError(f"redirect to another host ({target.host}) not followed")
    if current.scheme == "https" and target.scheme == "http":
        raise OutboundError("redirect from https to http not followed")
    if target.scheme == current.scheme and _port(target) != _port(current):
        raise OutboundError(f"redirect to another port ({_port(target)}) not followed")
    return target


def _port(target: Target) -> int:
    return target.port or DEFAULT_PORTS[target.scheme]


async def _read_capped(response: httpcore.Response, cap: int) -> bytes:
    """At most `cap` bytes of the body; the rest is never read (the connection is dropped)."""
    chunks: list[bytes] = []
    size = 0
    stream = cast(AsyncGenerator[bytes, None], response.aiter_stream())
    try:
        async for chunk in stream:
            chunks.append(chunk[: cap - size])
            size += len(chunks[-1])
            if size >= cap:
                break
    finally:
        await stream.aclose()
    return b"".join(chunks)


@contextmanager
def _transport_errors(timeout: float) -> Iterator[None]:
    """httpcore's exceptions as OutboundError with a short reason."""
    try:
        yield
    except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError) as exc:
        raise OutboundError(_reason(exc, timeout)) from exc


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, httpcore.TimeoutException):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, httpcore.RemoteProtocolError):
        return "the receiver broke the HTTP protocol (or closed the connection early)"
    if isinstance(exc, httpcore.ProtocolError):
        return "the request could not be sent (HTTP protocol error)"
    causes = list(_causes(exc))
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS failure: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failure: {cause.reason or cause.strerror}"
        if isinstance(cause, socket.gaierror):
            return "could not resolve the host name"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError | anyio.BrokenResourceError):
            return "connection reset"
    if isinstance(exc, httpcore.ConnectError) and any(
        isinstance(cause, anyio.EndOfStream) for cause in causes
    ):
        return "TLS failure: the connection closed during the handshake"
    if isinstance(exc, httpcore.ConnectError):
        return f"could not connect: {exc}"
    return "connection closed or reset by the receiver"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and those it came from (cause, context, members of groups)."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
