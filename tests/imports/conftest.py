"""Import tests run a real worker process against a real broker, beside the session's
server and gateway."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.support.imports import Stub, WorkerProcess


@pytest.fixture(scope="session")
def worker(
    database_url: str, work_dir: Path, grpc_server: tuple[str, int]
) -> Iterator[WorkerProcess]:
    with WorkerProcess(database_url, work_dir / "worker.log") as process:
        yield process


@pytest.fixture
def imports(channel: grpc.Channel, worker: WorkerProcess) -> Stub:
    return Stub(channel)
