"""Real import workers for tests, and helpers that upload files and wait for their jobs.

Each test session uses a queue of its own, so sessions sharing one broker (CI's Redis, a
developer's) never take each other's tasks. The broker is CRM_BROKER_URL when set (CI:
Redis), else the embedded default on the session's PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.api import httpbody_pb2
from tnx.crm.v1 import import_pb2, import_service_pb2, import_service_pb2_grpc

from server.config import REPO_ROOT
from tests.support import db

QUEUE = f"imports-test-{uuid.uuid4().hex[:8]}"
SCORING_QUEUE = f"scoring-test-{uuid.uuid4().hex[:8]}"
ENRICHMENT_QUEUE = f"enrichment-test-{uuid.uuid4().hex[:8]}"
MAX_BYTES = 24 * 1024 * 1024
MAX_ROWS = 150_000
BATCH_ROWS = 1000
Job = import_pb2.ImportJob
Stub = import_service_pb2_grpc.ImportServiceStub
TERMINAL = (Job.SUCCEEDED, Job.FAILED, Job.CANCELLED)


def import_env(**extra: str) -> dict[str, str]:
    """What the server and the workers of a test stack agree on."""
    return {
        "CRM_IMPORT_QUEUE": QUEUE,
        "CRM_IMPORT_MAX_BYTES": str(MAX_BYTES),
        "CRM_IMPORT_MAX_ROWS": str(MAX_ROWS),
        "CRM_IMPORT_BATCH_ROWS": str(BATCH_ROWS),
        "CRM_IMPORT_SWEEP_SECONDS": "1",
        "CRM_IMPORT_REQUEUE_SECONDS": "3",
        "CRM_SCORING_QUEUE": SCORING_QUEUE,
        # The server enqueues enrichment runs here; the session's workers consume it.
        "CRM_ENRICHMENT_QUEUE": ENRICHMENT_QUEUE,
        # Webhook receivers in tests listen on 127.0.0.2 (tests/triggers/receiver.py): the
        # only private address the outbound guard lets through here.
        "CRM_OUTBOUND_ALLOW": "127.0.0.2/32",
        # Every worker runs the trigger delivery loop, so whichever worker of the session
        # claims a delivery retries it on the same short schedule (tests/triggers/conftest.py).
        "CRM_WEBHOOK_RETRY_DELAYS": "1,1",
        "CRM_DELIVERY_LEASE_SECONDS": "15",
        **extra,
    }


class WorkerProcess:
    """`tnx-crm worker` (or another of its background commands, such as `scheduler`) as its
    own process, which a test may kill -9 and start again."""

    def __init__(
        self, database_url: str, log_path: Path, command: str = "worker", **extra_env: str
    ) -> None:
        self.command = command
        self.env = {
            **os.environ,
            "CRM_DATABASE_URL": database_url,
            "CRM_LOG_LEVEL": "INFO",
            **import_env(),
            **extra_env,
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "server.cli", self.command],
                env=self.env,
                stdout=log,
                stderr=log,
                cwd=REPO_ROOT,
            )

    def __enter__(self) -> WorkerProcess:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def requests(
    data: bytes, *, piece: int = 256 * 1024, content_type: str = "", **header: Any
) -> Iterator[import_service_pb2.UploadImportRequest]:
    """A header message (which may carry data) and the data in pieces."""
    yield import_service_pb2.UploadImportRequest(
        **header, file=httpbody_pb2.HttpBody(content_type=content_type, data=data[:piece])
    )
    for start in range(piece, len(data), piece):
        yield import_service_pb2.UploadImportRequest(
            file=httpbody_pb2.HttpBody(data=data[start : start + piece])
        )


def upload(stub: Stub, metadata: Any, data: bytes, **header: Any) -> import_pb2.ImportJob:
    header.setdefault("format", Job.CSV)
    job: import_pb2.ImportJob = stub.UploadImport(requests(data, **header), metadata=metadata)
    return job


def wait(stub: Stub, metadata: Any, job_id: str, timeout: float = 60) -> import_pb2.ImportJob:
    """The job once it ends, followed with WatchImport."""
    request = import_service_pb2.WatchImportRequest(id=job_id)
    states = list(stub.WatchImport(request, metadata=metadata, timeout=timeout))
    last = states[-1] if states else None
    assert last is not None and last.status in TERMINAL, last
    return last


def run(stub: Stub, metadata: Any, data: bytes, **header: Any) -> import_pb2.ImportJob:
    return wait(stub, metadata, upload(stub, metadata, data, **header).id)


def csv_bytes(rows: list[list[str]], *, delimiter: str = ",", newline: str = "\n") -> bytes:
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator=newline).writerows(rows)
    return buffer.getvalue().encode()


def leads_by_email(url: str, workspace_id: str) -> dict[str, dict[str, Any]]:
    rows = db.query(
        url,
        "SELECT email, first_name, last_name, title, phone, company, company_id, source, "
        "score, status, custom_fields FROM leads WHERE workspace_id = %s",
        workspace_id,
    )
    names = "email first_name last_name title phone company company_id source score status "
    return {r[0]: dict(zip((names + "custom").split(), r, strict=True)) for r in rows}


def wait_until(predicate: Any, timeout: float = 30, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")
