"""TriggerService as a REST client sees it through the real Envoy gateway: JSON in and out,
the secret once, the test event and the delivery log, and errors as JSON statuses."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.conftest import Workspace
from tests.support import db
from tests.support.errors import json_details
from tests.support.rest import RestClient
from tests.triggers.conftest import ISSUED_SECRETS, NOWHERE

TRIGGERS = "/api/v1/crm/triggers"
TRIGGER: dict[str, Any] = {
    "name": "new leads to the warehouse",
    "enabled": True,
    "event_types": ["lead.created"],
    "condition": {"filter": 'source = "webinar"'},
    "action": {"webhook": {"url": NOWHERE}},
}


class Api(RestClient):
    def create(self, **fields: Any) -> dict[str, Any]:
        created: dict[str, Any] = self.ok("POST", TRIGGERS, json={**TRIGGER, **fields})
        secret = created["action"]["webhook"].get("secret")
        if secret:
            ISSUED_SECRETS.add(secret)
        return created


@pytest.fixture
def api(http: requests.Session, gateway_url: str, workspace: Workspace) -> Api:
    return Api(http, gateway_url, workspace)


def error_of(reply: requests.Response, status: int) -> tuple[int, str, list[str]]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert body["message"]
    reason, fields = json_details(body)
    return body["code"], reason, fields


def stored(database_url: str, workspace_id: str) -> list[tuple[Any, ...]]:
    return db.query(
        database_url,
        "SELECT t.id, t.name, t.enabled, t.event_types, t.action::text, t.updated_at, "
        "(SELECT count(*) FROM deliveries d WHERE d.trigger_id = t.id) "
        "FROM triggers t WHERE t.workspace_id = %s ORDER BY t.id",
        workspace_id,
    )


def test_a_trigger_round_trips_in_snake_case_json(api: Api) -> None:
    created = api.create()
    assert created["id"].startswith("trg_")
    assert created["action"]["webhook"]["url"] == NOWHERE
    assert created["action"]["webhook"]["secret"].startswith("whsec_")
    assert created["event_types"] == ["lead.created"]
    assert created["condition"]["filter"] == 'source = "webinar"'
    assert created["created_at"].endswith("Z")

    fetched = api.ok("GET", f"{TRIGGERS}/{created['id']}")
    assert not fetched["action"]["webhook"].get("secret")
    assert fetched["name"] == created["name"] and fetched["enabled"] is True

    page = api.ok("GET", TRIGGERS, params={"limit": 10})
    assert [t["id"] for t in page["triggers"]] == [created["id"]]
    assert not page["triggers"][0]["action"]["webhook"].get("secret")

    patched = api.ok(
        "PATCH",
        f"{TRIGGERS}/{created['id']}",
        params={"update_mask": "name,enabled"},
        json={"name": "renamed", "enabled": False, "event_types": ["lead.updated"]},
    )
    assert (patched["name"], patched.get("enabled", False)) == ("renamed", False)
    assert patched["event_types"] == ["lead.created"]  # not in the mask
    assert not patched["action"]["webhook"].get("secret")

    assert api.ok("DELETE", f"{TRIGGERS}/{created['id']}") == {}
    assert error_of(api.call("GET", f"{TRIGGERS}/{created['id']}"), 404)[1] == "TRIGGER_NOT_FOUND"


def test_a_test_event_is_queued_and_shows_in_the_delivery_log(api: Api) -> None:
    created = api.create()
    delivery = api.ok("POST", f"{TRIGGERS}/{created['id']}:test", json={})
    assert delivery["id"].startswith("dlv_")
    assert delivery["event_id"].startswith("evt_test_")
    assert delivery["event_type"] == "lead.created"
    assert delivery["trigger_id"] == created["id"]

    log = api.ok("GET", f"{TRIGGERS}/{created['id']}/deliveries")
    assert [d["id"] for d in log["deliveries"]] == [delivery["id"]]
    done = api.ok("GET", f"{TRIGGERS}/{created['id']}/deliveries", params={"status": "SUCCEEDED"})
    assert done.get("deliveries", []) == []  # NOWHERE answers nothing


def test_bad_input_is_400_naming_the_field_and_writes_nothing(
    api: Api, workspace: Workspace, database_url: str
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": ""}, "trigger.name"),
        ({"event_types": ["lead.teleported"]}, "trigger.event_types[0]"),
        (
            {"action": {"webhook": {"url": "https://169.254.169.254/"}}},
            "trigger.action.webhook.url",
        ),
        (
            {"action": {"slack": {"webhook_url": "https://hooks.slack.com/x", "template": "{x}"}}},
            "trigger.action.slack.template",
        ),
    ]
    for fields, field in cases:
        reply = api.call("POST", TRIGGERS, json={**TRIGGER, **fields})
        code, reason, violated = error_of(reply, 400)
        assert (code, reason, violated) == (3, "TRIGGER_INVALID", [field])
    assert stored(database_url, workspace.id) == []

    created = api.create()
    before = stored(database_url, workspace.id)
    reply = api.call(
        "PATCH",
        f"{TRIGGERS}/{created['id']}",
        params={"update_mask": "action"},
        json={"action": {"webhook": {"url": "https://10.1.2.3/"}}},
    )
    assert error_of(reply, 400)[2] == ["trigger.action.webhook.url"]
    assert stored(database_url, workspace.id) == before


def test_another_workspaces_trigger_is_404_and_unchanged(
    api: Api,
    http: requests.Session,
    gateway_url: str,
    other_workspace: Workspace,
    database_url: str,
) -> None:
    theirs = Api(http, gateway_url, other_workspace).create(name="theirs")
    before = stored(database_url, other_workspace.id)
    path = f"{TRIGGERS}/{theirs['id']}"
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", path, {}),
        ("PATCH", path, {"params": {"update_mask": "name"}, "json": {"name": "mine"}}),
        ("DELETE", path, {}),
        ("POST", f"{path}:test", {"json": {}}),
        ("POST", f"{path}:rotateSecret", {"json": {}}),
        ("GET", f"{path}/deliveries", {}),
    ]
    for method, url, kwargs in calls:
        code, reason, _ = error_of(api.call(method, url, **kwargs), 404)
        assert (code, reason) == (5, "TRIGGER_NOT_FOUND"), (method, url)
    assert stored(database_url, other_workspace.id) == before


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
def test_a_missing_or_bad_key_is_401(
    http: requests.Session, gateway_url: str, headers: dict[str, str]
) -> None:
    for method in ("GET", "POST"):
        reply = http.request(
            method, gateway_url + TRIGGERS, headers=headers, json=TRIGGER, timeout=10
        )
        code, reason, _ = error_of(reply, 401)
        assert code == 16 and reason.startswith("API_KEY_")
