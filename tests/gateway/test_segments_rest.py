"""Segments (/api/v1/crm/lists), their export and the events feed through the real Envoy."""

from __future__ import annotations

import csv
import io
import time

import pytest
import requests

from tests.conftest import Workspace
from tests.support import db
from tests.support.errors import json_details
from tests.support.rest import RestClient

LISTS = "/api/v1/crm/lists"
LEADS = "/api/v1/crm/leads"


Api = RestClient


@pytest.fixture
def api(http: requests.Session, gateway_url: str, workspace: Workspace) -> Api:
    return Api(http, gateway_url, workspace)


ICP_RULES = {
    "combinator": "AND",
    "rules": [
        {"condition": {"field": "title", "op": "contains", "value": "vp growth"}},
        {"condition": {"field": "custom.country", "op": "eq", "value": "US"}},
        {"condition": {"field": "custom.employees", "op": "between", "value": [50, 500]}},
    ],
}


def test_rule_list_round_trip_membership_and_lead_filter(api: Api) -> None:
    vp = api.ok(
        "POST",
        LEADS,
        json={
            "email": "vp@g.io",
            "title": "VP Growth",
            "custom_fields": {"country": "US", "employees": 120},
        },
    )
    created = api.ok(
        "POST",
        LISTS,
        json={"name": "ICP - VP Growth, US, 50-500 FTE", "membership": "RULE", "rules": ICP_RULES},
    )
    assert created["membership"] == "RULE" and created["state"] == "READY"
    assert created["member_count"] == "1"  # int64 is a string in proto JSON
    assert created["rules"] == ICP_RULES
    members = api.ok("GET", f"{LISTS}/{created['id']}/members")
    assert [lead["id"] for lead in members["leads"]] == [vp["id"]]
    by_segment = api.ok("GET", LEADS, params={"segment_id": created["id"]})
    assert [lead["segment_ids"] for lead in by_segment["leads"]] == [[created["id"]]]
    other = api.ok("POST", LEADS, json={"email": "cto@g.io", "title": "CTO"})
    assert other["segment_ids"] == []


def test_static_list_members_add_remove_and_csv_export(api: Api) -> None:
    lead = api.ok("POST", LEADS, json={"email": "x@g.io", "first_name": "=cmd|' /C calc'!A0"})
    static = api.ok("POST", LISTS, json={"name": "VIP", "membership": "STATIC"})
    added = api.ok(
        "POST",
        f"{LISTS}/{static['id']}/members:add",
        json={"lead_ids": [lead["id"], "lead_missing"]},
    )
    assert added["changed_lead_ids"] == [lead["id"]] and added["not_found_lead_ids"] == [
        "lead_missing"
    ]
    reply = api.call(
        "GET",
        f"{LISTS}/{static['id']}:export",
        params={"format": "CSV", "fields": ["email", "first_name"]},
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(reply.text))) == [
        ["email", "first_name"],
        ["x@g.io", "'=cmd|' /C calc'!A0"],
    ]
    removed = api.ok(
        "POST", f"{LISTS}/{static['id']}/members:remove", json={"lead_ids": [lead["id"]]}
    )
    assert removed["member_count"] == "0"


def test_list_errors_map_to_http_statuses_and_change_nothing(
    api: Api,
    http: requests.Session,
    gateway_url: str,
    other_workspace: Workspace,
    database_url: str,
) -> None:
    theirs = Api(http, gateway_url, other_workspace).ok(
        "POST", LISTS, json={"name": "t", "membership": "STATIC"}
    )
    rule = api.ok("POST", LISTS, json={"name": "r", "membership": "RULE", "rules": ICP_RULES})
    before = db.snapshot(database_url, api.ws.id)
    cases = [
        (api.call("GET", f"{LISTS}/{theirs['id']}"), 404, "SEGMENT_NOT_FOUND"),
        (
            api.call("GET", f"{LISTS}/{theirs['id']}:export", params={"format": "CSV"}),
            404,
            "SEGMENT_NOT_FOUND",
        ),
        (
            api.call("POST", f"{LISTS}/{rule['id']}/members:add", json={"lead_ids": ["lead_x"]}),
            400,
            "SEGMENT_IS_RULE_BASED",
        ),
        (
            api.call(
                "POST",
                LISTS,
                json={
                    "name": "bad",
                    "membership": "RULE",
                    "rules": {
                        "rules": [{"condition": {"field": "shoe_size", "op": "eq", "value": 1}}]
                    },
                },
            ),
            400,
            "FILTER_INVALID",
        ),
        (api.call("GET", f"{LISTS}/{rule['id']}:export", params={"format": "EXCEL"}), 400, None),
        (api.call("GET", f"{LISTS}/{rule['id']}:export"), 400, "EXPORT_INVALID"),
    ]
    for reply, status, reason in cases:
        assert reply.status_code == status, reply.text
        if reason:
            assert json_details(reply.json())[0] == reason
    assert db.snapshot(database_url, api.ws.id) == before


def test_events_feed_pages_with_a_cursor(api: Api) -> None:
    api.ok("POST", LEADS, json={"email": "feed@g.io"})
    deadline = time.monotonic() + 10  # delivery waits for older transactions to end
    page = api.ok("GET", "/api/v1/crm/events", params={"types": "lead.created"})
    while not page["events"] and time.monotonic() < deadline:
        time.sleep(0.05)
        page = api.ok("GET", "/api/v1/crm/events", params={"types": "lead.created"})
    assert [e["type"] for e in page["events"]] == ["lead.created"]
    after = api.ok("GET", "/api/v1/crm/events", params={"after": page["next_cursor"]})
    assert after["events"] == []
