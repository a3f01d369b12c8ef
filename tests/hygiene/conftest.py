"""Fixtures for input hygiene: an import worker of this package's own (stopped when the
package is done, so it never competes with tests/imports' worker for jobs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.support.imports import Stub, WorkerProcess


@pytest.fixture(scope="package")
def worker(
    database_url: str, work_dir: Path, grpc_server: tuple[str, int]
) -> Iterator[WorkerProcess]:
    with WorkerProcess(database_url, work_dir / "hygiene-worker.log") as process:
        yield process


@pytest.fixture
def imports(channel: grpc.Channel, worker: WorkerProcess) -> Stub:
    return Stub(channel)
