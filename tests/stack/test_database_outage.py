"""While PostgreSQL cannot be reached (issue 16, fault 7), calls fail as UNAVAILABLE / 503 with
a retry hint instead of INTERNAL / 500, gRPC health says NOT_SERVING, and both recover by
themselves when the database is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import grpc
import pytest
import requests
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from tnx.crm.v1 import lead_pb2, lead_service_pb2, lead_service_pb2_grpc

from tests.conftest import Workspace
from tests.support import stack
from tests.support.errors import details
from tests.support.tcp_proxy import Opener, TcpProxy

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _upstream(database_url: str) -> tuple[Opener, str, str]:
    """How to reach the session's PostgreSQL, its user and its database name."""
    parsed = urlparse(database_url)
    socket_dir = parse_qs(parsed.query).get("host", [""])[0]
    port = parsed.port or 5432
    if socket_dir:

        def opener() -> asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
            return asyncio.ensure_future(
                asyncio.open_unix_connection(f"{socket_dir}/.s.PGSQL.{port}")
            )

    else:

        def opener() -> asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
            return asyncio.ensure_future(asyncio.open_connection(parsed.hostname, port))

    return opener, parsed.username or "postgres", parsed.path.lstrip("/")


@pytest.fixture
def proxied(database_url: str, tmp_path: Path) -> Iterator[tuple[TcpProxy, str, str]]:
    """A server (and Envoy) whose only way to the database is a relay the test can cut."""
    opener, user, name = _upstream(database_url)
    proxy = TcpProxy(stack.free_port(), opener)
    proxy.start()
    url = f"postgresql+psycopg://{user}@127.0.0.1:{proxy.port}/{name}"
    try:
        with (
            stack.grpc_server(url, tmp_path / "server.log", CRM_HEALTH_CHECK_SECONDS="0.3") as (
                address,
                port,
            ),
            stack.envoy_gateway(port, tmp_path) as gateway,
        ):
            yield proxy, address, gateway
    finally:
        proxy.close()


def _health(channel: grpc.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    status: int = stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status
    return status


def _wait_for_health(channel: grpc.Channel, wanted: int, within_s: float = 10) -> float:
    started = time.monotonic()
    while _health(channel) != wanted:
        assert time.monotonic() - started < within_s, f"health never became {wanted}"
        time.sleep(0.1)
    return time.monotonic() - started


def _create(stub: lead_service_pb2_grpc.LeadServiceStub, ws: Workspace, email: str) -> None:
    request = lead_service_pb2.CreateLeadRequest(lead=lead_pb2.Lead(email=email))
    stub.CreateLead(request, metadata=ws.metadata, timeout=20)


def test_database_outage_is_unavailable_with_a_retry_hint_and_health_follows(
    proxied: tuple[TcpProxy, str, str], workspace: Workspace
) -> None:
    proxy, address, gateway = proxied
    with grpc.insecure_channel(address) as channel:
        leads = lead_service_pb2_grpc.LeadServiceStub(channel)
        _create(leads, workspace, "before@outage.io")
        assert _health(channel) == SERVING

        proxy.cut()
        assert _wait_for_health(channel, NOT_SERVING) < 5
        with pytest.raises(grpc.RpcError) as caught:
            _create(leads, workspace, "during@outage.io")
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert details(caught.value)[0] == "DATABASE_UNAVAILABLE"
        retry = _retry_info(caught.value)
        assert retry is not None and retry.retry_delay.seconds >= 1

        reply = requests.post(
            f"{gateway}/api/v1/crm/leads",
            json={"email": "rest-during@outage.io"},
            headers=workspace.headers,
            timeout=30,
        )
        assert reply.status_code == 503, reply.text
        assert reply.json()["code"] == grpc.StatusCode.UNAVAILABLE.value[0]
        assert int(reply.headers["retry-after"]) >= 1

        proxy.restore()
        _wait_for_health(channel, SERVING)
        _create(leads, workspace, "after@outage.io")


def _retry_info(error: grpc.RpcError) -> error_details_pb2.RetryInfo | None:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info
    return None
