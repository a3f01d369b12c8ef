"""Static segments kept by hand, segment CRUD, and exports."""

from __future__ import annotations

import csv
import hashlib
import io
from typing import Any

import grpc
import pytest
from tnx.crm.v1 import lead_service_pb2, segment_pb2, segment_service_pb2_grpc
from tnx.crm.v1 import segment_service_pb2 as sps

from tests.conftest import Workspace
from tests.segments.helpers import (
    Leads,
    Segments,
    add_lead,
    all_of,
    cond,
    get,
    member_ids,
    rule_segment,
    static_segment,
)
from tests.support import db
from tests.support.errors import details

Export = sps.ExportSegmentRequest


@pytest.fixture
def segments(channel: grpc.Channel) -> Segments:
    return segment_service_pb2_grpc.SegmentServiceStub(channel)


def add(
    segments: Segments, ws: Workspace, segment_id: str, *lead_ids: str
) -> sps.ChangeSegmentMembersResponse:
    reply: sps.ChangeSegmentMembersResponse = segments.AddSegmentMembers(
        sps.AddSegmentMembersRequest(id=segment_id, lead_ids=list(lead_ids)), metadata=ws.metadata
    )
    return reply


def test_adding_members_is_idempotent_and_reports_unknown_ids(
    segments: Segments, leads: Leads, workspace: Workspace, other_workspace: Workspace
) -> None:
    mine = add_lead(leads, workspace, "mine@x.io")
    theirs = add_lead(leads, other_workspace, "theirs@x.io")
    segment = static_segment(segments, workspace)
    first = add(segments, workspace, segment.id, mine.id, theirs.id, "lead_nope")
    assert list(first.changed_lead_ids) == [mine.id]
    assert sorted(first.not_found_lead_ids) == sorted([theirs.id, "lead_nope"])
    assert first.member_count == 1
    again = add(segments, workspace, segment.id, mine.id)
    assert (list(again.changed_lead_ids), list(again.unchanged_lead_ids), again.member_count) == (
        [],
        [mine.id],
        1,
    )
    lead = leads.GetLead(lead_service_pb2.GetLeadRequest(id=mine.id), metadata=workspace.metadata)
    assert list(lead.segment_ids) == [segment.id]


def test_removing_members_is_idempotent(
    segments: Segments, leads: Leads, workspace: Workspace
) -> None:
    lead = add_lead(leads, workspace, "rm@x.io")
    segment = static_segment(segments, workspace)
    add(segments, workspace, segment.id, lead.id)
    request = sps.RemoveSegmentMembersRequest(id=segment.id, lead_ids=[lead.id])
    assert list(
        segments.RemoveSegmentMembers(request, metadata=workspace.metadata).changed_lead_ids
    ) == [lead.id]
    second = segments.RemoveSegmentMembers(request, metadata=workspace.metadata)
    assert (list(second.unchanged_lead_ids), second.member_count) == ([lead.id], 0)


def test_rule_segment_refuses_manual_membership(
    segments: Segments, leads: Leads, workspace: Workspace, database_url: str
) -> None:
    lead = add_lead(leads, workspace, "manual@x.io", score=1)
    segment = rule_segment(segments, workspace, "hot", all_of(cond("score", "gte", 50)))
    before = db.snapshot(database_url, workspace.id)
    with pytest.raises(grpc.RpcError) as caught:
        add(segments, workspace, segment.id, lead.id)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(caught.value)[0] == "SEGMENT_IS_RULE_BASED"
    assert db.snapshot(database_url, workspace.id) == before


