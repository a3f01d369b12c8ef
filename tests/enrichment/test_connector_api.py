"""EnrichmentService as a client uses it, over gRPC and (a few calls) REST through Envoy:
the connector's lifecycle, header values that are written but never read back, bad input
refused naming the field with nothing written, and other workspaces' connectors, runs and
leads that do not exist for you."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
import requests
from google.protobuf import field_mask_pb2
from tnx.crm.v1 import enrichment_service_pb2 as rpc

from tests.conftest import Workspace
from tests.enrichment import fake_provider
from tests.enrichment.conftest import (
    PERSON_MAP,
    Connector,
    Enrichment,
    Leads,
    Run,
    batch,
    built_in,
    create_connector,
    enrich,
    enrich_and_wait,
    get_connector,
    get_lead,
    get_run,
    http_json,
    new_lead,
    person_connector,
    provenance,
)
from tests.enrichment.fake_provider import Provider
from tests.support import db
from tests.support.errors import details, json_details
from tests.support.rest import RestClient

CONNECTORS = "/api/v1/crm/enrichment/connectors"
PUBLIC = "https://api.example.com/v5/person/enrich?email={email}"


def refused(call: Callable[[], object], code: grpc.StatusCode) -> tuple[str, list[str]]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == code, caught.value.details()
    return details(caught.value)


def stored(database_url: str, workspace_id: str) -> list[tuple[Any, ...]]:
    """The workspace's connectors and runs as stored."""
    return db.query(
        database_url,
        "SELECT 'connector', id, name, config::text, headers::text, field_map::text, "
        "updated_at::text FROM connectors WHERE workspace_id = %s "
        "UNION ALL SELECT 'run', id, state, '', '', '', created_at::text FROM enrichment_runs "
        "WHERE workspace_id = %s ORDER BY 1, 2",
        workspace_id,
        workspace_id,
    )


