"""Creating, reading, updating and archiving leads over gRPC."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2
from tnx.crm.v1 import lead_pb2, lead_service_pb2, lead_service_pb2_grpc

from tests.conftest import Workspace
from tests.support import db
from tests.support.errors import details

Stub = lead_service_pb2_grpc.LeadServiceStub


def custom(**values: Any) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def create(stub: Stub, ws: Workspace, **fields: object) -> lead_pb2.Lead:
    request = lead_service_pb2.CreateLeadRequest(lead=lead_pb2.Lead(**fields))  # type: ignore[arg-type]
    reply: lead_pb2.Lead = stub.CreateLead(request, metadata=ws.metadata)
    return reply


def test_created_lead_comes_back_with_id_defaults_and_normalised_email(
    leads: Stub, workspace: Workspace
) -> None:
    lead = create(
        leads,
        workspace,
        email="  Jane.Doe@Acme.COM ",
        first_name="Jane",
        title="Head of Growth",
        custom_fields=custom(industry="SaaS", seats=40),
    )
    assert lead.id.startswith("lead_")
    assert lead.email == "jane.doe@acme.com"
    assert lead.source == "api"
    assert lead.status == lead_pb2.LEAD_STATUS_NEW
    assert dict(lead.custom_fields) == {"industry": "SaaS", "seats": 40}
    assert lead.created_at.seconds > 0 and not lead.HasField("archived_at")

    fetched = leads.GetLead(
        lead_service_pb2.GetLeadRequest(id=lead.id), metadata=workspace.metadata
    )
    assert fetched == lead


def test_duplicate_email_in_any_case_is_already_exists_and_writes_nothing(
    leads: Stub, workspace: Workspace, database_url: str
) -> None:
    create(leads, workspace, email="dup@example.com")
    before = db.snapshot(database_url, workspace.id)
    with pytest.raises(grpc.RpcError) as caught:
        create(leads, workspace, email="DUP@Example.com")
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert details(caught.value) == ("LEAD_EMAIL_TAKEN", ["lead.email"])
    assert db.snapshot(database_url, workspace.id) == before


def test_same_email_may_exist_in_two_workspaces(
    leads: Stub, workspace: Workspace, other_workspace: Workspace
) -> None:
    first = create(leads, workspace, email="shared@example.com")
    second = create(leads, other_workspace, email="shared@example.com")
    assert first.id != second.id


def test_update_with_mask_changes_only_named_fields(leads: Stub, workspace: Workspace) -> None:
    lead = create(
        leads,
        workspace,
        email="mask@example.com",
        first_name="Ann",
        title="CTO",
        custom_fields=custom(industry="SaaS", tier="gold"),
    )
    patch = lead_pb2.Lead(
        id=lead.id, first_name="Anne", title="ignored", custom_fields=custom(tier="platinum")
    )
    updated = leads.UpdateLead(
        lead_service_pb2.UpdateLeadRequest(
            lead=patch,
            update_mask=field_mask_pb2.FieldMask(paths=["first_name", "custom_fields.tier"]),
        ),
        metadata=workspace.metadata,
    )
    assert updated.first_name == "Anne"
    assert updated.title == "CTO"
    assert dict(updated.custom_fields) == {"industry": "SaaS", "tier": "platinum"}
    assert updated.updated_at.ToDatetime() > lead.updated_at.ToDatetime()


def test_update_mask_path_to_absent_custom_key_removes_it(
    leads: Stub, workspace: Workspace
) -> None:
    lead = create(leads, workspace, email="rm@example.com", custom_fields=custom(a=1, b=2))
    updated = leads.UpdateLead(
        lead_service_pb2.UpdateLeadRequest(
            lead=lead_pb2.Lead(id=lead.id),
            update_mask=field_mask_pb2.FieldMask(paths=["custom_fields.a"]),
        ),
        metadata=workspace.metadata,
    )
    assert dict(updated.custom_fields) == {"b": 2}


def test_update_without_mask_sets_every_given_field_and_merges_custom_fields(
    leads: Stub, workspace: Workspace
) -> None:
    lead = create(
        leads, workspace, email="nomask@example.com", first_name="Bo", custom_fields=custom(a=1)
    )
    updated = leads.UpdateLead(
        lead_service_pb2.UpdateLeadRequest(
            lead=lead_pb2.Lead(id=lead.id, score=70, custom_fields=custom(b=2))
        ),
        metadata=workspace.metadata,
    )
    assert (updated.first_name, updated.score) == ("Bo", 70)
    assert dict(updated.custom_fields) == {"a": 1, "b": 2}


def test_unknown_update_mask_path_is_invalid_and_changes_nothing(
    leads: Stub, workspace: Workspace, database_url: str
) -> None:
    lead = create(leads, workspace, email="badmask@example.com")
    before = db.snapshot(database_url, workspace.id)
    for path in ["shoe_size", "created_at", "id"]:
        with pytest.raises(grpc.RpcError) as caught:
            leads.UpdateLead(
                lead_service_pb2.UpdateLeadRequest(
                    lead=lead_pb2.Lead(id=lead.id, first_name="X"),
                    update_mask=field_mask_pb2.FieldMask(paths=["first_name", path]),
                ),
                metadata=workspace.metadata,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(caught.value) == ("UPDATE_MASK_INVALID", ["update_mask"])
    assert db.snapshot(database_url, workspace.id) == before


def test_updating_email_to_one_taken_is_already_exists(leads: Stub, workspace: Workspace) -> None:
    create(leads, workspace, email="taken@example.com")
    lead = create(leads, workspace, email="mine@example.com")
    with pytest.raises(grpc.RpcError) as caught:
        leads.UpdateLead(
            lead_service_pb2.UpdateLeadRequest(
                lead=lead_pb2.Lead(id=lead.id, email="TAKEN@example.com")
            ),
            metadata=workspace.metadata,
        )
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


@pytest.mark.parametrize(
    ("fields", "violated"),
    [
        ({"email": "not-an-email"}, ["lead.email"]),
        ({"email": ""}, ["lead.email"]),
        ({"email": "a@b.co", "score": -1}, ["lead.score"]),
        (
            {"email": "a@b.co", "custom_fields": custom(**{"bad key!": 1})},
            ["lead.custom_fields.bad key!"],
        ),
        ({"email": "nope", "score": -5}, ["lead.email", "lead.score"]),
    ],
)
def test_invalid_lead_is_rejected_naming_every_bad_field(
    leads: Stub,
    workspace: Workspace,
    database_url: str,
    fields: dict[str, object],
    violated: list[str],
) -> None:
    before = db.snapshot(database_url, workspace.id)
    with pytest.raises(grpc.RpcError) as caught:
        create(leads, workspace, **fields)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(caught.value) == ("LEAD_INVALID", violated)
    assert db.snapshot(database_url, workspace.id) == before


def test_archive_hides_from_list_and_unarchive_brings_back(
    leads: Stub, workspace: Workspace
) -> None:
    lead = create(leads, workspace, email="arch@example.com")
    archived = leads.ArchiveLead(
        lead_service_pb2.ArchiveLeadRequest(id=lead.id), metadata=workspace.metadata
    )
    assert archived.HasField("archived_at")
    listed = leads.ListLeads(lead_service_pb2.ListLeadsRequest(), metadata=workspace.metadata)
    assert lead.id not in [item.id for item in listed.leads]
    with_archived = leads.ListLeads(
        lead_service_pb2.ListLeadsRequest(include_archived=True), metadata=workspace.metadata
    )
    assert lead.id in [item.id for item in with_archived.leads]
    again = leads.ArchiveLead(
        lead_service_pb2.ArchiveLeadRequest(id=lead.id), metadata=workspace.metadata
    )
    assert again.archived_at == archived.archived_at
    restored = leads.UnarchiveLead(
        lead_service_pb2.UnarchiveLeadRequest(id=lead.id), metadata=workspace.metadata
    )
    assert not restored.HasField("archived_at")


def test_lead_of_another_workspace_is_not_found(
    leads: Stub, workspace: Workspace, other_workspace: Workspace, database_url: str
) -> None:
    theirs = create(leads, other_workspace, email="theirs@example.com")
    before = db.snapshot(database_url, other_workspace.id)
    calls: list[Callable[[], object]] = [
        lambda: leads.GetLead(
            lead_service_pb2.GetLeadRequest(id=theirs.id), metadata=workspace.metadata
        ),
        lambda: leads.UpdateLead(
            lead_service_pb2.UpdateLeadRequest(
                lead=lead_pb2.Lead(id=theirs.id, first_name="Mallory")
            ),
            metadata=workspace.metadata,
        ),
        lambda: leads.ArchiveLead(
            lead_service_pb2.ArchiveLeadRequest(id=theirs.id), metadata=workspace.metadata
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert details(caught.value)[0] == "LEAD_NOT_FOUND"
    assert db.snapshot(database_url, other_workspace.id) == before


def test_every_change_writes_an_outbox_event_in_order(
    leads: Stub, workspace: Workspace, database_url: str
) -> None:
    lead = create(leads, workspace, email="events@example.com")
    leads.UpdateLead(
        lead_service_pb2.UpdateLeadRequest(lead=lead_pb2.Lead(id=lead.id, title="CEO")),
        metadata=workspace.metadata,
    )
    leads.ArchiveLead(lead_service_pb2.ArchiveLeadRequest(id=lead.id), metadata=workspace.metadata)
    rows = db.query(
        database_url,
        "SELECT type, subject_id FROM events WHERE workspace_id = %s ORDER BY id",
        workspace.id,
    )
    assert rows == [
        ("lead.created", lead.id),
        ("lead.updated", lead.id),
        ("lead.archived", lead.id),
    ]
