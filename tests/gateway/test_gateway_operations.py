"""The gateway as an operator and a slow client meet it (issue 16): its admin interface is a
socket only the stack's user may open, /healthz and /readyz answer, every response carries
its request id, and a segment export read slowly is not cut by the route timeout."""

from __future__ import annotations

import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import grpc
import pytest
import requests
from tnx.crm.v1 import segment_service_pb2_grpc

from tests.conftest import Workspace
from tests.events.watching import gateway_with_short_timeouts
from tests.segments.helpers import static_segment
from tests.support import db, stack

SHORT_TIMEOUT_S = 1


def test_admin_interface_is_an_owner_only_socket_not_a_port(
    gateway_url: str, work_dir: Path
) -> None:
    port = urlparse(gateway_url).port
    admin = work_dir / f"envoy-admin-{port}.sock"
    assert stat.S_ISSOCK(admin.stat().st_mode)
    assert stat.S_IMODE(admin.stat().st_mode) == 0o600
    config = (work_dir / "envoy.yaml").read_text()
    admin_block = config.split("static_resources:")[0]
    assert "socket_address" not in admin_block and "pipe:" in admin_block
    with socket.socket(socket.AF_UNIX) as conn:  # the owner (this test's user) can use it
        conn.connect(str(admin))
        conn.sendall(b"GET /ready HTTP/1.1\r\nHost: envoy\r\nConnection: close\r\n\r\n")
        assert conn.recv(64).startswith(b"HTTP/1.1 200")


def test_healthz_and_readyz_answer_without_a_key(gateway_url: str) -> None:
    assert requests.get(f"{gateway_url}/healthz", timeout=5).status_code == 200
    assert requests.get(f"{gateway_url}/readyz", timeout=5).status_code == 200


def test_readyz_turns_503_within_two_seconds_of_the_last_server_stopping(
    database_url: str, tmp_path: Path
) -> None:
    server = stack.grpc_server(database_url, tmp_path / "server.log")
    _, port = server.__enter__()
    running = True
    try:
        with stack.envoy_gateway(port, tmp_path) as gateway:
            _wait_status(f"{gateway}/readyz", 200)
            server.__exit__(None, None, None)
            running = False
            assert _wait_status(f"{gateway}/readyz", 503) < 2
    finally:
        if running:
            server.__exit__(None, None, None)


def _wait_status(url: str, wanted: int, within_s: float = 10) -> float:
    started = time.monotonic()
    while requests.get(url, timeout=5).status_code != wanted:
        assert time.monotonic() - started < within_s, f"{url} never answered {wanted}"
        time.sleep(0.1)
    return time.monotonic() - started


def test_every_response_carries_the_request_id(gateway_url: str, workspace: Workspace) -> None:
    given = requests.get(
        f"{gateway_url}/api/v1/crm/leads/lead_missing",
        headers={**workspace.headers, "x-request-id": "req-from-client-1"},
        timeout=10,
    )
    assert given.status_code == 404
    assert given.headers["x-request-id"] == "req-from-client-1"
    made = requests.get(f"{gateway_url}/api/v1/crm/leads", headers=workspace.headers, timeout=10)
    assert made.status_code == 200 and len(made.headers["x-request-id"]) >= 16


@pytest.fixture
def short_gateway(grpc_server: tuple[str, int], work_dir: Path) -> Iterator[str]:
    gateway_dir = work_dir / "slow-export"
    with gateway_with_short_timeouts(grpc_server[1], gateway_dir, SHORT_TIMEOUT_S) as url:
        yield url


def test_a_slowly_read_export_is_not_cut_by_the_route_timeout(
    short_gateway: str, channel: grpc.Channel, workspace: Workspace, database_url: str
) -> None:
    """Issue 16, fault 3: a CSV export read by a slow client got a 200 and then a reset
    when the route timeout (60 s; here 1 s) ran out."""
    segment = static_segment(segment_service_pb2_grpc.SegmentServiceStub(channel), workspace)
    rows = 100_000
    db.execute(
        database_url,
        "WITH made AS (INSERT INTO leads (id, workspace_id, email, first_name, title)"
        " SELECT 'lead_X' || lpad(g::text, 25, '0'), %s, 'slow' || g || '@example.com',"
        " 'Reader', 'Head of patience and very long exports' FROM generate_series(1, %s) g"
        " RETURNING id)"
        " INSERT INTO segment_members (segment_id, lead_id) SELECT %s, id FROM made",
        workspace.id,
        rows,
        segment.id,
    )
    url = urlparse(short_gateway)
    request = (
        f"GET /api/v1/crm/lists/{segment.id}:export?format=CSV HTTP/1.1\r\n"
        f"Host: {url.netloc}\r\nAuthorization: {workspace.headers['Authorization']}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    received = bytearray()
    started = time.monotonic()
    with socket.socket() as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # a slow, small reader
        conn.connect((url.hostname or "127.0.0.1", url.port or 80))
        conn.sendall(request)
        while chunk := conn.recv(8192):
            received += chunk
            time.sleep(0.002)
    took = time.monotonic() - started
    head, _, raw = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    body = _dechunked(raw) if b"chunked" in head.lower() else raw
    assert took > 2 * SHORT_TIMEOUT_S, f"the read took {took:.1f}s: not slow enough to test"
    assert body.count(b"@example.com") == rows, f"{body.count(b'@example.com')} of {rows}"


def _dechunked(raw: bytes) -> bytes:
    """The body of a chunked HTTP/1.1 response (raises when it was cut short)."""
    body, at = bytearray(), 0
    while True:
        line_end = raw.find(b"\r\n", at)
        assert line_end >= 0, f"the response was cut short after {len(body):,} bytes"
        size = int(raw[at:line_end].split(b";")[0], 16)
        if size == 0:
            return bytes(body)
        start = line_end + 2
        assert start + size <= len(raw), "the response ended inside a chunk"
        body += raw[start : start + size]
        at = start + size + 2
