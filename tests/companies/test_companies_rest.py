"""The company graph as a REST client sees it through the real Envoy gateway."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.conftest import Workspace
from tests.support import db
from tests.support.errors import json_details
from tests.support.rest import RestClient

COMPANIES = "/api/v1/crm/companies"
LEADS = "/api/v1/crm/leads"


class Api(RestClient):
    def company(self, **fields: Any) -> dict[str, Any]:
        created: dict[str, Any] = self.ok("POST", COMPANIES, json=fields)
        return created


@pytest.fixture
def api(http: requests.Session, gateway_url: str, workspace: Workspace) -> Api:
    return Api(http, gateway_url, workspace)


@pytest.fixture
def other_api(http: requests.Session, gateway_url: str, other_workspace: Workspace) -> Api:
    return Api(http, gateway_url, other_workspace)


def error_of(reply: requests.Response, status: int) -> tuple[str, list[str]]:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert isinstance(body["code"], int) and body["message"]
    return json_details(body)


def test_create_get_patch_archive_round_trip_in_snake_case_json(api: Api) -> None:
    made = api.company(
        name="Acme",
        domain="HTTPS://www.Acme.com/",
        industry="SaaS",
        employeeCount=40,
        annual_revenue="2500000",
        annual_revenue_currency="eur",
        country="fr",
        custom_fields={"tier": "gold"},
    )
    assert made["id"].startswith("cmp_") and made["domain"] == "acme.com"
    assert (made["employee_count"], made["annual_revenue"]) == (40, "2500000")
    assert (made["annual_revenue_currency"], made["country"]) == ("EUR", "FR")
    assert made["custom_fields"] == {"tier": "gold"} and made["parent_company_id"] == ""
    assert api.ok("GET", f"{COMPANIES}/{made['id']}") == made

    patched = api.ok(
        "PATCH",
        f"{COMPANIES}/{made['id']}",
        params={"update_mask": "industry,custom_fields.tier"},
        json={"industry": "Fintech", "name": "ignored", "custom_fields": {"tier": "silver"}},
    )
    assert (patched["name"], patched["industry"]) == ("Acme", "Fintech")
    assert patched["custom_fields"] == {"tier": "silver"}

    archived = api.ok("POST", f"{COMPANIES}/{made['id']}:archive", json={})
    assert archived["archived_at"]
    restored = api.ok("POST", f"{COMPANIES}/{made['id']}:unarchive", json={})
    assert "archived_at" not in restored


def test_list_filters_and_cursor_pagination(api: Api) -> None:
    for i, (industry, staff) in enumerate([("SaaS", 10), ("SaaS", 200), ("Retail", 300)]):
        api.company(name=f"Co {i}", domain=f"co{i}.com", industry=industry, employee_count=staff)
    first = api.ok("GET", COMPANIES, params={"industry": "saas", "limit": 1})
    assert [c["name"] for c in first["companies"]] == ["Co 0"] and first["next_cursor"]
    rest = api.ok(
        "GET", COMPANIES, params={"industry": "saas", "limit": 5, "cursor": first["next_cursor"]}
    )
    assert [c["name"] for c in rest["companies"]] == ["Co 1"] and rest["next_cursor"] == ""
    ranged = api.ok("GET", COMPANIES, params={"employee_count_min": 100, "query": "co"})
    assert [c["name"] for c in ranged["companies"]] == ["Co 1", "Co 2"]
    _, fields = error_of(api.call("GET", COMPANIES, params={"limit": -1}), 400)
    assert fields == ["limit"]


def test_tree_shows_ancestors_and_paginated_subsidiaries(api: Api) -> None:
    root = api.company(name="Root")
    child = api.company(name="Child", parent_company_id=root["id"])
    grandchildren = [
        api.company(name=f"Grandchild {i}", parentCompanyId=child["id"]) for i in range(3)
    ]
    leaf = api.ok("GET", f"{COMPANIES}/{grandchildren[0]['id']}/tree")
    assert [c["name"] for c in leaf["ancestors"]] == ["Child", "Root"]
    assert leaf["subsidiaries"] == [] and leaf["next_cursor"] == ""

    page = api.ok("GET", f"{COMPANIES}/{root['id']}/tree", params={"limit": 2})
    assert [(n["company"]["name"], n["depth"]) for n in page["subsidiaries"]] == [
        ("Child", 1),
        ("Grandchild 0", 2),
    ]
    rest = api.ok(
        "GET", f"{COMPANIES}/{root['id']}/tree", params={"limit": 2, "cursor": page["next_cursor"]}
    )
    assert [n["company"]["name"] for n in rest["subsidiaries"]] == ["Grandchild 1", "Grandchild 2"]
    shallow = api.ok("GET", f"{COMPANIES}/{root['id']}/tree", params={"max_depth": 1})
    assert [n["company"]["name"] for n in shallow["subsidiaries"]] == ["Child"]


def test_parent_change_that_makes_a_cycle_is_refused_with_400_and_changes_nothing(
    api: Api, database_url: str, workspace: Workspace
) -> None:
    top = api.company(name="Top")
    bottom = api.company(name="Bottom", parent_company_id=top["id"])
    before = db.snapshot(database_url, workspace.id)
    reply = api.call(
        "PATCH",
        f"{COMPANIES}/{top['id']}",
        params={"update_mask": "parent_company_id"},
        json={"parent_company_id": bottom["id"]},
    )
    assert error_of(reply, 400) == ("COMPANY_HIERARCHY_CYCLE", ["company.parent_company_id"])
    assert f"{top['id']} → {bottom['id']} → {top['id']}" in reply.json()["message"]
    assert reply.json()["code"] == 9  # FAILED_PRECONDITION
    assert db.snapshot(database_url, workspace.id) == before


def test_bad_input_gets_the_right_status_and_changes_nothing(
    api: Api, other_api: Api, database_url: str, workspace: Workspace
) -> None:
    taken = api.company(name="Taken", domain="taken.com")
    parent = api.company(name="Parent")
    api.company(name="Child", parent_company_id=parent["id"])
    theirs = other_api.company(name="Theirs")
    before = db.snapshot(database_url, workspace.id)

    duplicate = api.call("POST", COMPANIES, json={"name": "Copy", "domain": "WWW.TAKEN.COM"})
    assert error_of(duplicate, 409) == ("COMPANY_DOMAIN_TAKEN", ["company.domain"])
    malformed = api.call(
        "POST",
        COMPANIES,
        json={"name": "Bad", "domain": "nope", "country": "Narnia", "employee_count": -2},
    )
    assert error_of(malformed, 400) == (
        "COMPANY_INVALID",
        ["company.domain", "company.employee_count", "company.country"],
    )
    foreign_parent = api.call(
        "POST", COMPANIES, json={"name": "X", "parent_company_id": theirs["id"]}
    )
    assert error_of(foreign_parent, 404)[0] == "PARENT_COMPANY_NOT_FOUND"
    assert error_of(api.call("GET", f"{COMPANIES}/{theirs['id']}"), 404)[0] == "COMPANY_NOT_FOUND"
    no_force = api.call("POST", f"{COMPANIES}/{parent['id']}:archive", json={})
    assert error_of(no_force, 400)[0] == "COMPANY_HAS_SUBSIDIARIES"
    bad_depth = api.call("GET", f"{COMPANIES}/{parent['id']}/tree", params={"max_depth": -1})
    assert error_of(bad_depth, 400) == ("MAX_DEPTH_NEGATIVE", ["max_depth"])
    assert taken["domain"] == "taken.com"
    assert db.snapshot(database_url, workspace.id) == before

    forced = api.ok("POST", f"{COMPANIES}/{parent['id']}:archive", json={"force": True})
    assert forced["archived_at"]


def test_leads_link_to_companies_and_filter_by_company_and_group(api: Api) -> None:
    group = api.company(name="Group", domain="group.com", industry="SaaS", employee_count=500)
    sub = api.company(
        name="Sub",
        domain="sub.group.com",
        industry="Retail",
        employee_count=20,
        parent_company_id=group["id"],
    )
    auto = api.ok("POST", LEADS, json={"email": "ann@group.com"})
    assert (auto["company_id"], auto["company"]) == (group["id"], "Group")
    assert auto["linked_company"]["industry"] == "SaaS"
    explicit = api.ok("POST", LEADS, json={"email": "bo@example.org", "company_id": sub["id"]})
    assert explicit["linked_company"]["name"] == "Sub"
    api.ok("POST", LEADS, json={"email": "cy@gmail.com"})

    def emails(**params: Any) -> list[str]:
        return [lead["email"] for lead in api.ok("GET", LEADS, params=params)["leads"]]

    assert emails(company_group_id=group["id"]) == ["ann@group.com", "bo@example.org"]
    assert emails(company_group_id=sub["id"]) == ["bo@example.org"]
    assert emails(filter='company.industry = "SaaS"') == ["ann@group.com"]
    assert emails(filter="company.employee_count >= 10") == ["ann@group.com", "bo@example.org"]
    missing = api.call("GET", LEADS, params={"company_group_id": "cmp_01JUNKJUNKJUNKJUNKJUNKJUNK"})
    assert error_of(missing, 404) == ("COMPANY_NOT_FOUND", ["company_group_id"])
