"""OutboundClient against real HTTP servers on this machine: a receiver on 127.0.0.2 (the
allow-list of these tests) and a canary on 127.0.0.1 that the guard must never let a request
reach. Linux routes all of 127/8 to loopback, so both are real sockets; nothing is mocked
except DNS, in the tests that say so."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest

from server.outbound import AllowList, OutboundClient, OutboundError, OutboundRefused
from server.outbound.guard import GuardedBackend, Resolver, plaintext

T = TypeVar("T")
ALLOW = AllowList.parse("127.0.0.2/32")
BIG = 1024 * 1024


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


class Server(ThreadingHTTPServer):
    """Records what reaches it: every accepted connection and every request."""

    daemon_threads = True

    def __init__(self, host: str) -> None:
        super().__init__((host, 0), Handler)
        self.host = host
        self.peers: list[tuple[str, int]] = []  # of every accepted connection
        self._probes: set[tuple[str, int]] = set()
        self.requests: list[Seen] = []
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.peers.append(client_address)
        return True

    def connections(self) -> int:
        """Connections accepted so far, including any still in the listen queue: a probe
        connection queues behind them, and the count is read once the probe is accepted."""
        with socket.create_connection((self.host, self.port), timeout=5) as probe:
            me = probe.getsockname()[:2]
            self._probes.add(me)
            deadline = time.monotonic() + 5
            while me not in self.peers and time.monotonic() < deadline:
                time.sleep(0.01)
        assert me in self.peers, "the server stopped accepting"
        return sum(1 for peer in self.peers if peer not in self._probes)

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def stop(self) -> None:
        self.stopping.set()  # wakes a handler that sleeps
        self.shutdown()
        self.server_close()
        self._thread.join()


class Handler(BaseHTTPRequestHandler):
    server: Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.requests.append(Seen(self.command, self.path, headers, body))
        path, _, query = self.path.partition("?")
        params = dict(urllib.parse.parse_qsl(query))
        if path == "/redirect":
            self._reply(int(params.get("status", "302")), b"", location=params["to"])
        elif path == "/loop":
            self._reply(302, b"", location="/loop")
        elif path == "/sleep":
            self.server.stopping.wait(5)
            self._reply(200, b"late")
        elif path == "/big":
            self._reply(200, b"x" * BIG)
        else:
            self._reply(200, b"got " + body)

    def _reply(self, status: int, body: bytes, location: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("X-Receiver", "yes")
        if location is not None:
            self.send_header("Location", location)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client stopped reading (a capped body)
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Server]:
    server = Server("127.0.0.2")
    yield server
    server.stop()


@pytest.fixture
def canary() -> Iterator[Server]:
    """A server on 127.0.0.1: the guard must keep every request away from it."""
    server = Server("127.0.0.1")
    yield server
    server.stop()


def run(scenario: Callable[[OutboundClient], Awaitable[T]], **options: Any) -> T:
    options.setdefault("allow", ALLOW)

    async def main() -> T:
        async with OutboundClient(**options) as client:
            return await scenario(client)

    return asyncio.run(main())


def send(url: str, **kwargs: Any) -> Callable[[OutboundClient], Coroutine[Any, Any, Any]]:
    method = kwargs.pop("method", "GET")
    return lambda client: client.request(method, url, **kwargs)


def refused(url: str, resolver: Resolver | None = None, **kwargs: Any) -> str:
    with pytest.raises(OutboundRefused) as raised:
        run(send(url, **kwargs), resolver=resolver)
    return raised.value.reason


def failed(url: str, resolver: Resolver | None = None, **kwargs: Any) -> str:
    with pytest.raises(OutboundError) as raised:
        run(send(url, **kwargs), resolver=resolver)
    return raised.value.reason


def test_a_post_reaches_the_receiver_and_returns_its_response(receiver: Server) -> None:
    response = run(
        send(
            receiver.url("/hook?x=1"),
            method="POST",
            headers={"Content-Type": "application/json", "Webhook-Signature": "v1,abc"},
            body=b'{"type":"lead.created"}',
        )
    )
    assert response.status == 200
    assert response.body == b'got {"type":"lead.created"}'
    assert response.header("X-RECEIVER") == "yes"
    assert ("content-type", "text/plain") in response.headers
    assert all(name == name.lower() for name, _ in response.headers)
    assert response.header("absent") is None
    [seen] = receiver.requests
    assert (seen.method, seen.path, seen.body) == ("POST", "/hook?x=1", b'{"type":"lead.created"}')
    assert seen.headers["webhook-signature"] == "v1,abc"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["user-agent"] == "tnx-crm/1"
    assert seen.headers["host"] == f"127.0.0.2:{receiver.port}"
    assert seen.headers["content-length"] == "23"


def test_user_agent_is_configurable(receiver: Server) -> None:
    run(send(receiver.url()), user_agent="tnx-crm/2 (+https://tnx.example)")
    run(send(receiver.url(), headers={"User-Agent": "custom"}))
    assert [r.headers["user-agent"] for r in receiver.requests] == [
        "tnx-crm/2 (+https://tnx.example)",
        "custom",
    ]


def test_loopback_literal_is_refused_and_never_reached(canary: Server) -> None:
    reason = refused(canary.url("/hook"), method="POST", body=b"secret")
    assert reason == "127.0.0.1 is a loopback address"
    assert canary.connections() == 0


def test_a_name_resolving_to_loopback_is_refused_at_connect(canary: Server) -> None:
    reason = refused(f"http://localhost:{canary.port}/hook")
    assert reason.startswith("localhost: ")
    assert "loopback" in reason
    assert canary.connections() == 0


def test_cloud_metadata_is_refused_without_a_network_attempt() -> None:
    started = time.monotonic()
    reason = refused("https://169.254.169.254/latest/meta-data", timeout=5)
    assert reason == "169.254.169.254 is a link-local (cloud metadata) address"
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://10.0.0.1/", "10.0.0.1 is a private address"),
        ("http://10.0.0.1:8080/", "10.0.0.1 is a private address"),
        ("https://100.64.0.1/", "carrier-grade NAT"),
        ("https://[::1]/", "::1 is a loopback address"),
        ("https://[::ffff:127.0.0.1]/", "(IPv4 127.0.0.1) is a loopback"),
        ("https://[fe80::1]/", "link-local"),
        ("https://127.1/", "127.0.0.1 is a loopback"),
        ("https://0.0.0.0/", "unspecified"),
    ],
)
def test_off_limits_literals_are_refused(url: str, words: str) -> None:
    assert words in refused(url, timeout=2)


def test_malformed_urls_are_refused() -> None:
    assert "user information" in refused("https://user:pass@example.com/")
    assert "absolute http(s)" in refused("ftp://127.0.0.2/")


def test_a_redirect_to_loopback_is_returned_not_followed(receiver: Server, canary: Server) -> None:
    to_canary = canary.url("/hook")
    url = receiver.url(f"/redirect?to={urllib.parse.quote(to_canary)}")
    response = run(send(url, method="POST", body=b"payload"))
    assert response.status == 302
    assert response.header("location") == to_canary

    reason = failed(url, method="POST", body=b"payload", follow_redirects=3)
    assert reason == "redirect to another host (127.0.0.1) not followed"
    assert canary.connections() == 0
    assert len(receiver.requests) == 2


def test_a_same_host_redirect_is_followed_with_method_and_body(receiver: Server) -> None:
    url = receiver.url("/redirect?status=307&to=/final")
    response = run(send(url, method="POST", body=b"payload", follow_redirects=1))
    assert (response.status, response.body) == (200, b"got payload")
    assert [(r.method, r.path, r.body) for r in receiver.requests] == [
        ("POST", "/redirect?status=307&to=/final", b"payload"),
        ("POST", "/final", b"payload"),
    ]


def test_see_other_becomes_a_get_without_body(receiver: Server) -> None:
    url = receiver.url(f"/redirect?status=303&to={urllib.parse.quote(receiver.url('/done'))}")
    response = run(
        send(
            url,
            method="POST",
            body=b"payload",
            headers={"Content-Type": "application/json"},
            follow_redirects=2,
        )
    )
    assert response.status == 200
    second = receiver.requests[1]
    assert (second.method, second.path, second.body) == ("GET", "/done", b"")
    assert "content-length" not in second.headers
    assert "content-type" not in second.headers


def test_an_upgrade_to_https_on_the_same_host_is_followed(receiver: Server) -> None:
    # The receiver speaks plain http only: the followed hop fails in its TLS handshake.
    upgrade = f"https://127.0.0.2:{receiver.port}/secure"
    reason = failed(
        receiver.url(f"/redirect?to={urllib.parse.quote(upgrade)}"), follow_redirects=1, timeout=3
    )
    assert reason.startswith("TLS failure")


def test_too_many_redirects(receiver: Server) -> None:
    assert failed(receiver.url("/loop"), follow_redirects=2) == "too many redirects (more than 2)"
    assert len(receiver.requests) == 3


def test_a_redirect_to_another_port_is_not_followed(receiver: Server) -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.2", 0))
        other = f"http://127.0.0.2:{spare.getsockname()[1]}/"
        reason = failed(
            receiver.url(f"/redirect?to={urllib.parse.quote(other)}"), follow_redirects=1
        )
    assert reason.startswith("redirect to another port")


def test_a_slow_receiver_times_out_and_the_client_stays_usable(receiver: Server) -> None:
    async def scenario(client: OutboundClient) -> tuple[str, float, int]:
        started = time.monotonic()
        with pytest.raises(OutboundError) as raised:
            await client.request("POST", receiver.url("/sleep"), body=b"x", timeout=0.5)
        elapsed = time.monotonic() - started
        after = await client.request("GET", receiver.url("/after"), timeout=2)
        return raised.value.reason, elapsed, after.status

    reason, elapsed, status_after = run(scenario)
    assert reason == "timed out after 0.5 s"
    assert 0.4 < elapsed < 1.5
    assert status_after == 200
    assert [r.path for r in receiver.requests] == ["/sleep", "/after"]


def test_a_large_response_is_truncated(receiver: Server) -> None:
    capped = run(send(receiver.url("/big"), max_response_bytes=1000))
    assert (capped.status, capped.body) == (200, b"x" * 1000)
    default = run(send(receiver.url("/big")))
    assert default.body == b"x" * 64 * 1024
    whole = run(send(receiver.url("/big"), max_response_bytes=2 * BIG))
    assert len(whole.body) == BIG


def test_several_requests_on_one_client(receiver: Server) -> None:
    async def scenario(client: OutboundClient) -> list[int]:
        calls = [client.request("POST", receiver.url(f"/n{i}"), body=b"%d" % i) for i in range(5)]
        return [r.status for r in await asyncio.gather(*calls)]

    assert run(scenario) == [200] * 5
    assert sorted(r.path for r in receiver.requests) == [f"/n{i}" for i in range(5)]


def test_connection_refused() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.2", 0))
        port = closed.getsockname()[1]
    assert failed(f"http://127.0.0.2:{port}/") == "connection refused"


def test_tls_to_a_plain_http_receiver_fails(receiver: Server) -> None:
    reason = failed(f"https://127.0.0.2:{receiver.port}/", timeout=3)
    assert reason.startswith("TLS failure")


def test_headers_http_cannot_carry_are_rejected_without_echoing_values() -> None:
    for headers, words in [
        ({"Bad Name": "x"}, "not a valid header name"),
        ({"X-Secret": "abc\r\nInjected: 1"}, "line break"),
        ({"Host": "elsewhere.example"}, "set by the client"),
        ({"Content-Length": "5"}, "set by the client"),
        ({"X-Secret": "caf\u00e9\u2603"}, "Latin-1"),
    ]:
        with pytest.raises(ValueError, match=words) as raised:
            run(send("http://127.0.0.2:9/", headers=headers))
        assert "abc" not in str(raised.value) and "\u2603" not in str(raised.value)
    with pytest.raises(ValueError, match="not a valid HTTP method"):
        run(send("http://127.0.0.2:9/", method="GET /x HTTP/1.1\r\n"))
    with pytest.raises(ValueError, match="timeout must be positive"):
        run(send("http://127.0.0.2:9/", timeout=0))


# DNS is faked below (no network here); the connections are still real.
NAMES = {
    "receiver.test": ["127.0.0.2"],
    "public.test": ["93.184.216.34"],
    "mixed.test": ["127.0.0.2", "10.0.0.1"],
}


async def fake_dns(host: str, port: int) -> list[str]:
    if host not in NAMES:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return NAMES[host]


def test_plain_http_to_a_public_address_is_refused() -> None:
    reason = refused("http://public.test/hook", resolver=fake_dns)
    assert reason.startswith("public.test: plain http to 93.184.216.34 refused")
    assert "https" in reason


def test_plain_http_to_an_allow_listed_name_is_allowed(receiver: Server) -> None:
    url = f"http://receiver.test:{receiver.port}/hook"
    assert run(send(url), resolver=fake_dns).status == 200
    assert receiver.requests[0].headers["host"] == f"receiver.test:{receiver.port}"


def test_every_address_of_a_name_is_checked(receiver: Server) -> None:
    reason = refused(f"http://mixed.test:{receiver.port}/", resolver=fake_dns)
    assert reason == "mixed.test: 10.0.0.1 is a private address"
    assert receiver.connections() == 0


def test_an_unknown_name_fails_as_transport_error() -> None:
    assert failed("https://nowhere.test/", resolver=fake_dns) == "could not resolve the host name"


def test_a_rebinding_name_is_checked_on_every_connection(receiver: Server, canary: Server) -> None:
    answers = iter([["127.0.0.2"], ["127.0.0.1"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    async def scenario(client: OutboundClient) -> str:
        # Same port on both addresses is not needed: the second connect never happens.
        first = await client.request("GET", f"http://rebind.test:{receiver.port}/")
        assert first.status == 200
        # http.server answers HTTP/1.0: the connection closed, so the next request connects
        # (and resolves) again.
        with pytest.raises(OutboundRefused) as raised:
            await client.request("GET", f"http://rebind.test:{receiver.port}/")
        return raised.value.reason

    reason = run(scenario, resolver=rebinding)
    assert reason == "rebind.test: 127.0.0.1 is a loopback address"
    assert receiver.connections() == 1
    assert canary.connections() == 0


def test_the_backend_alone_assumes_plain_http_and_connects_to_checked_addresses(
    receiver: Server,
) -> None:
    backend = GuardedBackend(ALLOW, fake_dns)

    async def scenario() -> None:
        with pytest.raises(OutboundRefused, match="plain http"):
            await backend.connect_tcp("public.test", 80)
        with plaintext(False), pytest.raises(OutboundRefused, match="private"):
            await backend.connect_tcp("mixed.test", receiver.port)
        stream = await backend.connect_tcp("receiver.test", receiver.port, timeout=2)
        assert stream.get_extra_info("server_addr") == ("127.0.0.2", receiver.port)
        await stream.aclose()

    asyncio.run(scenario())
    assert receiver.connections() == 1


def test_the_canary_counts_a_connection_that_is_made(canary: Server) -> None:
    # What makes the "never reached" assertions above mean something.
    response = run(send(canary.url("/")), allow=AllowList.parse("127.0.0.1"))
    assert response.status == 200
    assert canary.connections() == 1
