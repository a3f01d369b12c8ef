"""The Leads API as a REST client sees it through the real Envoy gateway."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.conftest import Workspace
from tests.support import db
from tests.support.errors import json_details
from tests.support.rest import RestClient

LEADS = "/api/v1/crm/leads"


class Api(RestClient):
    def create(self, **lead: Any) -> dict[str, Any]:
        reply = self.call("POST", LEADS, json=lead)
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body


@pytest.fixture
def api(http: requests.Session, gateway_url: str, workspace: Workspace) -> Api:
    return Api(http, gateway_url, workspace)


def error_of(reply: requests.Response, status: int) -> tuple[str, list[str]]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert isinstance(body["code"], int) and body["message"]
    return json_details(body)


def test_create_get_patch_archive_round_trip_in_snake_case_json(api: Api) -> None:
    lead = api.create(
        email="Rest@Example.com",
        firstName="Rae",
        title="Head of Growth",
        custom_fields={"industry": "SaaS", "employees": 80},
    )
    assert lead["email"] == "rest@example.com" and lead["first_name"] == "Rae"
    assert lead["custom_fields"] == {"industry": "SaaS", "employees": 80}
    assert lead["status"] == "LEAD_STATUS_NEW" and lead["segment_ids"] == []

    fetched = api.call("GET", f"{LEADS}/{lead['id']}").json()
    assert fetched == lead

    patched = api.call(
        "PATCH",
        f"{LEADS}/{lead['id']}",
        params={"update_mask": "title,custom_fields.employees"},
        json={"title": "VP Growth", "first_name": "ignored", "custom_fields": {"employees": 90}},
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["title"], body["first_name"], body["custom_fields"]) == (
        "VP Growth",
        "Rae",
        {"industry": "SaaS", "employees": 90},
    )

    archived = api.call("POST", f"{LEADS}/{lead['id']}:archive", json={}).json()
    assert archived["archived_at"]
    restored = api.call("POST", f"{LEADS}/{lead['id']}:unarchive", json={}).json()
    assert "archived_at" not in restored


def test_list_filters_and_cursor_pagination(api: Api) -> None:
    for i in range(5):
        api.create(
            email=f"r{i}@example.com",
            score=i * 20,
            custom_fields={"industry": "SaaS" if i % 2 else "Retail"},
        )
    first = api.call("GET", LEADS, params={"limit": 2, "score_min": 20}).json()
    assert [lead["email"] for lead in first["leads"]] == ["r1@example.com", "r2@example.com"]
    rest = api.call(
        "GET", LEADS, params={"limit": 10, "score_min": 20, "cursor": first["next_cursor"]}
    ).json()
    assert [lead["email"] for lead in rest["leads"]] == ["r3@example.com", "r4@example.com"]
    assert rest["next_cursor"] == ""
    filtered = api.call(
        "GET", LEADS, params={"filter": 'score >= 50 AND custom.industry = "SaaS"'}
    ).json()
    assert [lead["email"] for lead in filtered["leads"]] == ["r3@example.com"]


def test_search_finds_a_lead_by_title_phrase(api: Api) -> None:
    api.create(email="growth@example.com", title="Head of Growth")
    api.create(email="other@example.com", title="Engineer")
    reply = api.call("POST", f"{LEADS}:search", json={"query": "head of growth", "limit": 5})
    assert [lead["email"] for lead in reply.json()["leads"]] == ["growth@example.com"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Bearer tnx_" + "a" * 38}],
)
def test_bad_key_is_401_with_a_json_status(
    http: requests.Session, gateway_url: str, headers: dict[str, str]
) -> None:
    reply = http.get(gateway_url + LEADS, headers=headers, timeout=10)
    reason, _ = error_of(reply, 401)
    assert reason.startswith("API_KEY_")


def test_lead_of_another_workspace_is_404(
    api: Api,
    other_workspace: Workspace,
    http: requests.Session,
    gateway_url: str,
    database_url: str,
) -> None:
    theirs = Api(http, gateway_url, other_workspace).create(email="theirs@example.com")
    before = db.snapshot(database_url, other_workspace.id)
    assert error_of(api.call("GET", f"{LEADS}/{theirs['id']}"), 404)[0] == "LEAD_NOT_FOUND"
    assert (
        error_of(api.call("PATCH", f"{LEADS}/{theirs['id']}", json={"title": "x"}), 404)[0]
        == "LEAD_NOT_FOUND"
    )
    assert (
        error_of(api.call("POST", f"{LEADS}/{theirs['id']}:archive", json={}), 404)[0]
        == "LEAD_NOT_FOUND"
    )
    assert db.snapshot(database_url, other_workspace.id) == before


def test_bad_input_is_400_naming_the_field_and_changes_nothing(api: Api, database_url: str) -> None:
    lead = api.create(email="keep@example.com")
    before = db.snapshot(database_url, api.ws.id)
    cases = [
        (api.call("POST", LEADS, json={"email": "not-an-email"}), ["lead.email"]),
        (
            api.call(
                "PATCH", f"{LEADS}/{lead['id']}", params={"update_mask": "shoe_size"}, json={}
            ),
            ["update_mask"],
        ),
        (api.call("GET", LEADS, params={"filter": "shoe_size = 3"}), ["filter"]),
        (api.call("GET", LEADS, params={"filter": "score >="}), ["filter"]),
        (api.call("GET", LEADS, params={"limit": -5}), ["limit"]),
        (api.call("GET", LEADS, params={"cursor": "forged"}), ["cursor"]),
    ]
    for reply, fields in cases:
        assert error_of(reply, 400)[1] == fields
    assert db.snapshot(database_url, api.ws.id) == before


def test_duplicate_email_in_any_case_is_409(api: Api, database_url: str) -> None:
    api.create(email="twice@example.com")
    before = db.snapshot(database_url, api.ws.id)
    assert (
        error_of(api.call("POST", LEADS, json={"email": "TWICE@example.com"}), 409)[0]
        == "LEAD_EMAIL_TAKEN"
    )
    assert db.snapshot(database_url, api.ws.id) == before


def test_oversized_body_is_413_and_changes_nothing(api: Api, database_url: str) -> None:
    before = db.snapshot(database_url, api.ws.id)
    reply = api.call("POST", LEADS, json={"email": "big@example.com", "title": "x" * 2_000_000})
    error_of(reply, 413)
    assert db.snapshot(database_url, api.ws.id) == before


@pytest.mark.parametrize(
    "path", ["/api/v1/crm/nothing-here", "/api/v1/crm/leads/a/b/c", "/", "/admin"]
)
def test_unknown_path_is_404_never_503(api: Api, path: str) -> None:
    error_of(api.call("GET", path), 404)


def test_unknown_query_parameter_is_400(api: Api) -> None:
    error_of(api.call("GET", LEADS, params={"colour": "blue"}), 400)


def test_malformed_json_body_is_400(api: Api, database_url: str) -> None:
    before = db.snapshot(database_url, api.ws.id)
    error_of(
        api.call("POST", LEADS, data="{not json", headers={"content-type": "application/json"}), 400
    )
    assert db.snapshot(database_url, api.ws.id) == before
