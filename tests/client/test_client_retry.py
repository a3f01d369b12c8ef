"""Retries on UNAVAILABLE come from the channel's service config: exercised against a tiny
in-test gRPC server standing in for the CRM server, which refuses twice and then answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
import tnx_crm
from tnx.crm.v1 import lead_pb2, lead_service_pb2

from tests.support.stack import free_port


class Flaky:
    """GetLead fails with UNAVAILABLE `failures` times, then answers; remembers each try."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: list[tuple[float, str]] = []

    def get_lead(
        self, request: lead_service_pb2.GetLeadRequest, context: grpc.ServicerContext
    ) -> lead_pb2.Lead:
        auth = dict(context.invocation_metadata()).get("authorization", "")
        self.attempts.append((time.monotonic(), str(auth)))
        if len(self.attempts) <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return lead_pb2.Lead(id=request.id, email="ok@acme.example")

    def handler(self) -> grpc.GenericRpcHandler[lead_service_pb2.GetLeadRequest, lead_pb2.Lead]:
        get_lead = grpc.unary_unary_rpc_method_handler(
            self.get_lead,
            request_deserializer=lead_service_pb2.GetLeadRequest.FromString,
            response_serializer=lead_pb2.Lead.SerializeToString,
        )
        return grpc.method_handlers_generic_handler("tnx.crm.v1.LeadService", {"GetLead": get_lead})


@pytest.fixture
def flaky() -> Iterator[tuple[str, Flaky]]:
    servicer = Flaky(failures=2)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((servicer.handler(),))
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(None)


def test_unavailable_is_retried_with_backoff_until_it_succeeds(
    flaky: tuple[str, Flaky],
) -> None:
    address, servicer = flaky
    retry = tnx_crm.Retry(initial_backoff=0.2, max_backoff=1.0)
    with tnx_crm.Client(address, api_key="tnx_k", retry=retry) as client:
        lead = client.leads.get("lead_1")
    assert lead.email == "ok@acme.example"
    assert len(servicer.attempts) == 3
    assert {auth for _, auth in servicer.attempts} == {"Bearer tnx_k"}  # the key every time
    # Full jitter: the two waits are random, up to 0.2 s and 0.4 s (slack for a busy machine).
    assert servicer.attempts[-1][0] - servicer.attempts[0][0] < 0.2 + 0.4 + 1.5


def test_without_retries_the_first_unavailable_is_raised(flaky: tuple[str, Flaky]) -> None:
    address, servicer = flaky
    client = tnx_crm.Client(address, retry=None)
    with client, pytest.raises(tnx_crm.Unavailable) as caught:
        client.leads.get("lead_1")
    assert caught.value.message == "warming up"
    assert len(servicer.attempts) == 1


def test_attempts_are_capped(flaky: tuple[str, Flaky]) -> None:
    address, servicer = flaky
    servicer.failures = 10
    retry = tnx_crm.Retry(max_attempts=3, initial_backoff=0.01, max_backoff=0.01)
    client = tnx_crm.Client(address, retry=retry)
    with client, pytest.raises(tnx_crm.Unavailable):
        client.leads.get("lead_1")
    assert len(servicer.attempts) == 3


def test_the_async_client_retries_the_same_way(flaky: tuple[str, Flaky]) -> None:
    address, servicer = flaky

    async def main() -> lead_pb2.Lead:
        retry = tnx_crm.Retry(initial_backoff=0.05)
        async with tnx_crm.AsyncClient(address, api_key="tnx_k", retry=retry) as client:
            return await client.leads.get("lead_2")

    assert asyncio.run(main()).id == "lead_2"
    assert len(servicer.attempts) == 3
