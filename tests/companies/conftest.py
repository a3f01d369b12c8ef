"""Fixtures for the company graph tests: a CompanyService stub on the session's channel."""

from __future__ import annotations

import grpc
import pytest
from tnx.crm.v1 import company_service_pb2_grpc


@pytest.fixture
def companies(channel: grpc.Channel) -> company_service_pb2_grpc.CompanyServiceStub:
    return company_service_pb2_grpc.CompanyServiceStub(channel)
