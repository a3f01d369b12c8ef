"""Enrichment runs carried out for real: a worker process applies the connectors, the
HTTP_JSON ones against the fake provider (a real HTTP server on 127.0.0.2). What a run
writes, what it must leave alone, what it pays for, and how it survives a misbehaving
provider; batches by filter and by segment; a trigger's enrichment action.

A lookup that fails is an error on the run (a lead, a connector, a reason), never a failed
run: the run goes on with the other leads and ends SUCCEEDED, and nothing is written to the
lead the lookup was for."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from google.protobuf import field_mask_pb2
from tnx.crm.v1 import (
    company_pb2,
    company_service_pb2,
    company_service_pb2_grpc,
    enrichment_service_pb2,
    event_service_pb2,
    lead_pb2,
    lead_service_pb2,
    segment_pb2,
    segment_service_pb2,
    segment_service_pb2_grpc,
    trigger_service_pb2_grpc,
)
from tnx.crm.v1 import trigger_pb2 as tpb

from tests.conftest import Workspace
from tests.enrichment import fake_provider
from tests.enrichment.conftest import (
    Connector,
    Enrichment,
    Events,
    Leads,
    Run,
    batch,
    built_in,
    create_connector,
    enrich,
    enrich_and_wait,
    enriched_events,
    get_connector,
    get_lead,
    http_json,
    new_lead,
    new_leads,
    person_connector,
    provenance,
    send_run,
    wait_run,
)
from tests.enrichment.fake_provider import Fault, Provider, person
from tests.segments.helpers import all_of, cond, rule_segment
from tests.support import db
from tests.support.imports import WorkerProcess, wait_until
from tests.support.rest import RestClient
from tests.triggers.conftest import Delivery, create, wait_for_status
from tests.triggers.receiver import Receiver

pytestmark = pytest.mark.usefixtures("enrichment_worker")

Triggers = trigger_service_pb2_grpc.TriggerServiceStub


def update_lead(leads: Leads, ws: Workspace, lead_id: str, **fields: Any) -> lead_pb2.Lead:
    request = lead_service_pb2.UpdateLeadRequest(
        lead=lead_pb2.Lead(id=lead_id, **fields),
        update_mask=field_mask_pb2.FieldMask(paths=list(fields)),
    )
    lead: lead_pb2.Lead = leads.UpdateLead(request, metadata=ws.metadata)
    return lead


def assert_untouched(
    enrichment: Enrichment, events: Events, leads: Leads, ws: Workspace, lead: lead_pb2.Lead
) -> None:
    """Nothing was written to the lead: as created, no provenance, no lead.enriched."""
    assert get_lead(leads, ws, lead.id) == lead
    assert provenance(enrichment, ws, lead.id) == {}
    assert enriched_events(events, ws, lead.id) == []


# -- HTTP_JSON: what a run writes ---------------------------------------------------------


def test_a_lead_with_only_an_email_gets_the_providers_person(
    channel: grpc.Channel,
    http: requests.Session,
    gateway_url: str,
    enrichment: Enrichment,
    events: Events,
    leads: Leads,
    workspace: Workspace,
    provider: Provider,
) -> None:
    provider.add("jane@acme.io", person("Jane", "Doe", title="Head of Growth"))
    connector = create_connector(enrichment, workspace, person_connector(provider))
    growth = rule_segment(
        segment_service_pb2_grpc.SegmentServiceStub(channel),
        workspace,
        "growth",
        all_of(cond("title", "eq", "Head of Growth")),
    )
    lead = new_lead(leads, workspace, "jane@acme.io")
    assert list(lead.segment_ids) == []

    before = time.time()
    run = enrich_and_wait(enrichment, workspace, lead.id, connector.id)
    assert run.state == Run.SUCCEEDED and list(run.errors) == [], run
    assert (run.total, run.processed, run.changed) == (1, 1, 1)
    assert (run.provider_calls, run.cache_hits, run.error_count) == (1, 0, 0)
    assert run.lead_id == lead.id and list(run.connector_ids) == [connector.id]
    assert run.finished_at.seconds >= run.created_at.seconds > 0

    got = get_lead(leads, workspace, lead.id)
    assert (got.first_name, got.last_name, got.title) == ("Jane", "Doe", "Head of Growth")
    assert got.custom_fields["company_size"] == "51-200"

    found = provenance(enrichment, workspace, lead.id)
    assert sorted(found) == ["custom.company_size", "first_name", "last_name", "title"]
    assert found["title"].value == '"Head of Growth"' and found["first_name"].value == '"Jane"'
    for field in found.values():
        assert field.connector_id == connector.id
        assert before - 5 <= field.enriched_at.seconds <= time.time() + 5

    [event] = enriched_events(events, workspace, lead.id)
    assert event["run_id"] == run.id and event["connector_ids"] == [connector.id]
    assert event["fields"] == ["custom_fields.company_size", "first_name", "last_name", "title"]
    # Through the lead-write path: rule segments are current.
    assert list(got.segment_ids) == [growth.id]
    entered = events.ListEvents(
        event_service_pb2.ListEventsRequest(
            types=["segment.lead_entered"], subject_id=lead.id, limit=10
        ),
        metadata=workspace.metadata,
    )
    [entry] = entered.events
    assert entry.payload["segment_id"] == growth.id and entry.payload["cause"] == "lead.enriched"

    # The same through the gateway, as a REST client reads it.
    rest = RestClient(http, gateway_url, workspace)
    fields = rest.ok("GET", f"/api/v1/crm/leads/{lead.id}/enrichment")["fields"]
    assert [(f["field"], f["value"], f["connector_id"]) for f in fields] == [
        ("custom.company_size", '"51-200"', connector.id),
        ("first_name", '"Jane"', connector.id),
        ("last_name", '"Doe"', connector.id),
        ("title", '"Head of Growth"', connector.id),
    ]
    assert all(f["enriched_at"].endswith("Z") for f in fields)

    [call] = provider.calls()
    assert (call.method, call.email) == ("GET", "jane@acme.io")
    assert call.headers["x-api-key"] == fake_provider.API_KEY
    assert get_connector(enrichment, workspace, connector.id).calls_this_month == 1


def test_company_fields_go_to_the_linked_company(
    channel: grpc.Channel,
    enrichment: Enrichment,
    leads: Leads,
    workspace: Workspace,
    provider: Provider,
) -> None:
    companies = company_service_pb2_grpc.CompanyServiceStub(channel)
    company = companies.CreateCompany(
        company_service_pb2.CreateCompanyRequest(
            company=company_pb2.Company(name="Acme", domain="acme.io")
        ),
        metadata=workspace.metadata,
    )
    provider.add("jane@acme.io", person("Jane", "Doe", industry="computer software"))
    field_map = {"$.data.job_company_industry": "company.industry", "$.data.job_title": "title"}
    connector = create_connector(
        enrichment, workspace, person_connector(provider, field_map=field_map)
    )
    lead = new_lead(leads, workspace, "jane@acme.io")
    assert lead.company_id == company.id

    run = enrich_and_wait(enrichment, workspace, lead.id, connector.id)
    assert run.state == Run.SUCCEEDED and run.changed == 1, run
    got = companies.GetCompany(
        company_service_pb2.GetCompanyRequest(id=company.id), metadata=workspace.metadata
    )
    assert got.industry == "computer software"
    assert sorted(provenance(enrichment, workspace, lead.id)) == ["company.industry", "title"]


def test_fill_empty_keeps_a_value_a_person_set(
    enrichment: Enrichment, leads: Leads, workspace: Workspace, provider: Provider
) -> None:
    provider.add("jane@acme.io", person("Jane", "Doe", title="Head of Growth"))
    connector = create_connector(enrichment, workspace, person_connector(provider))
    lead = new_lead(leads, workspace, "jane@acme.io", title="CEO", last_name="Smith")

    run = enrich_and_wait(enrichment, workspace, lead.id, connector.id)
    assert run.state == Run.SUCCEEDED and run.changed == 1, run
    got = get_lead(leads, workspace, lead.id)
    assert (got.first_name, got.last_name, got.title) == ("Jane", "Smith", "CEO")
    assert sorted(provenance(enrichment, workspace, lead.id)) == [
        "custom.company_size",
        "first_name",
    ]


def test_overwrite_replaces_an_enriched_value_but_not_a_persons_later_edit(
    enrichment: Enrichment,
    events: Events,
    leads: Leads,
    workspace: Workspace,
    provider: Provider,
) -> None:
    provider.add("jane@acme.io", person("Jane", "Doe", title="Head of Growth"))
    # A one-second cache: each run after a pause asks the provider again.
    connector = create_connector(
        enrichment,
        workspace,
        person_connector(provider, overwrite=Connector.OVERWRITE, cache_ttl_seconds=1),
    )
    lead = new_lead(leads, workspace, "jane@acme.io")
    enrich_and_wait(enrichment, workspace, lead.id, connector.id)
    assert get_lead(leads, workspace, lead.id).title == "Head of Growth"

    time.sleep(1.1)
    provider.add("jane@acme.io", person("Jane", "Doe", title="VP Growth"))
    run = enrich_and_wait(enrichment, workspace, lead.id, connector.id)
    assert run.changed == 1 and run.provider_calls == 1, run
    assert get_lead(leads, workspace, lead.id).title == "VP Growth"
    assert provenance(enrichment, workspace, lead.id)["title"].value == '"VP Growth"'
    assert enriched_events(events, workspace, lead.id)[-1]["fields"] == ["title"]

    update_lead(leads, workspace, lead.id, title="Chief of Staff")
    time.sleep(1.1)
    provider.add("jane@acme.io", person("Janet", "Doe", title="CRO"))
    run = enrich_and_wait(enrichment, workspace, lead.id, connector.id)
    assert run.provider_calls == 1, run
    got = get_lead(leads, workspace, lead.id)
    assert got.title == "Chief of Staff"  # the person's edit stands
    assert got.first_name == "Janet"  # a field nobody edited is replaced
    assert provenance(enrichment, workspace, lead.id)["title"].value == '"VP Growth"'
    assert len(provider.calls()) == 3


def test_overwrite_replaces_a_value_set_before_any_enrichment(
    enrichment: Enrichment, leads: Leads, workspace: Workspace, provider: Provider
) -> None:
    provider.add("jane@acme.io", person("Jane", "Doe", title="Head of Growth"))
    connector = create_connector(
        enrichment, workspace, person_connector(provider, overwrite=Connector.OVERWRITE)
    )
    lead = new_lead(leads, workspace, "jane@acme.io", title="Marketing", first_name="J")

    run = enrich_and_wait(enrichment, workspace, lead.id, connector.id)
    assert run.changed == 1, run
    got = get_lead(leads, workspace, lead.id)
    assert (got.first_name, got.title) == ("Jane", "Head of Growth")


# -- the cache ----------------------------------------------------------------------------


def test_the_same_lookup_is_paid_once_and_a_miss_is_remembered_too(
    enrichment: Enrichment, leads: Leads, workspace: Workspace, provider: Provider
) -> None:
    provider.add("jane@acme.io", person("Jane", "Doe"))
    connector = create_connector(enrichment, workspace, person_connector(provider))
    known = new_lead(leads, workspace, "jane@acme.io")
    unknown = new_lead(leads, workspace, "nobody@acme.io")

    for lead in (known, unknown):
        first = enrich_and_wait(enrichment, workspace, lead.id, connector.id)
        assert (first.provider_calls, first.cache_hits, first.error_count) == (1, 0, 0), first
        again = enrich_and_wait(enrichment, workspace, lead.id, connector.id)
        assert again.state == Run.SUCCEEDED, again
        assert (again.provider_calls, again.cache_hits, again.changed) == (0, 1, 0), again
    assert provider.count() == {"jane@acme.io": 1, "nobody@acme.io": 1}
    assert get_connector(enrichment, workspace, connector.id).calls_this_month == 2
    assert get_lead(leads, workspace, unknown.id).first_name == ""


# -- built-in connectors -------------------------------------------------------------------


def test_name_from_email_fills_empty_names(
    enrichment: Enrichment, leads: Leads, workspace: Workspace
) -> None:
    connector = create_connector(enrichment, workspace, built_in(Connector.NAME_FROM_EMAIL))
    jane = new_lead(leads, workspace, "jane.doe@acme.io")
    named = new_lead(leads, workspace, "john.roe@acme.io", first_name="Johnny")

    run = enrich_and_wait(enrichment, workspace, jane.id, connector.id)
    assert (run.changed, run.provider_calls) == (1, 0), run
    got = get_lead(leads, workspace, jane.id)
    assert (got.first_name, got.last_name) == ("Jane", "Doe")
    assert provenance(enrichment, workspace, jane.id)["first_name"].connector_id == connector.id

    run = enrich_and_wait(enrichment, workspace, named.id, connector.id)
    assert run.changed == 0, run  # only when both names are empty
    assert get_lead(leads, workspace, named.id).last_name == ""

    # A deleted connector's values stay, with their provenance.
    enrichment.DeleteConnector(
        enrichment_service_pb2.DeleteConnectorRequest(id=connector.id), metadata=workspace.metadata
    )
    assert get_lead(leads, workspace, jane.id).first_name == "Jane"
    assert provenance(enrichment, workspace, jane.id)["last_name"].connector_id == connector.id


def test_email_flags_mark_a_role_and_disposable_address(
    enrichment: Enrichment, leads: Leads, workspace: Workspace
) -> None:
    connector = create_connector(enrichment, workspace, built_in(Connector.EMAIL_FLAGS))
    lead = new_lead(leads, workspace, "info@mailinator.com")
    person_lead = new_lead(leads, workspace, "jane.doe@acme.io")

    enrich_and_wait(enrichment, workspace, lead.id, connector.id)
    enrich_and_wait(enrichment, workspace, person_lead.id, connector.id)
    flags = get_lead(leads, workspace, lead.id).custom_fields
    assert flags["email_is_role"] is True and flags["email_is_disposable"] is True
    plain = get_lead(leads, workspace, person_lead.id).custom_fields
    assert plain["email_is_role"] is False and plain["email_is_disposable"] is False
    assert plain["email_is_free_mail"] is False


def test_phone_normalize_writes_e164_and_the_country(
    enrichment: Enrichment, leads: Leads, workspace: Workspace
) -> None:
    # Rewriting the stored phone replaces a value: OVERWRITE (FILL_EMPTY adds the country only).
    connector = create_connector(
        enrichment, workspace, built_in(Connector.PHONE_NORMALIZE, overwrite=Connector.OVERWRITE)
    )
    lead = new_lead(leads, workspace, "jane@acme.io", phone="+44 20 7946 0958")
    local = new_lead(
        leads, workspace, "john@acme.io", phone="020 7946 0959", custom_fields={"country": "GB"}
    )
    unknown = new_lead(leads, workspace, "joan@acme.io", phone="020 7946 0960")

    run = enrich_and_wait(enrichment, workspace, lead.id, connector.id)
    assert run.changed == 1, run
    got = get_lead(leads, workspace, lead.id)
    assert got.phone == "+442079460958" and got.custom_fields["country"] == "GB"
    assert sorted(provenance(enrichment, workspace, lead.id)) == ["custom.country", "phone"]

    # A national number is read in the lead's country; without one it is left alone.
    assert enrich_and_wait(enrichment, workspace, local.id, connector.id).changed == 1
    assert get_lead(leads, workspace, local.id).phone == "+442079460959"
    assert enrich_and_wait(enrichment, workspace, unknown.id, connector.id).changed == 0
    assert get_lead(leads, workspace, unknown.id).phone == "020 7946 0960"


def test_company_from_domain_creates_the_company_once_and_links_its_leads(
    enrichment: Enrichment, database_url: str, leads: Leads, workspace: Workspace
) -> None:
    connector = create_connector(enrichment, workspace, built_in(Connector.COMPANY_FROM_DOMAIN))
    jane = new_lead(leads, workspace, "jane@acme.io", source="webinar")
    bob = new_lead(leads, workspace, "bob@acme.io", source="webinar")
    free = new_lead(leads, workspace, "someone@gmail.com", source="webinar")
    assert not jane.company_id and not bob.company_id

    run = wait_run(
        enrichment,
        workspace,
        batch(enrichment, workspace, connector.id, filter='source = "webinar"').id,
    )
    assert run.state == Run.SUCCEEDED and run.processed == 3, run
    [(company_id, name, domain)] = db.query(
        database_url,
        "SELECT id, name, domain FROM companies WHERE workspace_id = %s",
        workspace.id,
    )
    assert (name, domain) == ("Acme", "acme.io")
    assert get_lead(leads, workspace, jane.id).company_id == company_id
    assert get_lead(leads, workspace, bob.id).company_id == company_id
    assert get_lead(leads, workspace, free.id).company_id == ""

    later = new_lead(leads, workspace, "carol@acme.io")
    enrich_and_wait(enrichment, workspace, later.id, connector.id)
    assert get_lead(leads, workspace, later.id).company_id == company_id
    assert (
        len(db.query(database_url, "SELECT 1 FROM companies WHERE workspace_id = %s", workspace.id))
        == 1
    )


def test_a_domain_whose_company_is_archived_links_nothing_and_the_run_goes_on(
    channel: grpc.Channel,
    enrichment: Enrichment,
    database_url: str,
    leads: Leads,
    workspace: Workspace,
) -> None:
    companies = company_service_pb2_grpc.CompanyServiceStub(channel)
    archived = companies.CreateCompany(
        company_service_pb2.CreateCompanyRequest(
            company=company_pb2.Company(name="Acme", domain="acme.io")
        ),
        metadata=workspace.metadata,
    )
    companies.ArchiveCompany(
        company_service_pb2.ArchiveCompanyRequest(id=archived.id), metadata=workspace.metadata
    )
    connector = create_connector(enrichment, workspace, built_in(Connector.COMPANY_FROM_DOMAIN))
    jane = new_lead(leads, workspace, "jane@acme.io", source="archived")
    other = new_lead(leads, workspace, "bob@globex.io", source="archived")
    assert not jane.company_id

    queued = batch(enrichment, workspace, connector.id, filter='source = "archived"')
    run = wait_run(enrichment, workspace, queued.id, timeout=20)
    assert run.state == Run.SUCCEEDED and (run.processed, run.changed) == (2, 1), run
    # Archived companies are not linked (as when a lead is created), nor made again.
    assert get_lead(leads, workspace, jane.id).company_id == ""
    assert provenance(enrichment, workspace, jane.id) == {}
    assert get_lead(leads, workspace, other.id).company_id != ""
    domains = db.query(
        database_url,
        "SELECT domain FROM companies WHERE workspace_id = %s ORDER BY domain",
        workspace.id,
    )
    assert domains == [("acme.io",), ("globex.io",)]


# -- faults: recorded on the run, nothing written -----------------------------------------

FAULTS = [
    pytest.param(Fault(status=500), "PROVIDER_ERROR", "HTTP 500", id="a 500"),
    pytest.param(Fault(status=401), "PROVIDER_ERROR", "HTTP 401", id="a 401"),
    pytest.param(Fault(malformed=True), "BAD_RESPONSE", "not JSON", id="malformed JSON"),
    pytest.param(Fault(huge=True), "BAD_RESPONSE", "size limit", id="a 10 MB body"),
    pytest.param(Fault(delay=11), "PROVIDER_TIMEOUT", "timed out", id="a timeout"),
]


@pytest.mark.parametrize(("fault", "reason", "says"), FAULTS)
def test_a_failed_lookup_is_an_error_on_the_run_and_writes_nothing(
    enrichment: Enrichment,
    events: Events,
    leads: Leads,
    workspace: Workspace,
    provider: Provider,
    enrichment_worker: WorkerProcess,
    fault: Fault,
    reason: str,
    says: str,
) -> None:
    provider.add("jane@acme.io", person("Jane", "Doe"))
    provider.add("john@acme.io", person("John", "Roe"))
    provider.faults["jane@acme.io"] = fault
    connector = create_connector(enrichment, workspace, person_connector(provider))
    jane = new_lead(leads, workspace, "jane@acme.io")
    john = new_lead(leads, workspace, "john@acme.io")

    run = enrich_and_wait(enrichment, workspace, jane.id, connector.id)
    assert run.state == Run.SUCCEEDED and (run.processed, run.changed) == (1, 0), run
    [error] = run.errors
    assert (error.lead_id, error.connector_id, error.reason) == (jane.id, connector.id, reason)
    assert says in error.message and run.error_count == 1
    assert_untouched(enrichment, events, leads, workspace, jane)

    # A failure is not cached: the next run asks again (and the worker is alive to do it).
    del provider.faults["jane@acme.io"]
    run = enrich_and_wait(enrichment, workspace, jane.id, connector.id)
    assert run.changed == 1 and run.provider_calls == 1 and run.cache_hits == 0, run
    assert enrich_and_wait(enrichment, workspace, john.id, connector.id).changed == 1
    assert enrichment_worker.process is not None and enrichment_worker.process.poll() is None
    assert provider.count() == {"jane@acme.io": 2, "john@acme.io": 1}


def test_a_provider_name_resolving_to_loopback_is_refused_and_nothing_reaches_it(
    enrichment: Enrichment,
    events: Events,
    leads: Leads,
    workspace: Workspace,
    canary: Receiver,
) -> None:
    # A DNS name is not resolved when saved: the address is checked when connecting.
    local = f"https://localhost:{canary.port}/v5/person/enrich?email={{email}}"
    connector = Connector(
        name="rebinding",
        kind=Connector.HTTP_JSON,
        http_json=http_json(local),
        field_map={"$.data.job_title": "title"},
        enabled=True,
    )
    created = create_connector(enrichment, workspace, connector)
    lead = new_lead(leads, workspace, "jane@acme.io")

    run = enrich_and_wait(enrichment, workspace, lead.id, created.id)
    assert run.state == Run.SUCCEEDED, run
    [error] = run.errors
    assert error.reason == "ADDRESS_REFUSED" and "loopback" in error.message
    assert run.provider_calls == 0  # it never reached a provider
    assert get_connector(enrichment, workspace, created.id).calls_this_month == 0
    assert canary.connections == 0 and canary.snapshot() == []
    assert_untouched(enrichment, events, leads, workspace, lead)


def test_a_429_is_honoured_and_the_lookup_tried_again_after_retry_after(
    enrichment: Enrichment, leads: Leads, workspace: Workspace, provider: Provider
) -> None:
    provider.add("jane@acme.io", person("Jane", "Doe"))
    provider.faults["jane@acme.io"] = Fault(status=429, retry_after="1")
    connector = create_connector(enrichment, workspace, person_connector(provider))
    lead = new_lead(leads, workspace, "jane@acme.io")

    def heal() -> None:  # the provider answers after its first 429
        wait_until(lambda: provider.count()["jane@acme.io"] >= 1, timeout=60, interval=0.005)
        provider.faults.pop("jane@acme.io")

    healer = threading.Thread(target=heal, daemon=True)
    healer.start()
    run = enrich_and_wait(enrichment, workspace, lead.id, connector.id)
    healer.join()
    assert run.state == Run.SUCCEEDED and list(run.errors) == [], run
    assert (run.changed, run.provider_calls) == (1, 2), run
    first, second = provider.calls()
    assert second.at - first.at >= 0.9  # Retry-After: 1
    assert get_lead(leads, workspace, lead.id).first_name == "Jane"
    assert get_connector(enrichment, workspace, connector.id).calls_this_month == 2


def test_a_run_whose_connectors_are_all_gone_fails(
    enrichment: Enrichment, database_url: str, leads: Leads, workspace: Workspace
) -> None:
    # The API queues no run of a missing connector: the run is as one queued before its
    # connector was deleted.
    lead = new_lead(leads, workspace, "jane.doe@acme.io")
    db.execute(
        database_url,
        "INSERT INTO enrichment_runs (id, workspace_id, state, connector_ids, lead_id, total) "
        "VALUES ('enr_gone', %s, 'queued', ARRAY['enc_deleted'], %s, 1)",
        workspace.id,
        lead.id,
    )
    send_run(database_url, "enr_gone")
    run = wait_run(enrichment, workspace, "enr_gone")
    assert run.state == Run.FAILED and run.processed == 0 and run.finished_at.seconds > 0, run
    assert get_lead(leads, workspace, lead.id).first_name == ""


# -- the budget and the rate limit ---------------------------------------------------------


def test_calls_over_the_monthly_budget_are_refused_and_shown_on_the_run(
    enrichment: Enrichment,
    events: Events,
    leads: Leads,
    workspace: Workspace,
    provider: Provider,
) -> None:
    emails = ["ann@acme.io", "ben@acme.io", "cat@acme.io"]
    for email in emails:
        provider.add(email, person(email.split("@")[0].title(), "Doe"))
    connector = create_connector(
        enrichment, workspace, person_connector(provider, monthly_budget=2)
    )
    made = {lead.id: lead for lead in new_leads(leads, workspace, emails, source="budget")}

    run = wait_run(
        enrichment,
        workspace,
        batch(enrichment, workspace, connector.id, filter='source = "budget"').id,
    )
    assert run.state == Run.SUCCEEDED, run
    assert (run.total, run.processed, run.changed, run.provider_calls) == (3, 3, 2, 2)
    [error] = run.errors
    assert error.reason == "BUDGET_EXHAUSTED" and error.connector_id == connector.id
    assert_untouched(enrichment, events, leads, workspace, made[error.lead_id])
    assert sum(provider.count().values()) == 2
    assert get_connector(enrichment, workspace, connector.id).calls_this_month == 2
    # Once the budget is spent, a new run is refused at once, and nothing is queued.
    with pytest.raises(grpc.RpcError) as refused:
        enrich(enrichment, workspace, error.lead_id, connector.id)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "budget" in str(refused.value.details())


def test_a_new_month_starts_the_budget_again(
    enrichment: Enrichment,
    database_url: str,
    leads: Leads,
    workspace: Workspace,
    provider: Provider,
) -> None:
    provider.add("jane@acme.io", person("Jane", "Doe"))
    connector = create_connector(
        enrichment, workspace, person_connector(provider, monthly_budget=2)
    )
    # Last month's budget was spent.
    db.execute(
        database_url,
        "UPDATE connectors SET calls_this_month = 2, budget_month = "
        "(date_trunc('month', now() AT TIME ZONE 'UTC') - interval '1 month')::date "
        "WHERE id = %s",
        connector.id,
    )
    assert get_connector(enrichment, workspace, connector.id).calls_this_month == 0
    lead = new_lead(leads, workspace, "jane@acme.io")

    run = enrich_and_wait(enrichment, workspace, lead.id, connector.id)
    assert run.state == Run.SUCCEEDED and run.changed == 1 and run.error_count == 0, run
    assert get_connector(enrichment, workspace, connector.id).calls_this_month == 1


def test_the_rate_limit_spaces_calls_once_a_minutes_worth_is_spent(
    enrichment: Enrichment, leads: Leads, workspace: Workspace, provider: Provider
) -> None:
    # 60 a minute: the bucket starts full (60 calls at once), then one call a second. The
    # 63 leads' lookups run together, so the last three come about 1, 2 and 3 s late.
    connector = create_connector(
        enrichment, workspace, person_connector(provider, rate_limit_per_minute=60)
    )
    new_leads(leads, workspace, [f"lead{n}@acme.io" for n in range(63)], source="limited")

    run = wait_run(
        enrichment,
        workspace,
        batch(enrichment, workspace, connector.id, filter='source = "limited"').id,
    )
    assert run.state == Run.SUCCEEDED and run.processed == 63 and run.error_count == 0, run
    times = sorted(call.at for call in provider.calls())
    assert len(times) == 63
    assert times[59] - times[0] < 2.0  # the burst
    assert times[60] - times[0] >= 0.7
    assert times[62] - times[0] >= 2.5
    assert get_connector(enrichment, workspace, connector.id).calls_this_month == 63


# -- batches ----------------------------------------------------------------------------------


def test_a_batch_by_filter_enriches_the_leads_it_selects(
    enrichment: Enrichment, leads: Leads, workspace: Workspace
) -> None:
    connector = create_connector(enrichment, workspace, built_in(Connector.NAME_FROM_EMAIL))
    firsts = ["ann", "bob", "cat", "dan"]
    webinar = new_leads(leads, workspace, [f"{f}.lee@acme.io" for f in firsts], source="webinar")
    ads = new_leads(leads, workspace, ["ads.only@acme.io"], source="ads")
    archived = new_lead(leads, workspace, "gone.away@acme.io", source="webinar")
    leads.ArchiveLead(
        lead_service_pb2.ArchiveLeadRequest(id=archived.id), metadata=workspace.metadata
    )

    queued = batch(enrichment, workspace, connector.id, filter='source = "webinar"')
    assert queued.state == Run.QUEUED and queued.filter == 'source = "webinar"'
    run = wait_run(enrichment, workspace, queued.id)
    assert run.state == Run.SUCCEEDED, run
    assert (run.total, run.processed, run.changed) == (4, 4, 4)
    assert {get_lead(leads, workspace, lead.id).first_name for lead in webinar} == {
        f.title() for f in firsts
    }
    assert get_lead(leads, workspace, ads[0].id).first_name == ""
    assert get_lead(leads, workspace, archived.id).first_name == ""


def test_a_batch_by_segment_enriches_its_members(
    channel: grpc.Channel, enrichment: Enrichment, leads: Leads, workspace: Workspace
) -> None:
    segments = segment_service_pb2_grpc.SegmentServiceStub(channel)
    segment = segments.CreateSegment(
        segment_service_pb2.CreateSegmentRequest(
            segment=segment_pb2.Segment(name="vip", membership=segment_pb2.Segment.STATIC)
        ),
        metadata=workspace.metadata,
    )
    made = new_leads(
        leads, workspace, [f"{f}.doe@acme.io" for f in ("ann", "bob", "cat", "dan", "eve")]
    )
    members = made[:3]
    segments.AddSegmentMembers(
        segment_service_pb2.AddSegmentMembersRequest(
            id=segment.id, lead_ids=[lead.id for lead in members]
        ),
        metadata=workspace.metadata,
    )
    connector = create_connector(enrichment, workspace, built_in(Connector.NAME_FROM_EMAIL))

    run = wait_run(
        enrichment, workspace, batch(enrichment, workspace, connector.id, segment_id=segment.id).id
    )
    assert run.state == Run.SUCCEEDED and run.segment_id == segment.id, run
    assert (run.total, run.processed, run.changed) == (3, 3, 3)
    named = {lead.id for lead in made if get_lead(leads, workspace, lead.id).first_name}
    assert named == {lead.id for lead in members}


def test_connectors_of_a_run_apply_in_order_and_an_earlier_one_wins(
    enrichment: Enrichment, leads: Leads, workspace: Workspace, provider: Provider
) -> None:
    provider.add("jane.doe@acme.io", person("Janet", "Dough", title="CTO"))
    names = create_connector(enrichment, workspace, built_in(Connector.NAME_FROM_EMAIL))
    people = create_connector(enrichment, workspace, person_connector(provider))
    lead = new_lead(leads, workspace, "jane.doe@acme.io")

    run = enrich_and_wait(enrichment, workspace, lead.id, names.id, people.id)
    assert run.state == Run.SUCCEEDED and run.changed == 1, run
    got = get_lead(leads, workspace, lead.id)
    assert (got.first_name, got.last_name, got.title) == ("Jane", "Doe", "CTO")
    found = provenance(enrichment, workspace, lead.id)
    assert found["first_name"].connector_id == names.id
    assert found["title"].connector_id == people.id


# -- triggers ---------------------------------------------------------------------------------


def test_a_triggers_enrichment_action_enriches_the_new_lead(
    channel: grpc.Channel, enrichment: Enrichment, leads: Leads, workspace: Workspace
) -> None:
    triggers = trigger_service_pb2_grpc.TriggerServiceStub(channel)
    connector = create_connector(enrichment, workspace, built_in(Connector.NAME_FROM_EMAIL))
    trigger = create(
        triggers,
        workspace,
        tpb.Trigger(
            name="names for new leads",
            enabled=True,
            event_types=["lead.created"],
            action=tpb.TriggerAction(enrichment=tpb.EnrichmentAction(connector_id=connector.id)),
        ),
    )
    assert trigger.action.enrichment.connector_id == connector.id
    lead = new_lead(leads, workspace, "ada.lovelace@example.org")

    wait_until(lambda: get_lead(leads, workspace, lead.id).first_name == "Ada", timeout=30)
    assert get_lead(leads, workspace, lead.id).last_name == "Lovelace"
    [delivery] = wait_for_status(triggers, workspace, trigger.id, Delivery.SUCCEEDED)
    assert delivery.attempts == 1
    assert provenance(enrichment, workspace, lead.id)["first_name"].connector_id == connector.id


def test_an_enrichment_action_whose_connector_was_deleted_is_dead(
    channel: grpc.Channel, enrichment: Enrichment, leads: Leads, workspace: Workspace
) -> None:
    triggers = trigger_service_pb2_grpc.TriggerServiceStub(channel)
    connector = create_connector(enrichment, workspace, built_in(Connector.NAME_FROM_EMAIL))
    action = tpb.TriggerAction(enrichment=tpb.EnrichmentAction(connector_id=connector.id))
    trigger = create(
        triggers,
        workspace,
        tpb.Trigger(name="names", enabled=True, event_types=["lead.created"], action=action),
    )
    enrichment.DeleteConnector(
        enrichment_service_pb2.DeleteConnectorRequest(id=connector.id), metadata=workspace.metadata
    )
    lead = new_lead(leads, workspace, "ada.lovelace@example.org")

    [dead] = wait_for_status(triggers, workspace, trigger.id, Delivery.DEAD)
    assert connector.id in dead.last_error
    assert get_lead(leads, workspace, lead.id).first_name == ""


# -- secrets ------------------------------------------------------------------------------------


def test_header_values_are_never_logged(work_dir: Path) -> None:
    """After the runs above (which sent the fake provider's key), no log holds it."""
    logs = [*work_dir.glob("enrichment-*.log"), work_dir / "server.log"]
    assert logs
    for log in logs:
        assert fake_provider.API_KEY not in log.read_text(errors="replace"), log
