"""Activities through the real Envoy gateway: create, batch, stream (a JSON array body
streamed into the client-streaming RPC), the timeline, and the 400 and 404 answers."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.conftest import Workspace
from tests.scoring.conftest import stored, written
from tests.support.errors import json_details
from tests.support.rest import RestClient

LEADS = "/api/v1/crm/leads"
BATCH = "/api/v1/crm/activities:batchCreate"
STREAM = "/api/v1/crm/activities:stream"


class Api(RestClient):
    def lead(self, email: str) -> str:
        created: dict[str, Any] = self.ok("POST", LEADS, json={"email": email})
        lead_id: str = created["id"]
        return lead_id

    def record(self, lead_id: str, **activity: Any) -> dict[str, Any]:
        recorded: dict[str, Any] = self.ok("POST", f"{LEADS}/{lead_id}/activities", json=activity)
        return recorded

    def timeline(self, lead_id: str, **params: Any) -> dict[str, Any]:
        found: dict[str, Any] = self.ok("GET", f"{LEADS}/{lead_id}/activities", params=params)
        return found


@pytest.fixture
def api(http: requests.Session, gateway_url: str, workspace: Workspace) -> Api:
    return Api(http, gateway_url, workspace)


def test_an_activity_recorded_over_rest_is_in_the_timeline(api: Api) -> None:
    lead_id = api.lead("rest@example.com")
    recorded = api.record(
        lead_id,
        type="email_click",
        occurred_at="2024-05-01T12:00:00Z",
        properties={"url": "/pricing", "n": 2},
        source="email",
        idempotency_key="rest-1",
    )
    assert recorded["id"].startswith("act_")
    assert recorded["lead_id"] == lead_id
    assert recorded["occurred_at"] == "2024-05-01T12:00:00Z"
    assert recorded["properties"] == {"url": "/pricing", "n": 2}
    assert (recorded["source"], recorded["idempotency_key"]) == ("email", "rest-1")

    again = api.record(lead_id, type="email_click", idempotency_key="rest-1")
    assert again == recorded

    later = api.record(lead_id, type="page_view", occurred_at="2024-05-02T08:30:00Z")
    page = api.timeline(lead_id, limit=1)
    assert [a["id"] for a in page["activities"]] == [later["id"]]
    rest = api.timeline(lead_id, limit=1, cursor=page["next_cursor"])
    assert rest == {"activities": [recorded], "next_cursor": ""}

    clicks = api.timeline(lead_id, types="email_click")
    assert [a["id"] for a in clicks["activities"]] == [recorded["id"]]
    since = api.timeline(lead_id, after="2024-05-02T00:00:00Z")
    assert [a["id"] for a in since["activities"]] == [later["id"]]

    lead = api.ok("GET", f"{LEADS}/{lead_id}")
    assert lead["last_activity_at"] == "2024-05-02T08:30:00Z"


def test_bad_input_over_rest_is_400_naming_the_fields(
    api: Api, workspace: Workspace, database_url: str
) -> None:
    lead_id = api.lead("bad-rest@example.com")
    before = written(database_url, workspace.id)
    reply = api.call(
        "POST",
        f"{LEADS}/{lead_id}/activities",
        json={"type": "score_adjusted", "properties": {"points": 2.5}, "source": "x" * 101},
    )
    assert reply.status_code == 400, reply.text
    assert json_details(reply.json()) == (
        "ACTIVITY_INVALID",
        ["activity.source", "activity.properties.points"],
    )
    assert written(database_url, workspace.id) == before


def test_another_workspaces_lead_over_rest_is_404(
    api: Api,
    http: requests.Session,
    gateway_url: str,
    other_workspace: Workspace,
    database_url: str,
) -> None:
    theirs = Api(http, gateway_url, other_workspace).lead("theirs@example.com")
    before = written(database_url, other_workspace.id)
    for method, body in (("POST", {"type": "page_view"}), ("GET", None)):
        reply = api.call(method, f"{LEADS}/{theirs}/activities", json=body)
        assert reply.status_code == 404, reply.text
        assert json_details(reply.json())[0] == "LEAD_NOT_FOUND"
    assert written(database_url, other_workspace.id) == before


def test_a_batch_over_rest_answers_item_by_item(
    api: Api, workspace: Workspace, database_url: str
) -> None:
    lead_id = api.lead("batch-rest@example.com")
    reply = api.ok(
        "POST",
        BATCH,
        json={
            "activities": [
                {"lead_id": lead_id, "type": "page_view", "occurred_at": "2024-05-01T12:00:00Z"},
                {"email": "Batch-Rest@Example.com", "type": "webinar_attended"},
                {"email": "nobody@example.com", "type": "page_view"},
                {"lead_id": lead_id, "type": "page_view", "properties": {"x": "a\u0000"}},
            ]
        },
    )
    results = reply["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert results[0]["activity"]["lead_id"] == results[1]["activity"]["lead_id"] == lead_id
    assert [r["duplicate"] for r in results] == [False, False, False, False]
    assert "error" not in results[0] and "activity" not in results[2]
    assert results[2]["error"]["code"] == "NOT_FOUND"
    assert results[2]["error"]["reason"] == "LEAD_NOT_FOUND"
    assert results[2]["error"]["fields"] == ["activities[2].email"]
    assert results[3]["error"]["code"] == "INVALID_ARGUMENT"
    assert results[3]["error"]["fields"] == ["activities[3].properties"]
    assert sorted(row[0] for row in stored(database_url, workspace.id)) == sorted(
        r["activity"]["id"] for r in results[:2]
    )


def test_an_empty_batch_over_rest_is_400(api: Api) -> None:
    reply = api.call("POST", BATCH, json={"activities": []})
    assert reply.status_code == 400, reply.text
    assert json_details(reply.json()) == ("ACTIVITY_BATCH_SIZE", ["activities"])


def test_a_json_array_streams_into_stream_activities(
    api: Api, workspace: Workspace, database_url: str
) -> None:
    lead_id = api.lead("stream-rest@example.com")
    body = [
        {
            "activities": [
                {"lead_id": lead_id, "type": "page_view", "idempotency_key": "s1"},
                {"lead_id": lead_id, "type": "page_view", "occurred_at": "2024-05-01T12:00:00Z"},
            ]
        },
        {
            "activities": [
                {"email": "stream-rest@example.com", "type": "email_open", "idempotency_key": "s1"},
                {"lead_id": lead_id, "type": "NOPE"},
                {"email": "stream-rest@example.com", "type": "email_open"},
            ]
        },
    ]
    reply = api.ok("POST", STREAM, json=body)
    # int64 counts are JSON strings (proto3 JSON mapping).
    assert (reply["recorded"], reply["duplicates"], reply["failed"]) == ("3", "1", "1")
    [error] = reply["errors"]
    assert error["index"] == 3
    assert error["error"]["reason"] == "ACTIVITY_INVALID"
    assert error["error"]["fields"] == ["activities[3].type"]
    types = sorted(row[2] for row in stored(database_url, workspace.id))
    assert types == ["email_open", "page_view", "page_view"]
