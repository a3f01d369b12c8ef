"""Forms through the real Envoy: the /api/v1/crm/forms routes, and the public submission
route with its CORS handling, its refusals (404, 403, 400, 413, 429, honeypot) and the
client address taken from the gateway's own x-forwarded-for hop."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.conftest import Workspace
from tests.forms.conftest import IP_LIMIT, LimitedStack
from tests.forms.support import SITE, signed_token, valid_values, written
from tests.support.errors import json_details
from tests.support.rest import RestClient

FORMS = "/api/v1/crm/forms"
UA = "Mozilla/5.0 (X11; Linux x86_64) FormsTest/1.0"

CONTACT_FIELDS: list[dict[str, Any]] = [
    {"name": "email", "type": "EMAIL", "required": True, "maps_to": "email", "label": "Email"},
    {"name": "first_name", "type": "TEXT", "maps_to": "first_name"},
    {"name": "company", "type": "TEXT", "maps_to": "company"},
    {"name": "phone", "type": "PHONE", "maps_to": "phone"},
    {"name": "team_size", "type": "SELECT", "options": ["1-10", "11-50", "51+"]},
    {"name": "consent", "type": "CHECKBOX", "required": True, "maps_to": "custom.consent"},
    {"name": "campaign", "type": "HIDDEN", "default_value": "spring", "maps_to": "custom.utm"},
]


class Api(RestClient):
    def form(self, **extra: Any) -> dict[str, Any]:
        body = {"name": "Contact", "fields": CONTACT_FIELDS, "allowed_origins": [SITE], **extra}
        created: dict[str, Any] = self.ok("POST", FORMS, json=body)
        return created

    def embed(self, form_id: str, origin: str = SITE) -> dict[str, Any]:
        found: dict[str, Any] = self.ok(
            "GET", f"{FORMS}/{form_id}/embed", params={"origin": origin}
        )
        return found


@pytest.fixture
def api(http: requests.Session, gateway_url: str, workspace: Workspace) -> Api:
    return Api(http, gateway_url, workspace)


def post_public(
    http: requests.Session,
    url: str,
    body: Any,
    *,
    origin: str | None = SITE,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    sent = {"User-Agent": UA, **(headers or {})}
    if origin is not None:
        sent["Origin"] = origin
    # No Authorization header: the public route needs none.
    if isinstance(body, bytes | str):
        sent["Content-Type"] = "application/json"
        return http.post(url, data=body, headers=sent, timeout=30)
    return http.post(url, json=body, headers=sent, timeout=30)


def test_form_routes_create_read_update_list_embed_and_delete(api: Api, gateway_url: str) -> None:
    created = api.form(slug="rest-contact")
    assert created["slug"] == "rest-contact" and created["fields"][0]["type"] == "EMAIL"
    assert api.ok("GET", f"{FORMS}/{created['id']}") == created
    patched = api.ok(
        "PATCH",
        f"{FORMS}/{created['id']}",
        params={"update_mask": "name,success_message"},
        json={"name": "Talk to sales", "success_message": "We'll be in touch."},
    )
    assert (patched["name"], patched["success_message"]) == ("Talk to sales", "We'll be in touch.")
    assert patched["fields"] == created["fields"]
    listed = api.ok("GET", FORMS, params={"limit": 10})
    assert [f["id"] for f in listed["forms"]] == [created["id"]] and listed["next_cursor"] == ""
    snippet = api.embed(created["id"], origin="https://www.example.com/")
    # The snippet posts back to the gateway the caller reached.
    assert snippet["submit_url"] == f"{gateway_url}/api/v1/public/forms/rest-contact/submissions"
    assert snippet["origin"] == SITE and snippet["token"] in snippet["html"]
    submissions = api.ok("GET", f"{FORMS}/{created['id']}/submissions")
    assert submissions == {"submissions": [], "next_cursor": ""}
    assert api.ok("DELETE", f"{FORMS}/{created['id']}") == {}
    assert api.call("GET", f"{FORMS}/{created['id']}").status_code == 404


def test_form_route_errors_map_to_http_statuses(
    api: Api, http: requests.Session, gateway_url: str
) -> None:
    created = api.form()
    bad = api.call("POST", FORMS, json={"name": "x", "fields": [{"name": "a", "type": "TEXT"}]})
    assert bad.status_code == 400 and json_details(bad.json()) == ("FORM_INVALID", ["form.fields"])
    refused = api.call("GET", f"{FORMS}/{created['id']}/embed", params={"origin": "https://e.vil"})
    assert refused.status_code == 400
    assert json_details(refused.json()) == ("FORM_ORIGIN_NOT_ALLOWED", ["origin"])
    assert api.call("POST", FORMS, json={**created, "id": ""}).status_code == 409  # same slug
    assert http.get(gateway_url + FORMS, timeout=30).status_code == 401


def test_a_browser_style_submission_is_accepted_with_cors_headers(
    api: Api, http: requests.Session, database_url: str
) -> None:
    static = api.ok("POST", "/api/v1/crm/lists", json={"name": "Inbound", "membership": "STATIC"})
    form = api.form(segment_ids=[static["id"]])
    snippet = api.embed(form["id"])
    preflight = http.options(
        snippet["submit_url"],
        headers={
            "Origin": SITE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=30,
    )
    assert preflight.status_code in (200, 204)
    assert preflight.headers["access-control-allow-origin"] == SITE
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()

    reply = post_public(
        http,
        snippet["submit_url"],
        {"token": snippet["token"], "fields": valid_values(), "page_url": f"{SITE}/contact"},
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["access-control-allow-origin"] == SITE
    body = reply.json()
    assert body["submission_id"].startswith("fsub_") and body["success_message"]

    [submission] = api.ok("GET", f"{FORMS}/{form['id']}/submissions")["submissions"]
    assert (submission["user_agent"], submission["origin"], submission["page_url"]) == (
        UA,
        SITE,
        f"{SITE}/contact",
    )
    lead = api.ok("GET", f"/api/v1/crm/leads/{submission['lead_id']}")
    assert lead["email"] == "ada@lovelace.io" and lead["segment_ids"] == [static["id"]]
    members = api.ok("GET", f"/api/v1/crm/lists/{static['id']}/members")
    assert [m["id"] for m in members["leads"]] == [lead["id"]]


def test_refusals_through_the_gateway_carry_cors_headers_and_write_nothing(
    api: Api, http: requests.Session, gateway_url: str, database_url: str, workspace: Workspace
) -> None:
    form = api.form()
    other = api.form(name="Other")
    snippet = api.embed(form["id"])
    url, token = snippet["submit_url"], snippet["token"]
    expired = signed_token(database_url, slug=form["slug"], origin=SITE, expires_in=-60)
    missing_url = f"{gateway_url}/api/v1/public/forms/no-such-form/submissions"
    good = {"token": token, "fields": valid_values()}
    cases: list[tuple[str, requests.Response, int, str, list[str]]] = [
        ("unknown slug", post_public(http, missing_url, good), 404, "FORM_NOT_FOUND", []),
        ("no origin", post_public(http, url, good, origin=None), 403, "FORM_ORIGIN_MISSING", []),
        (
            "disallowed origin",
            post_public(http, url, good, origin="https://evil.example"),
            403,
            "FORM_ORIGIN_NOT_ALLOWED",
            [],
        ),
        (
            "forged token",
            post_public(http, url, {**good, "token": token[:-3] + "abc"}),
            403,
            "FORM_TOKEN_INVALID",
            [],
        ),
        (
            "expired token",
            post_public(http, url, {**good, "token": expired}),
            403,
            "FORM_TOKEN_EXPIRED",
            [],
        ),
        (
            "other form's token",
            post_public(http, url, {**good, "token": api.embed(other["id"])["token"]}),
            403,
            "FORM_TOKEN_WRONG_FORM",
            [],
        ),
        (
            "missing required field",
            post_public(http, url, {"token": token, "fields": valid_values(consent=False)}),
            400,
            "FORM_SUBMISSION_INVALID",
            ["fields.consent"],
        ),
        (
            "bad email",
            post_public(http, url, {"token": token, "fields": valid_values(email="not-an-email")}),
            400,
            "FORM_SUBMISSION_INVALID",
            ["fields.email"],
        ),
    ]
    before = written(database_url, workspace.id)
    for name, reply, status, reason, fields in cases:
        assert reply.status_code == status, (name, reply.text)
        assert json_details(reply.json()) == (reason, fields), name
        if reply.request.headers.get("Origin"):
            # So the page's script can read why it was refused.
            assert reply.headers["access-control-allow-origin"] == reply.request.headers["Origin"]
    oversized = post_public(http, url, {"token": token, "fields": valid_values(note="x" * 70_000)})
    assert oversized.status_code == 413
    assert oversized.headers["access-control-allow-origin"] == SITE
    malformed = post_public(http, url, b'{"token": ')
    assert malformed.status_code == 400
    trap = post_public(http, url, {**good, "honeypot": "http://spam.example"})
    assert trap.status_code == 200 and trap.json()["submission_id"].startswith("fsub_")
    assert written(database_url, workspace.id) == before


def test_per_ip_limit_uses_the_gateways_hop_not_a_forged_header(
    limited: LimitedStack, http: requests.Session, workspace: Workspace, database_url: str
) -> None:
    limited_api = Api(http, limited.gateway_url, workspace)
    form = limited_api.form()
    snippet = limited_api.embed(form["id"])
    for i in range(IP_LIMIT):
        reply = post_public(
            http,
            snippet["submit_url"],
            {"token": snippet["token"], "fields": valid_values(email=f"x{i}@y.io")},
            headers={"X-Forwarded-For": f"10.9.8.{i}"},  # ignored: the gateway appends the peer
        )
        assert reply.status_code == 200, reply.text
    before = written(database_url, workspace.id)
    refused = post_public(
        http,
        snippet["submit_url"],
        {"token": snippet["token"], "fields": valid_values()},
        headers={"X-Forwarded-For": "10.9.8.200"},
    )
    assert refused.status_code == 429, refused.text
    reason, _ = json_details(refused.json())
    assert reason == "FORM_RATE_LIMITED"
    assert refused.headers["access-control-allow-origin"] == SITE
    assert written(database_url, workspace.id) == before
