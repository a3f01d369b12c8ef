"""A NUL (`\\u0000` in JSON, `%00` in a path or query) through the real Envoy gateway is a 400
with the JSON error body naming the field, never a 500, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.conftest import Workspace
from tests.support import db
from tests.support.errors import json_details
from tests.support.imports import WorkerProcess

RULE = {"condition": {"field": "title", "op": "contains", "value": "vp\u0000"}}

# (method, path, query parameters, JSON body or raw CSV, the field the 400 names)
CASES: dict[str, tuple[str, str, dict[str, Any], Any, str]] = {
    "company field": ("POST", "/crm/companies", {}, {"name": "Acme\u0000"}, "company.name"),
    "company custom field": (
        "POST",
        "/crm/companies",
        {},
        {"name": "Acme", "custom_fields": {"tier": ["a", "b\u0000"]}},
        "company.custom_fields.tier[1]",
    ),
    "segment rule value": (
        "POST",
        "/crm/lists",
        {},
        {"name": "ICP", "membership": "RULE", "rules": {"combinator": "AND", "rules": [RULE]}},
        "segment.rules.rules[0].condition.value",
    ),
    "segment patch": (
        "PATCH",
        "/crm/lists/seg_x",
        {"update_mask": "description"},
        {"description": "d\u0000"},
        "segment.description",
    ),
    "id in the path": ("GET", "/crm/leads/lead_%00x", {}, None, "id"),
    "id in a nested path": ("GET", "/crm/lists/seg_%00/members", {}, None, "id"),
    "query parameter": ("GET", "/crm/companies", {"industry": "Saa\x00S"}, None, "industry"),
    "filter": ("GET", "/crm/leads", {"filter": 'title = "a\x00"'}, None, "filter"),
    "lead ids": (
        "POST",
        "/crm/lists/seg_x/members:add",
        {},
        {"lead_ids": ["lead_a", "lead_b", "lead_c", "lead_\u0000"]},
        "lead_ids[3]",
    ),
    "import parameter": (
        "POST",
        "/crm/imports",
        {"default_source": "web\x00"},
        b"email\na@b.io\n",
        "default_source",
    ),
    "public form value": (
        "POST",
        "/public/forms/contact/submissions",
        {},
        {"token": "t", "fields": {"email": "a@b.io\u0000"}},
        "fields.email",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_nul_anywhere_in_a_rest_request_is_a_400_naming_the_field(
    case: str,
    http: requests.Session,
    gateway_url: str,
    workspace: Workspace,
    worker: WorkerProcess,
    database_url: str,
) -> None:
    method, path, params, body, field = CASES[case]
    before = db.snapshot(database_url, workspace.id)
    kwargs: dict[str, Any] = {"params": params, "headers": dict(workspace.headers)}
    if isinstance(body, bytes):
        kwargs["data"] = body
        kwargs["headers"]["Content-Type"] = "text/csv"
    elif body is not None:
        kwargs["json"] = body
    reply = http.request(method, f"{gateway_url}/api/v1{path}", timeout=30, **kwargs)
    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    assert json_details(reply.json()) == ("NUL_CHARACTER", [field])
    assert "NUL" in reply.json()["message"]
    assert db.snapshot(database_url, workspace.id) == before
    jobs = "SELECT count(*) FROM import_jobs WHERE workspace_id = %s"
    assert db.query(database_url, jobs, workspace.id) == [(0,)]
