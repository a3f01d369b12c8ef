"""A NUL character (PostgreSQL stores none) in an imported record is that record's row
error: every other row is imported and the job succeeds, whatever the format and however
the NUL arrives (a JSON "\\u0000" escape or a literal NUL byte, in any field, custom fields
and keys included)."""

from __future__ import annotations

import codecs
import json
from typing import Any

import requests
from tnx.crm.v1 import import_service_pb2 as ims

from tests.conftest import Workspace
from tests.support import db
from tests.support.imports import Job, Stub, WorkerProcess, csv_bytes, leads_by_email, run

ROWS = 2_500  # the test stack writes batches of 1,000 rows: the NULs sit in later batches


def _errors(imports: Stub, ws: Workspace, job_id: str) -> list[tuple[int, str, str]]:
    reply = imports.ListImportErrors(
        ims.ListImportErrorsRequest(id=job_id, limit=100), metadata=ws.metadata
    )
    return [(e.row, e.column, e.reason) for e in reply.errors]


def _assert_no_internals(job: Any, errors: list[tuple[int, str, str]]) -> None:
    text = " ".join([job.error, *(reason for _, _, reason in errors)]).lower()
    for leak in ("insert", "copy ", "sql", "psycopg", "traceback", "\x00"):
        assert leak not in text


def test_an_escaped_nul_in_ndjson_is_a_row_error_and_every_other_row_is_imported(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    records: list[str] = [
        json.dumps({"email": f"n{i}@nul.io", "first_name": f"N{i}"}) for i in range(ROWS)
    ]
    records[1499] = json.dumps({"email": "a@nul.io", "first_name": "Ja\u0000ne"})
    records[1799] = json.dumps(
        {"email": "b@nul.io", "custom_fields": {"note": {"deep": ["fine", "x\u0000"]}}}
    )
    records[1999] = '{"email": "c@nul.io", "title": "CT\x00O"}'  # a literal NUL byte
    records[2199] = json.dumps({"email": "d@nul.io", "custom_fields": {"a\u0000b": "x"}})
    records[2299] = json.dumps({"email": "e@nul.io", "plan": "pro\u0000"})  # → custom.plan
    data = ("\n".join(records) + "\n").encode()

    job = run(imports, workspace.metadata, data, format=Job.NDJSON)

    assert job.status == Job.SUCCEEDED, job.error
    assert (job.rows_processed, job.rows_created, job.rows_failed) == (ROWS, ROWS - 5, 5)
    errors = _errors(imports, workspace, job.id)
    assert [row for row, _, _ in errors] == [1500, 1800, 2000, 2200, 2300]
    assert errors[0][1] == "first_name" and "NUL" in errors[0][2]
    assert errors[1][1] == "custom_fields.note" and "NUL" in errors[1][2]
    assert errors[2][1] == "title" and "NUL" in errors[2][2]
    assert errors[3][1] == "custom_fields.a\ufffdb" and "custom field keys" in errors[3][2]
    assert errors[4][1] == "plan" and "NUL" in errors[4][2]
    _assert_no_internals(job, errors)
    leads = leads_by_email(database_url, workspace.id)
    assert len(leads) == ROWS - 5 and leads["n2499@nul.io"]["first_name"] == "N2499"
    assert not {"a@nul.io", "b@nul.io", "c@nul.io", "d@nul.io", "e@nul.io"} & set(leads)


def test_a_literal_nul_byte_in_a_csv_field_is_a_row_error(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    rows = [["email", "first_name", "Notes"]] + [
        [f"c{i}@nul.io", f"C{i}", "ok"] for i in range(ROWS)
    ]
    rows[1200] = ["x@nul.io", "X\x00", "ok"]
    rows[2400] = ["y@nul.io", "Y", "in a custom\x00field"]

    job = run(imports, workspace.metadata, csv_bytes(rows))

    assert job.status == Job.SUCCEEDED, job.error
    assert (job.rows_created, job.rows_failed) == (ROWS - 2, 2)
    errors = _errors(imports, workspace, job.id)
    assert [(row, column) for row, column, _ in errors] == [(1201, "first_name"), (2401, "Notes")]
    assert all("NUL" in reason for _, _, reason in errors)
    _assert_no_internals(job, errors)
    assert len(leads_by_email(database_url, workspace.id)) == ROWS - 2


def test_a_nul_in_a_utf16_csv_is_a_row_error(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    text = "email,first_name\r\nu1@nul.io,Ann\r\nu2@nul.io,B\x00b\r\nu3@nul.io,Cy\r\n"
    job = run(imports, workspace.metadata, codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    assert job.status == Job.SUCCEEDED, job.error
    assert (job.rows_created, job.rows_failed) == (2, 1)
    assert _errors(imports, workspace, job.id)[0][:2] == (3, "first_name")


def test_nuls_in_a_json_array_are_row_errors(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    elements = [json.dumps({"email": f"j{i}@nul.io", "title": "CTO"}) for i in range(ROWS)]
    elements[1100] = json.dumps({"email": "p@nul.io", "title": "C\u0000TO"})
    elements[2100] = '{"email": "q@nul.io", "custom": {"team": "gro\x00wth"}}'
    data = ("[" + ",\n".join(elements) + "]").encode()

    job = run(imports, workspace.metadata, data, format=Job.JSON)

    assert job.status == Job.SUCCEEDED, job.error
    assert (job.rows_created, job.rows_failed) == (ROWS - 2, 2)
    errors = _errors(imports, workspace, job.id)
    assert [(row, column) for row, column, _ in errors] == [(1101, "title"), (2101, "custom.team")]
    assert all("NUL" in reason for _, _, reason in errors)
    _assert_no_internals(job, errors)
    assert len(leads_by_email(database_url, workspace.id)) == ROWS - 2


def test_a_nul_import_over_rest_succeeds_with_the_row_error_listed_and_downloadable(
    http: requests.Session, gateway_url: str, workspace: Workspace, worker: WorkerProcess
) -> None:
    body = b'[{"email": "r1@nul.io"}, {"email": "r2@nul.io", "title": "a\\u0000b"}]'
    headers = {**workspace.headers, "Content-Type": "application/json"}
    base = f"{gateway_url}/api/v1/crm/imports"
    job = http.post(base, data=body, headers=headers, timeout=30).json()
    states = http.get(f"{base}/{job['id']}:watch", headers=workspace.headers, timeout=60).json()
    assert states[-1]["status"] == "SUCCEEDED", states[-1]
    assert (states[-1]["rows_created"], states[-1]["rows_failed"]) == ("1", "1")
    errors = http.get(f"{base}/{job['id']}/errors", headers=workspace.headers, timeout=10)
    assert [(e["row"], e["column"]) for e in errors.json()["errors"]] == [("2", "title")]
    download = http.get(
        f"{base}/{job['id']}/errors:download", headers=workspace.headers, timeout=10
    )
    assert download.status_code == 200
    assert "r2@nul.io,a\ufffdb," in download.text and "\x00" not in download.text


def test_the_stored_row_errors_hold_no_nul(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    data = b'{"email": "s1@nul.io"}\n{"email": "s2@nul.io", "t\\u0000": "v\\u0000"}\n'
    job = run(imports, workspace.metadata, data, format=Job.NDJSON)
    assert job.status == Job.SUCCEEDED, job.error
    stored = db.query(
        database_url,
        "SELECT column_name, value, raw::text FROM import_row_errors WHERE job_id = %s",
        job.id,
    )
    assert len(stored) == 1 and "s2@nul.io" in stored[0][2]
