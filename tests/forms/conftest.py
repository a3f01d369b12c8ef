"""Fixtures for forms: the stubs, and a second server (with its own gateway) whose public
submission rate limits are small enough to hit in a test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from tnx.crm.v1 import segment_service_pb2_grpc

from tests.forms.support import Forms, Public
from tests.support import stack

# The limited server's budgets: per client IP and per form, a minute.
IP_LIMIT = 3
FORM_LIMIT = 5


@pytest.fixture
def forms(channel: grpc.Channel) -> Forms:
    return Forms(channel)


@pytest.fixture
def public(channel: grpc.Channel) -> Public:
    return Public(channel)


@pytest.fixture
def segments(channel: grpc.Channel) -> segment_service_pb2_grpc.SegmentServiceStub:
    return segment_service_pb2_grpc.SegmentServiceStub(channel)


@dataclass(frozen=True)
class LimitedStack:
    channel: grpc.Channel
    gateway_url: str
    direct: grpc.Channel  # to the TCP port, as any local process could call it


@pytest.fixture(scope="package")
def limited(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitedStack]:
    work = tmp_path_factory.mktemp("limited")
    with (
        stack.grpc_server(
            database_url,
            work / "server.log",
            CRM_FORM_IP_RATE_LIMIT_PER_MINUTE=str(IP_LIMIT),
            CRM_FORM_RATE_LIMIT_PER_MINUTE=str(FORM_LIMIT),
        ) as (address, port),
        stack.envoy_gateway(port, work) as url,
        # Through the server's unix socket, as the gateway calls it: the only way a call's
        # x-forwarded-for (the client_ip= of these tests) is believed.
        grpc.insecure_channel(f"unix:{work}/grpc-{port}.sock") as channel,
        grpc.insecure_channel(address) as direct,
    ):
        yield LimitedStack(channel=channel, gateway_url=url, direct=direct)
