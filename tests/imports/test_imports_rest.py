"""Imports through the real Envoy gateway: the file is the request body, streamed to the
client-streaming RPC (text/csv, application/json, application/x-ndjson)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import requests

from tests.conftest import Workspace
from tests.support import db
from tests.support.errors import json_details
from tests.support.imports import WorkerProcess, csv_bytes, leads_by_email

BASE = "/api/v1/crm/imports"


def _post(
    http: requests.Session, url: str, ws: Workspace, body: bytes, content_type: str, **params: Any
) -> requests.Response:
    headers = {**ws.headers, "Content-Type": content_type}
    return http.post(f"{url}{BASE}", params=params, data=body, headers=headers, timeout=60)


def _watch(http: requests.Session, url: str, ws: Workspace, job_id: str) -> list[dict[str, Any]]:
    reply = http.get(f"{url}{BASE}/{job_id}:watch", headers=ws.headers, timeout=60)
    assert reply.status_code == 200, reply.text
    states: list[dict[str, Any]] = reply.json()
    return states


def test_a_csv_body_is_streamed_in_and_imported_with_query_parameters(
    http: requests.Session,
    gateway_url: str,
    workspace: Workspace,
    worker: WorkerProcess,
    database_url: str,
) -> None:
    rows = [["Contact", "Given Name", "Job Title"]] + [
        [f"r{i}@rest.io", f"N{i}", "Developer Relations"] for i in range(40_000)
    ]
    body = csv_bytes(rows)
    assert len(body) > 1024 * 1024  # larger than the gateway's JSON body limit
    reply = _post(
        http,
        gateway_url,
        workspace,
        body,
        "text/csv",
        mapping=["Contact=email", "Given Name=first_name"],
        request_id="rest-1",
        default_source="crm-upload",
    )
    assert reply.status_code == 200, reply.text
    job = reply.json()
    assert job["id"].startswith("imp_") and job["status"] == "QUEUED"
    assert job["format"] == "CSV" and int(job["size_bytes"]) == len(body)
    states = _watch(http, gateway_url, workspace, job["id"])
    assert states[-1]["status"] == "SUCCEEDED"
    assert int(states[-1]["rows_created"]) == 40_000
    got = http.get(f"{gateway_url}{BASE}/{job['id']}", headers=workspace.headers, timeout=10)
    assert got.json()["rows_processed"] == "40000"
    lead = leads_by_email(database_url, workspace.id)["r7@rest.io"]
    assert (lead["first_name"], lead["title"], lead["source"]) == (
        "N7",
        "Developer Relations",
        "crm-upload",
    )
    again = _post(http, gateway_url, workspace, body, "text/csv", request_id="rest-1")
    assert again.json()["id"] == job["id"]


def test_json_and_ndjson_bodies_are_imported(
    http: requests.Session, gateway_url: str, workspace: Workspace, worker: WorkerProcess
) -> None:
    body = json.dumps([{"email": "j@rest.io", "title": "CTO"}, {"email": "nope"}]).encode()
    job = _post(http, gateway_url, workspace, body, "application/json").json()
    assert job["format"] == "JSON"
    final = _watch(http, gateway_url, workspace, job["id"])[-1]
    assert (final["rows_created"], final["rows_failed"]) == ("1", "1")
    lines = b'{"email": "n1@rest.io"}\n{"email": "n2@rest.io"}\n'
    job = _post(http, gateway_url, workspace, lines, "application/x-ndjson").json()
    assert job["format"] == "NDJSON"
    assert _watch(http, gateway_url, workspace, job["id"])[-1]["rows_created"] == "2"


def test_row_errors_list_and_download_and_cancel_over_rest(
    http: requests.Session, gateway_url: str, workspace: Workspace, worker: WorkerProcess
) -> None:
    body = b"email;first_name\r\nok@rest.io;Ok\r\nbad;Bad\r\n"
    job = _post(http, gateway_url, workspace, body, "text/csv; charset=utf-8").json()
    _watch(http, gateway_url, workspace, job["id"])
    errors = http.get(
        f"{gateway_url}{BASE}/{job['id']}/errors", headers=workspace.headers, timeout=10
    )
    assert errors.status_code == 200
    listed = errors.json()["errors"]
    assert [(e["row"], e["column"], e["value"]) for e in listed] == [("3", "email", "bad")]
    download = http.get(
        f"{gateway_url}{BASE}/{job['id']}/errors:download", headers=workspace.headers, timeout=10
    )
    assert download.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(download.text)))
    assert table[0] == ["email", "first_name", "import_error"] and table[1][:2] == ["bad", "Bad"]
    cancel = http.post(
        f"{gateway_url}{BASE}/{job['id']}:cancel", json={}, headers=workspace.headers, timeout=10
    )
    assert cancel.status_code == 400
    assert json_details(cancel.json())[0] == "IMPORT_FINISHED"


def test_bad_uploads_get_400_with_field_violations_and_change_nothing(
    http: requests.Session,
    gateway_url: str,
    workspace: Workspace,
    worker: WorkerProcess,
    database_url: str,
) -> None:
    reply = _post(http, gateway_url, workspace, b"a\nb@c.io\n", "text/csv", mapping=["a=bogus"])
    assert reply.status_code == 400
    assert json_details(reply.json()) == ("IMPORT_MAPPING_INVALID", ["mapping[0]"])
    reply = _post(http, gateway_url, workspace, b"<xml/>", "application/xml")
    assert reply.status_code == 400
    assert json_details(reply.json()) == ("IMPORT_INVALID", ["format"])
    reply = _post(http, gateway_url, workspace, b"", "text/csv")
    assert reply.status_code == 400
    assert json_details(reply.json())[0] == "IMPORT_EMPTY"
    unknown = http.get(f"{gateway_url}{BASE}/imp_nope", headers=workspace.headers, timeout=10)
    assert unknown.status_code == 404
    anonymous = http.post(f"{gateway_url}{BASE}", data=b"email\n", timeout=10)
    assert anonymous.status_code == 401
    assert db.query(
        database_url, "SELECT count(*) FROM import_jobs WHERE workspace_id = %s", workspace.id
    ) == [(0,)]
