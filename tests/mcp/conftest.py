"""The MCP HTTP server process behind the session's gateway (tests/mcp/helpers.py connects)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import stack
from tests.support.imports import WorkerProcess


@pytest.fixture(scope="session")
def mcp_url(
    grpc_server: tuple[str, int], gateway_url: str, mcp_port: int, work_dir: Path
) -> Iterator[str]:
    """The MCP endpoint through the gateway, with its process running behind it."""
    with stack.mcp_http_server(grpc_server[0], mcp_port, work_dir / "mcp.log"):
        yield f"{gateway_url}/api/v1/crm/mcp"


@pytest.fixture(scope="session")
def mcp_worker(database_url: str, work_dir: Path) -> Iterator[WorkerProcess]:
    """A worker, for the import that import_status reports on."""
    with WorkerProcess(database_url, work_dir / "mcp-worker.log") as process:
        yield process
