"""Through the real gateway: the document is served without a key, replies about real
resources (rich ones, which a fuzzer rarely builds) match it, streams are framed as it says,
and input the transcoder mangles is a 400, not a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import requests
import schemathesis
from openapi_schema_validator import OAS31Validator

from tests.conftest import Workspace
from tests.openapi.conftest import SPEC_PATH, Gateway
from tests.support.rest import RestClient

SCHEMA = schemathesis.openapi.from_path(SPEC_PATH)
CRM = "/api/v1/crm"


@pytest.fixture
def workspace(isolated: Gateway) -> Workspace:
    return isolated.workspace()


@pytest.fixture
def api(isolated: Gateway, workspace: Workspace) -> Iterator[Checked]:
    with requests.Session() as http:
        yield Checked(http, isolated.url, workspace)


class Checked(RestClient):
    """Calls that must succeed with a reply the document describes."""

    def check(self, method: str, template: str, path: str = "", **kwargs: Any) -> Any:
        reply = self.call(method, CRM + (path or template), **kwargs)
        assert reply.status_code == 200, reply.text
        SCHEMA[CRM + template][method].validate_response(reply)
        return reply.json() if reply.headers["content-type"] == "application/json" else reply


def test_the_gateway_serves_the_document_without_a_key(isolated: Gateway) -> None:
    url = isolated.url + "/api/v1/openapi.json"
    reply = requests.get(url, timeout=10)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.content == SPEC_PATH.read_bytes()
    head = requests.head(url, timeout=10)
    assert (head.status_code, head.headers["content-length"]) == (200, str(len(reply.content)))
    refused = requests.post(url, timeout=10)
    assert refused.status_code == 404 and refused.json()["code"] == 5


def test_replies_about_real_resources_match_the_document(api: Checked) -> None:
    company = api.check(
        "POST",
        "/companies",
        json={
            "name": "Acme",
            "domain": "acme.io",
            "employee_count": 120,
            "annual_revenue": "5000000",
            "country": "US",
        },
    )
    lead = api.check(
        "POST",
        "/leads",
        json={
            "email": "jane@acme.io",
            "first_name": "Jane",
            "title": "VP Growth",
            "custom_fields": {"employees": 120, "beta": True, "tags": ["a", 1]},
        },
    )
    assert lead["linked_company"]["id"] == company["id"]
    assert lead["linked_company"]["annual_revenue"] == "5000000"  # int64: a string
    api.check("GET", "/leads/{id}", f"/leads/{lead['id']}")
    api.check("GET", "/leads", params={"filter": "custom.employees > 50", "limit": 5})
    api.check("GET", "/companies/{id}/tree", f"/companies/{company['id']}/tree")
    rules = {
        "combinator": "OR",
        "rules": [
            {"condition": {"field": "title", "op": "contains", "value": "growth"}},
            {
                "group": {
                    "rules": [{"condition": {"field": "score", "op": "between", "value": [1, 9]}}]
                }
            },
        ],
    }
    segment = api.check(
        "POST", "/lists", json={"name": "ICP", "membership": "RULE", "rules": rules}
    )
    assert segment["member_count"] == "1" and segment["state"] == "READY"
    api.check("GET", "/lists/{id}/members", f"/lists/{segment['id']}/members")
    export = api.check(
        "GET",
        "/lists/{id}:export",
        f"/lists/{segment['id']}:export",
        params={"format": "GOOGLE_ADS"},
    )
    assert export.headers["content-type"].startswith("text/csv")
    api.check("GET", "/events", params={"subject_id": lead["id"]})


def test_scoring_triggers_connectors_and_forms_match_the_document(api: Checked) -> None:
    lead = api.check("POST", "/leads", json={"email": "cto@acme.io", "title": "CTO"})
    api.check(
        "PATCH",
        "/scoring/model",
        json={
            "fit_rules": [
                {
                    "id": "cto",
                    "points": 30,
                    "rules": {
                        "rules": [{"condition": {"field": "title", "op": "eq", "value": "CTO"}}]
                    },
                }
            ],
            "engagement_rules": [
                {"id": "clicks", "activity_type": "email_click", "points": 10, "half_life_days": 14}
            ],
            "thresholds": [{"name": "MQL", "score": 35, "hysteresis": 5}],
        },
    )
    path = f"/leads/{lead['id']}"
    api.check(
        "POST",
        "/leads/{lead_id}/activities",
        f"{path}/activities",
        json={"type": "email_click", "properties": {"url": "/pricing"}},
    )
    score = api.check("GET", "/leads/{lead_id}/score", f"{path}/score")
    assert score["score"] == 40 and score["model_version"] == "1"
    trigger = api.check(
        "POST",
        "/triggers",
        json={
            "name": "MQLs",
            "enabled": True,
            "event_types": ["lead.threshold_crossed"],
            "condition": {"threshold": {"name": "MQL", "direction": "UP"}},
            "action": {"webhook": {"url": "https://hooks.example.com/tnx"}},
        },
    )
    assert trigger["action"]["webhook"]["secret"].startswith("whsec_")
    api.check("POST", "/triggers/{id}:test", f"/triggers/{trigger['id']}:test", json={})
    api.check("GET", "/triggers/{id}/deliveries", f"/triggers/{trigger['id']}/deliveries")
    connector = api.check(
        "POST",
        "/enrichment/connectors",
        json={
            "name": "People",
            "kind": "HTTP_JSON",
            "http_json": {
                "url_template": "https://enrich.example.com/p?email={email}",
                "headers": {"X-Api-Key": "k"},
                "no_match_statuses": [404],
            },
            "field_map": {"$.title": "title"},
        },
    )
    assert connector["http_json"]["header_names"] == ["X-Api-Key"]
    form = api.check(
        "POST",
        "/forms",
        json={
            "name": "Demo",
            "allowed_origins": ["https://www.example.com"],
            "fields": [
                {
                    "name": "email",
                    "label": "Email",
                    "type": "EMAIL",
                    "required": True,
                    "maps_to": "email",
                }
            ],
        },
    )
    api.check(
        "GET",
        "/forms/{id}/embed",
        f"/forms/{form['id']}/embed",
        params={"origin": "https://www.example.com"},
    )


def test_imports_replies_match_the_document(api: Checked) -> None:
    job = api.check(
        "POST",
        "/imports",
        data=b"email\nrow@example.com\n",
        headers={"Content-Type": "text/csv"},
        params={"mapping": "email=email"},
    )
    assert job["size_bytes"] == "22"
    path = f"/imports/{job['id']}"
    api.check("POST", "/imports/{id}:cancel", f"{path}:cancel", json={})
    # Cancelled, the watch ends at once: one JSON array of the job's states.
    (watched,) = api.check("GET", "/imports/{id}:watch", f"{path}:watch")
    assert watched["status"] == "CANCELLED"
    api.check("GET", "/imports/{id}/errors", f"{path}/errors")
    api.check("GET", "/imports/{id}/errors:download", f"{path}/errors:download")


def test_the_events_watch_sends_one_event_object_a_line(
    isolated: Gateway, workspace: Workspace, spec: dict[str, Any]
) -> None:
    api = RestClient(requests.Session(), isolated.url, workspace)
    for n in range(2):
        api.ok("POST", f"{CRM}/leads", json={"email": f"w{n}@example.com"})
    event = OAS31Validator({"$ref": "#/components/schemas/Event", **spec})
    documented = spec["paths"][f"{CRM}/events:watch"]["get"]["responses"]["200"]
    with api.call("GET", f"{CRM}/events:watch", stream=True) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"] in documented["content"]
        lines = reply.iter_lines()
        first, second = next(lines), next(lines)
    for line in (first, second):
        event.validate(json.loads(line))


def test_a_value_the_transcoder_cannot_encode_is_a_400_not_a_500(
    isolated: Gateway, workspace: Workspace
) -> None:
    api = RestClient(requests.Session(), isolated.url, workspace)
    # Envoy turns an object given for a map<string, string> value into corrupt protobuf.
    reply = api.call("POST", f"{CRM}/enrichment/connectors", json={"field_map": {"k": {}}})
    assert reply.status_code == 400
    assert reply.json()["details"][0]["reason"] == "REQUEST_MALFORMED"
    SCHEMA[f"{CRM}/enrichment/connectors"]["POST"].validate_response(reply)
    with grpc.insecure_channel(isolated.grpc_address) as channel:
        garbage = b"\xff\xff"
        unary = channel.unary_unary("/tnx.crm.v1.LeadService/GetLead", None, None)
        with pytest.raises(grpc.RpcError) as refused:
            unary(garbage, metadata=workspace.metadata, timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        stream = channel.stream_unary("/tnx.crm.v1.ScoringService/StreamActivities", None, None)
        with pytest.raises(grpc.RpcError) as refused:
            stream(iter([garbage]), metadata=workspace.metadata, timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_header_names_grpc_metadata_cannot_carry_are_dropped_not_a_500(
    isolated: Gateway, workspace: Workspace
) -> None:
    api = RestClient(requests.Session(), isolated.url, workspace)
    for name in ("x+y", "a~b", "q`t", "$"):
        reply = api.call("GET", f"{CRM}/leads", headers={name: "1"})
        assert reply.status_code == 200, (name, reply.text)
