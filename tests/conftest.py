"""Session-wide real components: one migrated database, one gRPC server process and one
Envoy gateway in front of it. Each test gets its own workspace, so tests stay independent."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import requests
from tnx.crm.v1 import lead_service_pb2_grpc

from tests.support import db, stack


@dataclass(frozen=True)
class Workspace:
    id: str
    key: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.key}"),)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with db.fresh_database() as url:
        yield url


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def grpc_server(database_url: str, work_dir: Path) -> Iterator[tuple[str, int]]:
    with stack.grpc_server(database_url, work_dir / "server.log") as server:
        yield server


@pytest.fixture(scope="session")
def channel(grpc_server: tuple[str, int]) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(grpc_server[0]) as chan:
        yield chan


@pytest.fixture(scope="session")
def mcp_port() -> int:
    """Where the gateway sends /api/v1/crm/mcp; the MCP process itself starts only for the
    tests that ask for it (tests/mcp)."""
    return stack.free_port()


@pytest.fixture(scope="session")
def gateway_url(grpc_server: tuple[str, int], work_dir: Path, mcp_port: int) -> Iterator[str]:
    with stack.envoy_gateway(grpc_server[1], work_dir, mcp_port=mcp_port) as url:
        yield url


@pytest.fixture
def http(gateway_url: str) -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def workspace(database_url: str) -> Workspace:
    created = db.create_workspace(database_url)
    return Workspace(id=created.workspace_id, key=created.key)


@pytest.fixture
def other_workspace(database_url: str) -> Workspace:
    created = db.create_workspace(database_url, name="other")
    return Workspace(id=created.workspace_id, key=created.key)


@pytest.fixture
def leads(channel: grpc.Channel) -> lead_service_pb2_grpc.LeadServiceStub:
    return lead_service_pb2_grpc.LeadServiceStub(channel)
