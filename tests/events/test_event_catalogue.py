"""Every event is catalogued (a known type, the documented payload keys), carries a stable
`evt_…` id, and a lead's own history can be read by subject."""

from __future__ import annotations

import grpc
import pytest
import requests
from google.protobuf import field_mask_pb2, json_format
from tnx.crm.v1 import (
    company_pb2,
    company_service_pb2,
    company_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    lead_pb2,
    lead_service_pb2,
    segment_service_pb2,
    segment_service_pb2_grpc,
)
from tnx.crm.v1 import form_service_pb2_grpc as form_grpc
from tnx.public.v1 import public_form_service_pb2_grpc as public_grpc

from server.events import catalogue
from tests.conftest import Workspace
from tests.events.test_event_stream import Events, list_all, settled
from tests.forms.support import create_form, embed, submit, valid_values
from tests.segments.helpers import Leads, add_lead, all_of, cond, rule_segment, static_segment
from tests.segments.helpers import update_lead as patch_lead
from tests.support.rest import RestClient


@pytest.fixture
def events(channel: grpc.Channel) -> Events:
    return event_service_pb2_grpc.EventServiceStub(channel)


def _every_writer_once(channel: grpc.Channel, leads: Leads, ws: Workspace) -> int:
    """Leads, segments (rule and static), companies and a form submission, each writing
    its events; returns how many events at least were written."""
    segments = segment_service_pb2_grpc.SegmentServiceStub(channel)
    companies = company_service_pb2_grpc.CompanyServiceStub(channel)
    rule = rule_segment(segments, ws, "hot", all_of(cond("score", "gte", 50)))
    hand = static_segment(segments, ws)
    acme = companies.CreateCompany(
        company_service_pb2.CreateCompanyRequest(
            company=company_pb2.Company(name="Acme", domain="acme.io")
        ),
        metadata=ws.metadata,
    )
    lead = add_lead(leads, ws, "jane@acme.io", score=80)
    patch_lead(leads, ws, lead.id, score=10)
    leads.ArchiveLead(lead_service_pb2.ArchiveLeadRequest(id=lead.id), metadata=ws.metadata)
    leads.UnarchiveLead(lead_service_pb2.UnarchiveLeadRequest(id=lead.id), metadata=ws.metadata)
    segments.AddSegmentMembers(
        segment_service_pb2.AddSegmentMembersRequest(id=hand.id, lead_ids=[lead.id]),
        metadata=ws.metadata,
    )
    segments.RemoveSegmentMembers(
        segment_service_pb2.RemoveSegmentMembersRequest(id=hand.id, lead_ids=[lead.id]),
        metadata=ws.metadata,
    )
    companies.UpdateCompany(
        company_service_pb2.UpdateCompanyRequest(
            company=company_pb2.Company(id=acme.id, industry="SaaS"),
            update_mask=field_mask_pb2.FieldMask(paths=["industry"]),
        ),
        metadata=ws.metadata,
    )
    companies.ArchiveCompany(
        company_service_pb2.ArchiveCompanyRequest(id=acme.id), metadata=ws.metadata
    )
    forms = form_grpc.FormServiceStub(channel)
    form = create_form(forms, ws, segment_ids=[hand.id])
    submit(
        public_grpc.PublicFormServiceStub(channel),
        form.slug,
        embed(forms, ws, form.id).token,
        valid_values(email="new@lovelace.io"),
    )
    segments.DeleteSegment(
        segment_service_pb2.DeleteSegmentRequest(id=rule.id), metadata=ws.metadata
    )
    return 20


def test_every_event_has_a_catalogued_type_and_payload(
    events: Events, channel: grpc.Channel, leads: Leads, workspace: Workspace
) -> None:
    written = settled(events, workspace, _every_writer_once(channel, leads, workspace))
    types = {event.type for event in written}
    # The run above reaches every kind of writer: each of these types is among its events.
    assert {
        "lead.created",
        "lead.updated",
        "lead.archived",
        "lead.unarchived",
        "segment.created",
        "segment.deleted",
        "segment.lead_entered",
        "segment.lead_exited",
        "company.created",
        "company.updated",
        "company.archived",
        "form.created",
        "form.submitted",
    } <= types
    for event in written:
        event_type = catalogue.EventType(event.type)  # an unknown type raises here
        catalogue.check_payload(event_type, set(json_format.MessageToDict(event.payload)))
    by_form = [e for e in written if e.type == "lead.created" and "form_id" in e.payload]
    assert [json_format.MessageToDict(e.payload)["email"] for e in by_form] == ["new@lovelace.io"]