def connectors_of(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [row for row in rows if row[0] == "connector"]


def listed(stub: Enrichment, ws: Workspace) -> list[Connector]:
    reply = stub.ListConnectors(rpc.ListConnectorsRequest(limit=1000), metadata=ws.metadata)
    return list(reply.connectors)


def update(stub: Enrichment, ws: Workspace, connector: Connector, *paths: str) -> Connector:
    request = rpc.UpdateConnectorRequest(
        connector=connector, update_mask=field_mask_pb2.FieldMask(paths=paths)
    )
    updated: Connector = stub.UpdateConnector(request, metadata=ws.metadata)
    return updated


def public_connector(**fields: Any) -> Connector:
    """A valid HTTP_JSON connector to a public https API (never called in this module)."""
    values: dict[str, Any] = {
        "name": "people data",
        "kind": Connector.HTTP_JSON,
        "http_json": http_json(PUBLIC, headers={"X-Api-Key": "s3cret-value"}),
        "field_map": {"$.data.job_title": "title"},
        "enabled": True,
        **fields,
    }
    return Connector(**values)


# -- the lifecycle ------------------------------------------------------------------------


def test_a_connector_is_created_read_listed_updated_and_deleted(
    enrichment: Enrichment, workspace: Workspace
) -> None:
    created = create_connector(
        enrichment,
        workspace,
        public_connector(rate_limit_per_minute=60, monthly_budget=1000, cache_ttl_seconds=3600),
    )
    assert created.id.startswith("enc_")
    assert created.name == "people data" and created.kind == Connector.HTTP_JSON
    assert created.http_json.url_template == PUBLIC and created.http_json.method == "GET"
    assert list(created.http_json.no_match_statuses) == [404]
    assert dict(created.field_map) == {"$.data.job_title": "title"}
    assert created.overwrite == Connector.FILL_EMPTY and created.enabled
    assert (created.rate_limit_per_minute, created.monthly_budget) == (60, 1000)
    assert created.cache_ttl_seconds == 3600 and created.calls_this_month == 0
    assert created.created_at.seconds > 0 and created.updated_at.seconds > 0
    assert get_connector(enrichment, workspace, created.id) == created

    flags = create_connector(enrichment, workspace, built_in(Connector.EMAIL_FLAGS))
    assert flags.kind == Connector.EMAIL_FLAGS and not flags.HasField("http_json")
    assert flags.cache_ttl_seconds == 30 * 86400  # the default
    assert [c.id for c in listed(enrichment, workspace)] == sorted([created.id, flags.id])

    changed = Connector(
        id=created.id,
        name="renamed",
        overwrite=Connector.OVERWRITE,
        kind=Connector.EMAIL_FLAGS,  # kind cannot change: ignored
        monthly_budget=5,
    )
    updated = update(enrichment, workspace, changed, "name", "overwrite", "monthly_budget")
    assert updated.name == "renamed" and updated.overwrite == Connector.OVERWRITE
    assert updated.monthly_budget == 5 and updated.kind == Connector.HTTP_JSON
    assert updated.http_json.url_template == PUBLIC and updated.rate_limit_per_minute == 60
    assert get_connector(enrichment, workspace, created.id) == updated

    # Without a mask, the fields given are the ones updated.
    renamed = enrichment.UpdateConnector(
        rpc.UpdateConnectorRequest(connector=Connector(id=flags.id, name="flags")),
        metadata=workspace.metadata,
    )
    assert renamed.name == "flags" and renamed.enabled

    enrichment.DeleteConnector(
        rpc.DeleteConnectorRequest(id=created.id), metadata=workspace.metadata
    )
    refused(lambda: get_connector(enrichment, workspace, created.id), grpc.StatusCode.NOT_FOUND)
    assert [c.id for c in listed(enrichment, workspace)] == [flags.id]


def test_connectors_are_listed_a_page_at_a_time(
    enrichment: Enrichment, workspace: Workspace
) -> None:
    made = sorted(
        create_connector(enrichment, workspace, built_in(Connector.NAME_FROM_EMAIL)).id
        for _ in range(5)
    )
    seen, cursor = [], ""
    while True:
        reply = enrichment.ListConnectors(
            rpc.ListConnectorsRequest(limit=2, cursor=cursor), metadata=workspace.metadata
        )
        seen += [c.id for c in reply.connectors]
        cursor = reply.next_cursor
        if not cursor:
            break
    assert seen == made


def test_header_values_are_never_returned_only_their_names(
    enrichment: Enrichment, workspace: Workspace
) -> None:
    headers = {"X-Api-Key": "s3cret-value", "Authorization": "Bearer t0ken-value"}
    created = create_connector(
        enrichment, workspace, public_connector(http_json=http_json(PUBLIC, headers=headers))
    )
    fetched = get_connector(enrichment, workspace, created.id)
    [in_list] = listed(enrichment, workspace)
    updated = update(enrichment, workspace, Connector(id=created.id, name="renamed"), "name")
    for reply in (created, fetched, in_list, updated):
        assert dict(reply.http_json.headers) == {}
        assert list(reply.http_json.header_names) == ["Authorization", "X-Api-Key"]
        serialized = reply.SerializeToString()
        assert b"s3cret-value" not in serialized and b"t0ken-value" not in serialized


def test_an_update_without_headers_keeps_them_and_new_headers_replace_them(
    enrichment: Enrichment,
    leads: Leads,
    workspace: Workspace,
    provider: Provider,
    enrichment_worker: object,
) -> None:
    provider.add("jane@acme.io", fake_provider.person("Jane", "Doe"))
    created = create_connector(enrichment, workspace, person_connector(provider))
    assert list(created.http_json.header_names) == ["X-Api-Key"]

    # A new URL (a different query parameter order) and no headers: the key stays.
    moved = http_json(provider.url_template() + "&pretty=true", headers={})
    updated = update(enrichment, workspace, Connector(id=created.id, http_json=moved), "http_json")
    assert updated.http_json.url_template.endswith("&pretty=true")
    assert list(updated.http_json.header_names) == ["X-Api-Key"]

    lead = new_lead(leads, workspace, "jane@acme.io")
    run = enrich_and_wait(enrichment, workspace, lead.id, created.id)
    assert run.state == Run.SUCCEEDED and list(run.errors) == [], run
    assert (run.provider_calls, run.changed) == (1, 1)
    assert get_lead(leads, workspace, lead.id).first_name == "Jane"
    [call] = provider.calls()
    assert call.headers["x-api-key"] == fake_provider.API_KEY

    # New headers replace the stored ones: the provider now refuses the key.
    wrong = http_json(provider.url_template(), headers={"X-Api-Key": "wrong"})
    update(enrichment, workspace, Connector(id=created.id, http_json=wrong), "http_json")
    other = new_lead(leads, workspace, "other@acme.io")
    run = enrich_and_wait(enrichment, workspace, other.id, created.id)
    [error] = run.errors
    assert (error.lead_id, error.reason, error.message) == (other.id, "PROVIDER_ERROR", "HTTP 401")
    assert provider.calls()[-1].headers["x-api-key"] == "wrong"


# -- bad input --------------------------------------------------------------------------

URL = "connector.http_json.url_template"
BAD_CONNECTORS: list[tuple[str, dict[str, Any], str]] = [
    ("no name", {"name": ""}, "connector.name"),
    ("missing kind", {"kind": Connector.KIND_UNSPECIFIED}, "connector.kind"),
    ("no http_json", {"http_json": None}, "connector.http_json"),
    ("not a URL", {"http_json": http_json("not a url {email}")}, URL),
    ("no placeholder", {"http_json": http_json("https://api.example.com/person")}, URL),
    (
        "unknown placeholder",
        {"http_json": http_json("https://api.example.com/person?email={emial}")},
        URL,
    ),
    (
        "a placeholder in the host",
        {"http_json": http_json("https://{domain}/person?email={email}")},
        URL,
    ),
    ("loopback", {"http_json": http_json("https://127.0.0.1/p?email={email}")}, URL),
    ("private", {"http_json": http_json("https://10.0.0.1/p?email={email}")}, URL),
    (
        "cloud metadata",
        {"http_json": http_json("http://169.254.169.254/latest/meta-data?e={email}")},
        URL,
    ),
    ("IPv6 loopback", {"http_json": http_json("https://[::1]/p?email={email}")}, URL),
    (
        "plain http to a public host",
        {"http_json": http_json("http://api.example.com/p?email={email}")},
        URL,
    ),
    (
        "a method that is neither GET nor POST",
        {"http_json": http_json(PUBLIC, method="DELETE")},
        "connector.http_json.method",
    ),
    (
        "a header value with a line break",
        {"http_json": http_json(PUBLIC, headers={"X-Api-Key": "a\r\nX-Evil: 1"})},
        "connector.http_json.headers",
    ),
    (
        "a body that is not JSON",
        {"http_json": http_json(PUBLIC, method="POST", body_template='{"e": {email}}')},
        "connector.http_json.body_template",
    ),
    ("an empty field_map", {"field_map": {}}, "connector.field_map"),
    ("a field_map to an unknown field", {"field_map": {"$.a": "favourite"}}, "connector.field_map"),
    (
        "a field_map to an unknown company field",
        {"field_map": {"$.a": "company.ceo"}},
        "connector.field_map",
    ),
    ("an unreadable path", {"field_map": {"$..a": "title"}}, "connector.field_map"),
    ("a negative rate limit", {"rate_limit_per_minute": -1}, "connector.rate_limit_per_minute"),
    ("a negative budget", {"monthly_budget": -5}, "connector.monthly_budget"),
    (
        "a built-in with a field_map",
        {"kind": Connector.EMAIL_FLAGS, "http_json": None},
        "connector.field_map",
    ),
]


@pytest.mark.parametrize(
    ("fields", "field"),
    [pytest.param(fields, field, id=name) for name, fields, field in BAD_CONNECTORS],
)
def test_a_bad_connector_is_refused_naming_the_field_and_nothing_is_written(
    enrichment: Enrichment,
    database_url: str,
    workspace: Workspace,
    fields: dict[str, Any],
    field: str,
) -> None:
    connector = public_connector()
    for name, value in fields.items():
        if value is None:
            connector.ClearField(name)  # type: ignore[arg-type]
        elif name in ("http_json",):
            connector.http_json.CopyFrom(value)
        elif name == "field_map":
            connector.field_map.clear()
            connector.field_map.update(value)
        else:
            setattr(connector, name, value)
    reason, violated = refused(
        lambda: create_connector(enrichment, workspace, connector),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert reason == "CONNECTOR_INVALID" and field in violated, violated
    assert stored(database_url, workspace.id) == []


def test_refusals_never_echo_a_header_value(enrichment: Enrichment, workspace: Workspace) -> None:
    bad = http_json(PUBLIC, headers={"X-Api-Key": "s3cret\nvalue", "bad name": "t0ken"})
    with pytest.raises(grpc.RpcError) as caught:
        create_connector(enrichment, workspace, public_connector(http_json=bad))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    text = str(caught.value.details()) + repr(caught.value.trailing_metadata())
    assert "s3cret" not in text and "t0ken" not in text


def test_a_bad_update_is_refused_and_changes_nothing(
    enrichment: Enrichment, database_url: str, workspace: Workspace
) -> None:
    created = create_connector(enrichment, workspace, public_connector())
    before = stored(database_url, workspace.id)
    cases: list[tuple[Connector, list[str], str]] = [
        (Connector(name=""), ["name"], "connector.name"),
        (Connector(http_json=http_json("https://10.1.2.3/?e={email}")), ["http_json"], URL),
        (Connector(field_map={"$.x": "nope"}), ["field_map"], "connector.field_map"),
        (Connector(name="x"), ["calls_this_month"], "update_mask"),
        (Connector(http_json=http_json(PUBLIC)), ["http_json.url_template"], "update_mask"),
    ]
    for connector, paths, field in cases:
        connector.id = created.id
        _, violated = refused(
            lambda c=connector, p=paths: update(enrichment, workspace, c, *p),  # type: ignore[misc]
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert field in violated, (paths, violated)
    assert stored(database_url, workspace.id) == before


# -- runs: what a request may ask -------------------------------------------------------


def test_enriching_an_unknown_lead_is_not_found_and_queues_nothing(
    enrichment: Enrichment, database_url: str, workspace: Workspace
) -> None:
    flags = create_connector(enrichment, workspace, built_in(Connector.EMAIL_FLAGS))
    before = stored(database_url, workspace.id)
    reason, _ = refused(
        lambda: enrich(enrichment, workspace, "lead_nope", flags.id), grpc.StatusCode.NOT_FOUND
    )
    assert reason == "LEAD_NOT_FOUND"
    assert stored(database_url, workspace.id) == before


def test_a_run_needs_one_to_ten_enabled_connectors_of_the_workspace(
    enrichment: Enrichment, leads: Leads, database_url: str, workspace: Workspace
) -> None:
    lead = new_lead(leads, workspace, "jane.doe@acme.io")
    off = create_connector(enrichment, workspace, built_in(Connector.EMAIL_FLAGS, enabled=False))
    before = stored(database_url, workspace.id)
    refused(lambda: enrich(enrichment, workspace, lead.id), grpc.StatusCode.INVALID_ARGUMENT)
    many = [f"enc_{n}" for n in range(11)]
    _, violated = refused(
        lambda: enrich(enrichment, workspace, lead.id, *many), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert violated == ["connector_ids"]
    reason, violated = refused(
        lambda: enrich(enrichment, workspace, lead.id, off.id), grpc.StatusCode.NOT_FOUND
    )
    assert reason == "CONNECTOR_NOT_FOUND" and violated == ["connector_ids[0]"]
    assert stored(database_url, workspace.id) == before


def test_a_batch_takes_a_filter_or_a_segment_not_both(
    enrichment: Enrichment, database_url: str, workspace: Workspace
) -> None:
    flags = create_connector(enrichment, workspace, built_in(Connector.EMAIL_FLAGS))
    before = stored(database_url, workspace.id)
    for selection in (
        {"filter": 'source = "webinar"', "segment_id": "seg_1"},
        {},
        {"filter": "source = = 'x'"},
    ):
        _, violated = refused(
            lambda s=selection: batch(enrichment, workspace, flags.id, **s),  # type: ignore[misc]
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert violated, selection
    reason, _ = refused(
        lambda: batch(enrichment, workspace, flags.id, segment_id="seg_nope"),
        grpc.StatusCode.NOT_FOUND,
    )
    assert reason == "SEGMENT_NOT_FOUND"
    assert stored(database_url, workspace.id) == before


# -- other workspaces -------------------------------------------------------------------


def test_another_workspaces_connectors_runs_and_leads_are_not_found_and_left_alone(
    enrichment: Enrichment,
    leads: Leads,
    database_url: str,
    workspace: Workspace,
    other_workspace: Workspace,
) -> None:
    theirs = create_connector(enrichment, other_workspace, public_connector())
    their_flags = create_connector(enrichment, other_workspace, built_in(Connector.EMAIL_FLAGS))
    their_lead = new_lead(leads, other_workspace, "them@acme.io")
    their_run = enrich(enrichment, other_workspace, their_lead.id, their_flags.id)
    mine = create_connector(enrichment, workspace, built_in(Connector.EMAIL_FLAGS))
    my_lead = new_lead(leads, workspace, "me@acme.io")
    before = stored(database_url, other_workspace.id)
    mine_before = stored(database_url, workspace.id)

    not_found: list[Callable[[], object]] = [
        lambda: get_connector(enrichment, workspace, theirs.id),
        lambda: update(enrichment, workspace, Connector(id=theirs.id, name="mine"), "name"),
        lambda: enrichment.DeleteConnector(
            rpc.DeleteConnectorRequest(id=theirs.id), metadata=workspace.metadata
        ),
        lambda: get_run(enrichment, workspace, their_run.id),
        lambda: enrich(enrichment, workspace, my_lead.id, their_flags.id),
        lambda: enrich(enrichment, workspace, their_lead.id, mine.id),
        lambda: batch(enrichment, workspace, their_flags.id, filter='email = "x@y.io"'),
        lambda: provenance(enrichment, workspace, their_lead.id),
    ]
    for call in not_found:
        refused(call, grpc.StatusCode.NOT_FOUND)
    assert [c.id for c in listed(enrichment, workspace)] == [mine.id]
    # Their connectors as they were (their run goes on as the worker takes it).
    assert connectors_of(stored(database_url, other_workspace.id)) == connectors_of(before)
    assert stored(database_url, workspace.id) == mine_before
    assert get_connector(enrichment, other_workspace, theirs.id).name == "people data"


# -- REST through the gateway -----------------------------------------------------------


@pytest.fixture
def api(http: requests.Session, gateway_url: str, workspace: Workspace) -> RestClient:
    return RestClient(http, gateway_url, workspace)


def test_a_connector_round_trips_through_the_gateway_without_its_secrets(
    api: RestClient,
) -> None:
    body = {
        "name": "people data",
        "kind": "HTTP_JSON",
        "http_json": {"url_template": PUBLIC, "headers": {"X-Api-Key": "s3cret-value"}},
        "field_map": PERSON_MAP,
        "overwrite": "OVERWRITE",
        "enabled": True,
        "monthly_budget": 100,
    }
    reply = api.call("POST", CONNECTORS, json=body)
    assert reply.status_code == 200, reply.text
    assert "s3cret-value" not in reply.text
    created = reply.json()
    assert created["id"].startswith("enc_") and created["kind"] == "HTTP_JSON"
    assert created["http_json"]["header_names"] == ["X-Api-Key"]
    assert created["http_json"].get("headers", {}) == {}  # an empty map at most
    assert created["field_map"] == PERSON_MAP and created["overwrite"] == "OVERWRITE"

    fetched = api.call("GET", f"{CONNECTORS}/{created['id']}")
    assert fetched.status_code == 200 and "s3cret-value" not in fetched.text
    assert fetched.json() == created

    patched = api.call(
        "PATCH", f"{CONNECTORS}/{created['id']}", json={"name": "renamed", "enabled": True}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "renamed"
    assert patched.json()["http_json"]["header_names"] == ["X-Api-Key"]

    listing = api.ok("GET", CONNECTORS)
    assert [c["id"] for c in listing["connectors"]] == [created["id"]]
    assert "s3cret-value" not in str(listing)

    assert api.call("DELETE", f"{CONNECTORS}/{created['id']}").status_code == 200
    assert api.call("GET", f"{CONNECTORS}/{created['id']}").status_code == 404


def test_a_bad_connector_through_the_gateway_is_a_400_naming_the_field(
    api: RestClient, database_url: str, workspace: Workspace
) -> None:
    for body, field in [
        (
            {"name": "x", "kind": "HTTP_JSON", "http_json": {"url_template": PUBLIC},
             "field_map": {"$.data.x": "favourite_colour"}},
            "connector.field_map",
        ),
        (
            {"name": "x", "kind": "HTTP_JSON", "field_map": {"$.a": "title"},
             "http_json": {"url_template": "https://169.254.169.254/?e={email}"}},
            URL,
        ),
        ({"name": "x"}, "connector.kind"),
    ]:  # fmt: skip
        reply = api.call("POST", CONNECTORS, json=body)
        assert reply.status_code == 400, reply.text
        reason, violated = json_details(reply.json())
        assert reason == "CONNECTOR_INVALID" and field in violated
    assert stored(database_url, workspace.id) == []


def test_a_leads_enrichment_and_runs_through_the_gateway(
    api: RestClient,
    enrichment: Enrichment,
    leads: Leads,
    workspace: Workspace,
    other_workspace: Workspace,
) -> None:
    lead = new_lead(leads, workspace, "jane.doe@acme.io")
    flags = create_connector(enrichment, workspace, built_in(Connector.EMAIL_FLAGS))
    nothing = api.ok("GET", f"/api/v1/crm/leads/{lead.id}/enrichment")
    assert nothing.get("fields", []) == []

    queued = api.ok(
        "POST", f"/api/v1/crm/leads/{lead.id}:enrich", json={"connector_ids": [flags.id]}
    )
    assert queued["id"].startswith("enr_") and queued["lead_id"] == lead.id
    assert queued["connector_ids"] == [flags.id] and queued["total"] == 1
    assert api.ok("GET", f"/api/v1/crm/enrichment/runs/{queued['id']}")["id"] == queued["id"]

    their_lead = new_lead(leads, other_workspace, "them@acme.io")
    for path in (
        f"/api/v1/crm/leads/{their_lead.id}/enrichment",
        "/api/v1/crm/leads/lead_nope/enrichment",
    ):
        reply = api.call("GET", path)
        assert reply.status_code == 404, reply.text
    both = api.call(
        "POST",
        "/api/v1/crm/enrichment/runs:batch",
        json={"filter": 'source = "x"', "segment_id": "seg_1", "connector_ids": [flags.id]},
    )
    assert both.status_code == 400
