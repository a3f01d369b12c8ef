"""What an operator sees: Prometheus metrics from the server and the worker, a worker
liveness check, and JSON log lines that carry the request id a client sent."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import grpc
import pytest
import requests
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from tnx.crm.v1 import import_service_pb2_grpc, lead_pb2, lead_service_pb2, lead_service_pb2_grpc

from server.db import failures
from server.db.engine import Database, run_with_database
from tests.conftest import Workspace
from tests.support import imports, stack


def _scrape(port: int, path: str = "/metrics") -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return 0.0


def test_server_counts_calls_by_method_and_code_and_logs_json_with_the_request_id(
    database_url: str, workspace: Workspace, tmp_path: Path
) -> None:
    metrics_port = stack.free_port()
    log_path = tmp_path / "server.log"
    with (
        stack.grpc_server(
            database_url,
            log_path,
            CRM_METRICS_PORT=str(metrics_port),
            CRM_LOG_FORMAT="json",
            CRM_LOG_LEVEL="INFO",
        ) as (address, _),
        grpc.insecure_channel(address) as channel,
    ):
        leads = lead_service_pb2_grpc.LeadServiceStub(channel)
        request_id = f"req-{uuid.uuid4().hex[:8]}"
        metadata = (*workspace.metadata, ("x-request-id", request_id))
        leads.CreateLead(
            lead_service_pb2.CreateLeadRequest(lead=lead_pb2.Lead(email="seen@metrics.io")),
            metadata=metadata,
        )
        with pytest.raises(grpc.RpcError):
            leads.GetLead(lead_service_pb2.GetLeadRequest(id="lead_missing"), metadata=metadata)
        # A call is counted as it finishes, which may be just after its reply went out.
        deadline = time.monotonic() + 10
        while True:
            text = _scrape(metrics_port).text
            failed = _sample(text, "tnx_rpc_duration_seconds_count", code="NOT_FOUND")
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.05)

    create = "/tnx.crm.v1.LeadService/CreateLead"
    get = "/tnx.crm.v1.LeadService/GetLead"
    assert _sample(text, "tnx_rpc_duration_seconds_count", method=create, code="OK") == 1
    assert _sample(text, "tnx_rpc_duration_seconds_count", method=get, code="NOT_FOUND") == 1
    assert _sample(text, "tnx_rpc_duration_seconds_bucket", method=create, code="OK", le="+Inf")
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert lines, "no JSON log line"
    mine = [line for line in lines if line["request_id"] == request_id]
    assert any(create in line["message"] for line in mine), mine
    assert any(get in line["message"] and "NOT_FOUND" in line["message"] for line in mine)


def test_worker_reports_import_rows_and_queue_depth_and_answers_its_liveness_check(
    database_url: str, workspace: Workspace, tmp_path: Path
) -> None:
    queue = f"imports-observed-{uuid.uuid4().hex[:8]}"
    metrics_port = stack.free_port()
    worker = imports.WorkerProcess(
        database_url,
        tmp_path / "worker.log",
        CRM_IMPORT_QUEUE=queue,
        CRM_WORKER_METRICS_PORT=str(metrics_port),
    )
    with stack.grpc_server(database_url, tmp_path / "server.log", CRM_IMPORT_QUEUE=queue) as (
        address,
        _,
    ):
        worker.start()
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if _scrape(metrics_port, "/livez").status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                assert time.monotonic() < deadline, "the worker never became live"
                time.sleep(0.2)
            rows = [["email"], *([f"row{i}@observed.io"] for i in range(25)), ["not-an-email"]]
            with grpc.insecure_channel(address) as channel:
                job = imports.run(
                    import_service_pb2_grpc.ImportServiceStub(channel),
                    workspace.metadata,
                    imports.csv_bytes(rows),
                )
            assert (job.rows_created, job.rows_failed) == (25, 1)
            text = _scrape(metrics_port).text
        finally:
            worker.stop()
    assert _sample(text, "tnx_import_rows_total", outcome="imported") == 25
    assert _sample(text, "tnx_import_rows_total", outcome="failed") == 1
    assert "tnx_import_jobs" in text


def test_a_grpc_error_carries_the_request_id_the_client_sent(
    channel: grpc.Channel, workspace: Workspace
) -> None:
    leads = lead_service_pb2_grpc.LeadServiceStub(channel)
    metadata = (*workspace.metadata, ("x-request-id", "req-kept-on-errors"))
    with pytest.raises(grpc.RpcError) as caught:
        leads.GetLead(lead_service_pb2.GetLeadRequest(id="lead_missing"), metadata=metadata)
    trailers = caught.value.trailing_metadata()  # type: ignore[attr-defined]
    found: dict[str, object] = {item.key: item.value for item in trailers}
    assert found.get("x-request-id") == "req-kept-on-errors"


def test_a_database_error_is_logged_without_the_values_it_quotes(database_url: str) -> None:
    """Issue 16, fault 10: tracebacks in the server log showed SQL parameters (emails)."""

    async def fail(db: Database) -> DBAPIError:
        try:
            async with db.transaction() as conn:
                await conn.execute(
                    text("SELECT CAST(:email AS integer)"), {"email": "private@person.io"}
                )
        except DBAPIError as error:
            return error
        raise AssertionError("the statement did not fail")

    error = run_with_database(database_url, fail)
    assert "private@person.io" in str(error.orig)  # what PostgreSQL itself says
    logged = failures.redacted(error)
    assert "private@person.io" not in logged
    assert "SQLSTATE 22P02" in logged and "CAST(%(email)s AS integer)" in logged