def test_event_ids_are_unique_and_the_same_on_every_read(
    events: Events, leads: Leads, workspace: Workspace
) -> None:
    for i in range(3):
        add_lead(leads, workspace, f"id{i}@x.io")
    first = settled(events, workspace, 3)
    again = list_all(events, workspace)
    ids = [event.id for event in first]
    assert len(set(ids)) == 3 and all(i.startswith("evt_") for i in ids)
    assert [event.id for event in again] == ids


def test_subject_id_gives_one_leads_own_history(
    events: Events, leads: Leads, workspace: Workspace
) -> None:
    mine = add_lead(leads, workspace, "mine@x.io")
    other = add_lead(leads, workspace, "other@x.io")
    patch_lead(leads, workspace, mine.id, title="CTO")
    patch_lead(leads, workspace, other.id, title="CFO")
    settled(events, workspace, 4)
    reply = events.ListEvents(
        event_service_pb2.ListEventsRequest(subject_id=mine.id), metadata=workspace.metadata
    )
    assert [(e.type, e.subject_id) for e in reply.events] == [
        ("lead.created", mine.id),
        ("lead.updated", mine.id),
    ]
    watched = events.WatchEvents(
        event_service_pb2.WatchEventsRequest(subject_id=other.id),
        metadata=workspace.metadata,
        timeout=5,
    )
    first_two: list[event_service_pb2.Event] = []
    for event in watched:
        first_two.append(event)
        if len(first_two) == 2:
            break
    watched.cancel()  # type: ignore[no-untyped-call]
    assert [(e.type, e.subject_id) for e in first_two] == [
        ("lead.created", other.id),
        ("lead.updated", other.id),
    ]


def test_subject_id_of_another_workspace_shows_nothing(
    events: Events, leads: Leads, workspace: Workspace, other_workspace: Workspace
) -> None:
    lead = add_lead(leads, workspace, "private@x.io")
    settled(events, workspace, 1)
    reply = events.ListEvents(
        event_service_pb2.ListEventsRequest(subject_id=lead.id), metadata=other_workspace.metadata
    )
    assert list(reply.events) == []


def test_subject_id_filter_over_rest_and_a_bad_one_is_400(
    http: requests.Session, gateway_url: str, leads: Leads, workspace: Workspace, events: Events
) -> None:
    rest = RestClient(http, gateway_url, workspace)
    lead = add_lead(leads, workspace, "rest@x.io")
    add_lead(leads, workspace, "noise@x.io")
    settled(events, workspace, 2)
    body = rest.ok("GET", "/api/v1/crm/events", params={"subject_id": lead.id})
    assert [(e["type"], e["subject_id"]) for e in body["events"]] == [("lead.created", lead.id)]
    assert body["events"][0]["id"].startswith("evt_")
    refused = rest.call("GET", "/api/v1/crm/events", params={"subject_id": "x" * 101})
    assert refused.status_code == 400, refused.text
    assert refused.json()["details"][0]["reason"] == "EVENTS_INVALID"


def test_a_lead_update_that_writes_nothing_records_no_event(
    events: Events, leads: Leads, workspace: Workspace
) -> None:
    lead = add_lead(leads, workspace, "quiet@x.io")
    leads.UpdateLead(
        lead_service_pb2.UpdateLeadRequest(
            lead=lead_pb2.Lead(id=lead.id), update_mask=field_mask_pb2.FieldMask(paths=[])
        ),
        metadata=workspace.metadata,
    )
    settled(events, workspace, 1)
    assert [e.type for e in list_all(events, workspace)] == ["lead.created"]