def test_segment_crud_and_listing(segments: Segments, workspace: Workspace) -> None:
    created = [static_segment(segments, workspace, f"list {i}") for i in range(3)]
    page = segments.ListSegments(sps.ListSegmentsRequest(limit=2), metadata=workspace.metadata)
    rest = segments.ListSegments(
        sps.ListSegmentsRequest(limit=2, cursor=page.next_cursor), metadata=workspace.metadata
    )
    assert [s.id for s in [*page.segments, *rest.segments]] == [s.id for s in created]
    renamed = segments.UpdateSegment(
        sps.UpdateSegmentRequest(segment=segment_pb2.Segment(id=created[0].id, name="VIPs")),
        metadata=workspace.metadata,
    )
    assert renamed.name == "VIPs" and renamed.membership == segment_pb2.Segment.STATIC
    segments.DeleteSegment(sps.DeleteSegmentRequest(id=created[0].id), metadata=workspace.metadata)
    with pytest.raises(grpc.RpcError) as caught:
        get(segments, workspace, created[0].id)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_segment_of_another_workspace_is_not_found(
    segments: Segments, workspace: Workspace, other_workspace: Workspace
) -> None:
    theirs = static_segment(segments, other_workspace)
    for call in (
        lambda: get(segments, workspace, theirs.id),
        lambda: add(segments, workspace, theirs.id, "lead_x"),
        lambda: segments.DeleteSegment(
            sps.DeleteSegmentRequest(id=theirs.id), metadata=workspace.metadata
        ),
        lambda: list(
            segments.ExportSegment(
                Export(id=theirs.id, format=Export.CSV), metadata=workspace.metadata
            )
        ),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_bad_segment_input_is_invalid(segments: Segments, workspace: Workspace) -> None:
    bad = [
        segment_pb2.Segment(name="", membership=segment_pb2.Segment.STATIC),
        segment_pb2.Segment(name="no kind"),
        segment_pb2.Segment(name="rule without rules", membership=segment_pb2.Segment.RULE),
        segment_pb2.Segment(
            name="static with rules",
            membership=segment_pb2.Segment.STATIC,
            rules=all_of(cond("score", "gt", 1)),
        ),
    ]
    for segment in bad:
        with pytest.raises(grpc.RpcError) as caught:
            segments.CreateSegment(
                sps.CreateSegmentRequest(segment=segment), metadata=workspace.metadata
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def export(
    segments: Segments, ws: Workspace, segment_id: str, fmt: Any, fields: list[str] | None = None
) -> str:
    chunks = segments.ExportSegment(
        Export(id=segment_id, format=fmt, fields=fields or []), metadata=ws.metadata
    )
    body = b"".join(chunk.data for chunk in chunks)
    return body.decode()


def test_csv_export_neutralises_formulas_and_includes_custom_fields(
    segments: Segments, leads: Leads, workspace: Workspace
) -> None:
    lead = add_lead(
        leads,
        workspace,
        "csv@x.io",
        first_name='=HYPERLINK("http://evil")',
        last_name="-2+3",
        title="@SUM(A1)",
        custom={"plan": "+gold", "seats": 12},
    )
    segment = static_segment(segments, workspace)
    add(segments, workspace, segment.id, lead.id)
    text = export(
        segments,
        workspace,
        segment.id,
        Export.CSV,
        ["email", "first_name", "last_name", "title", "custom.plan", "custom.seats"],
    )
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["email", "first_name", "last_name", "title", "custom.plan", "custom.seats"]
    assert rows[1] == [
        "csv@x.io",
        '\'=HYPERLINK("http://evil")',
        "'-2+3",
        "'@SUM(A1)",
        "'+gold",
        "12",
    ]


def test_ad_exports_normalise_and_hash_identifiers(
    segments: Segments, leads: Leads, workspace: Workspace
) -> None:
    lead = add_lead(
        leads,
        workspace,
        "John.Smith@Gmail.com",
        first_name=" John ",
        last_name="Smith-Jones",
        phone="(650) 555-1234",
        custom={"country": "us", "zip": "94043", "city": "Mountain View", "state": "CA"},
    )
    segment = static_segment(segments, workspace)
    add(segments, workspace, segment.id, lead.id)

    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    google = list(
        csv.reader(io.StringIO(export(segments, workspace, segment.id, Export.GOOGLE_ADS)))
    )
    assert google[0] == ["Email", "Phone", "First Name", "Last Name", "Country", "Zip"]
    assert google[1] == [
        sha("johnsmith@gmail.com"),
        sha("+16505551234"),
        sha("john"),
        sha("smith-jones"),
        "US",
        "94043",
    ]
    meta = list(csv.reader(io.StringIO(export(segments, workspace, segment.id, Export.META))))
    assert meta[0] == ["EMAIL", "PHONE", "FN", "LN", "CT", "ST", "ZIP", "COUNTRY"]
    assert meta[1] == [
        sha("john.smith@gmail.com"),
        sha("16505551234"),
        sha("john"),
        sha("smithjones"),
        sha("mountainview"),
        sha("ca"),
        sha("94043"),
        sha("us"),
    ]
    linkedin = list(
        csv.reader(io.StringIO(export(segments, workspace, segment.id, Export.LINKEDIN)))
    )
    assert linkedin[0] == [
        "email",
        "googleaid",
        "firstname",
        "lastname",
        "jobtitle",
        "employeecompany",
        "country",
    ]
    assert linkedin[1][0] == "john.smith@gmail.com" and linkedin[1][6] == "US"


def test_unknown_export_format_or_field_is_invalid(
    segments: Segments, workspace: Workspace
) -> None:
    segment = static_segment(segments, workspace)
    for request in (
        Export(id=segment.id),
        Export(id=segment.id, format=Export.CSV, fields=["shoe_size"]),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            list(segments.ExportSegment(request, metadata=workspace.metadata))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_export_streams_a_large_segment_in_chunks(
    segments: Segments, workspace: Workspace, database_url: str
) -> None:
    segment = static_segment(segments, workspace)
    db.execute(
        database_url,
        "INSERT INTO leads (id, workspace_id, email) SELECT 'lead_E' || lpad(g::text, 25, '0'), "
        "%s, 'export' || g || '@example.com' FROM generate_series(1, 20000) g",
        workspace.id,
    )
    db.execute(
        database_url,
        "INSERT INTO segment_members (segment_id, lead_id) SELECT %s, id FROM leads "
        "WHERE workspace_id = %s",
        segment.id,
        workspace.id,
    )
    chunks = list(
        segments.ExportSegment(
            Export(id=segment.id, format=Export.CSV, fields=["email"]), metadata=workspace.metadata
        )
    )
    assert len(chunks) > 1 and chunks[0].content_type.startswith("text/csv")
    lines = b"".join(c.data for c in chunks).decode().splitlines()
    assert len(lines) == 20001 and len(set(lines)) == 20001
    assert member_ids(segments, workspace, segment.id)[:1] == ["lead_E" + "1".rjust(25, "0")]
