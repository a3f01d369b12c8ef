"""Files that can't be imported end FAILED (or with row errors) with a clear reason, before
any row is written and without a looping task; files over the limits are refused."""

from __future__ import annotations

import random

import grpc
import pytest
import requests
from tnx.crm.v1 import import_service_pb2 as ims

from tests.conftest import Workspace
from tests.support import db
from tests.support.errors import details, json_details
from tests.support.imports import MAX_BYTES, MAX_ROWS, Job, Stub, WorkerProcess, run, upload


def _nothing_written(url: str, workspace_id: str) -> None:
    assert db.query(url, "SELECT count(*) FROM leads WHERE workspace_id = %s", workspace_id) == [
        (0,)
    ]
    assert db.query(url, "SELECT count(*) FROM events WHERE workspace_id = %s", workspace_id) == [
        (0,)
    ]


POISON = {
    "binary": (random.Random(7).randbytes(200_000), "binary data"),
    "blank": (b"\n\r\n  \n", "no header row"),
    "header only": (b"email,first_name\r\n", "no data rows"),
    "10,000 columns": (
        (",".join(f"c{i}" for i in range(10_000)) + "\nx\n").encode(),
        "10000 columns",
    ),
    "a 10 MB field": (b'email,notes\na@b.io,"' + b"x" * (10 * 1024 * 1024) + b'"\n', "longer than"),
    "a 10 MB line": (b"email,notes\na@b.io," + b"y" * (10 * 1024 * 1024) + b"\n", "longer than"),
    "broken UTF-8": (
        "email,name\na@b.io,Zoë\n".encode() + b"c@d.io,\xff\xfe\xc3(\n",
        "not valid UTF-8",
    ),
}


@pytest.mark.parametrize("name", list(POISON))
def test_a_poison_file_fails_with_a_reason_before_any_row_is_written(
    imports: Stub, workspace: Workspace, database_url: str, name: str
) -> None:
    data, reason = POISON[name]
    job = run(imports, workspace.metadata, data)
    assert job.status == Job.FAILED
    assert reason in job.error
    _nothing_written(database_url, workspace.id)
    attempts = db.query(database_url, "SELECT attempts FROM import_jobs WHERE id = %s", job.id)
    assert attempts == [(1,)]
    chunks = db.query(database_url, "SELECT count(*) FROM import_chunks WHERE job_id = %s", job.id)
    assert chunks == [(0,)]


def test_broken_json_fails_and_a_json_object_is_not_an_array(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    broken = run(imports, workspace.metadata, b'[{"email": "a@b.io"}, {"email": ', format=Job.JSON)
    assert broken.status == Job.FAILED and "invalid JSON" in broken.error
    single = run(imports, workspace.metadata, b'{"email": "a@b.io"}', format=Job.JSON)
    assert single.status == Job.FAILED and "array of objects" in single.error
    _nothing_written(database_url, workspace.id)


def test_an_empty_upload_is_refused_and_leaves_no_job(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        upload(imports, workspace.metadata, b"")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(caught.value)[0] == "IMPORT_EMPTY"
    assert db.query(
        database_url, "SELECT count(*) FROM import_jobs WHERE workspace_id = %s", workspace.id
    ) == [(0,)]


def test_a_file_over_the_size_limit_is_refused_and_nothing_is_kept(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    data = b"email\n" + b"a" * (MAX_BYTES + 10)
    with pytest.raises(grpc.RpcError) as caught:
        upload(imports, workspace.metadata, data, piece=1024 * 1024)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(caught.value) == ("IMPORT_TOO_LARGE", ["file"])
    assert "CRM_IMPORT_MAX_BYTES" in (caught.value.details() or "")
    with pytest.raises(grpc.RpcError) as caught:
        upload(imports, workspace.metadata, b"email\na@b.io\n", declared_size=MAX_BYTES + 1)
    assert details(caught.value) == ("IMPORT_TOO_LARGE", ["declared_size"])
    assert db.query(
        database_url, "SELECT count(*) FROM import_jobs WHERE workspace_id = %s", workspace.id
    ) == [(0,)]
    assert db.query(database_url, "SELECT count(*) FROM import_chunks") == [(0,)]


def test_a_file_over_the_row_limit_fails_before_any_row_is_written(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    data = b"email\n" + b"".join(b"r%d@rows.io\n" % i for i in range(MAX_ROWS + 1))
    job = run(imports, workspace.metadata, data)
    assert job.status == Job.FAILED
    assert f"{MAX_ROWS + 1} data rows" in job.error and "CRM_IMPORT_MAX_ROWS" in job.error
    assert job.rows_processed == 0
    _nothing_written(database_url, workspace.id)


def test_a_body_over_the_size_limit_through_the_gateway_is_a_400(
    http: requests.Session,
    gateway_url: str,
    workspace: Workspace,
    worker: WorkerProcess,
    database_url: str,
) -> None:
    body = b"email\n" + b"b" * (MAX_BYTES + 10)
    headers = {**workspace.headers, "Content-Type": "text/csv"}
    reply = http.post(f"{gateway_url}/api/v1/crm/imports", data=body, headers=headers, timeout=60)
    assert reply.status_code == 400
    assert json_details(reply.json()) == ("IMPORT_TOO_LARGE", ["file"])
    assert db.query(
        database_url, "SELECT count(*) FROM import_jobs WHERE workspace_id = %s", workspace.id
    ) == [(0,)]


def test_an_unknown_import_is_not_found(imports: Stub, workspace: Workspace) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        imports.GetImport(ims.GetImportRequest(id="imp_unknown"), metadata=workspace.metadata)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
