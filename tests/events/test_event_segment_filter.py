"""`segment_id` on ListEvents and WatchEvents: a segment's entries and exits (named in their
payload) and its own events, over gRPC and through the real Envoy."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
import requests
from google.protobuf import field_mask_pb2
from tnx.crm.v1 import (
    event_service_pb2,
    event_service_pb2_grpc,
    segment_pb2,
    segment_service_pb2,
    segment_service_pb2_grpc,
)

from tests.conftest import Workspace
from tests.events.test_event_stream import Events, settled
from tests.events.watching import GrpcWatch, RestWatch
from tests.segments.helpers import Leads, add_lead, all_of, cond, rule_segment, update_lead
from tests.support.errors import details, json_details
from tests.support.rest import RestClient


@pytest.fixture
def events(channel: grpc.Channel) -> Events:
    return event_service_pb2_grpc.EventServiceStub(channel)


@pytest.fixture
def segments(channel: grpc.Channel) -> segment_service_pb2_grpc.SegmentServiceStub:
    return segment_service_pb2_grpc.SegmentServiceStub(channel)


def listed(events: Events, ws: Workspace, **request: Any) -> list[event_service_pb2.Event]:
    reply = events.ListEvents(
        event_service_pb2.ListEventsRequest(limit=1000, **request), metadata=ws.metadata
    )
    return list(reply.events)


def test_segment_filter_lists_and_watches_its_entries_exits_and_own_events(
    events: Events,
    segments: segment_service_pb2_grpc.SegmentServiceStub,
    leads: Leads,
    channel: grpc.Channel,
    http: requests.Session,
    gateway_url: str,
    workspace: Workspace,
) -> None:
    hot = rule_segment(segments, workspace, "hot", all_of(cond("score", "gte", 50)))
    warm = rule_segment(segments, workspace, "warm", all_of(cond("score", "gte", 10)))
    a = add_lead(leads, workspace, "a@x.io", score=80)  # enters hot and warm
    add_lead(leads, workspace, "b@x.io", score=20)  # enters warm only
    update_lead(leads, workspace, a.id, score=30)  # leaves hot, stays in warm
    segments.UpdateSegment(
        segment_service_pb2.UpdateSegmentRequest(
            segment=segment_pb2.Segment(id=hot.id, name="hotter"),
            update_mask=field_mask_pb2.FieldMask(paths=["name"]),
        ),
        metadata=workspace.metadata,
    )
    everything = settled(events, workspace, 10)
    assert len(everything) == 10

    mine = listed(events, workspace, segment_id=hot.id)
    assert [(e.type, e.subject_id) for e in mine] == [
        ("segment.created", hot.id),
        ("segment.lead_entered", a.id),
        ("segment.lead_exited", a.id),
        ("segment.updated", hot.id),
    ]
    assert all(dict(e.payload)["segment_id"] == hot.id for e in mine[1:3])
    expected_ids = [e.id for e in mine]
    # It combines with the other filters.
    assert [e.type for e in listed(events, workspace, segment_id=hot.id, subject_id=a.id)] == [
        "segment.lead_entered",
        "segment.lead_exited",
    ]
    exits = listed(events, workspace, segment_id=warm.id, types=["segment.lead_exited"])
    assert exits == []

    rest = RestClient(http, gateway_url, workspace)
    body = rest.ok("GET", "/api/v1/crm/events", params={"segment_id": hot.id})
    assert [e["id"] for e in body["events"]] == expected_ids

    over_grpc = GrpcWatch(channel, workspace, segment_id=hot.id)
    over_rest = RestWatch(gateway_url, workspace, segment_id=hot.id)
    try:
        assert [e["id"] for e in over_grpc.take(4)] == expected_ids
        assert [e["id"] for e in over_rest.take(4)] == expected_ids
    finally:
        over_grpc.close()
        over_rest.close()

    # A deleted segment's history stays readable, its deletion included.
    segments.DeleteSegment(
        segment_service_pb2.DeleteSegmentRequest(id=hot.id), metadata=workspace.metadata
    )
    settled(events, workspace, 11)
    after_delete = listed(events, workspace, segment_id=hot.id)
    assert [e.id for e in after_delete[:4]] == expected_ids
    assert [e.type for e in after_delete[4:]] == ["segment.deleted"]


def test_an_unknown_or_foreign_segment_is_not_found(
    events: Events,
    segments: segment_service_pb2_grpc.SegmentServiceStub,
    leads: Leads,
    channel: grpc.Channel,
    http: requests.Session,
    gateway_url: str,
    workspace: Workspace,
    other_workspace: Workspace,
) -> None:
    theirs = rule_segment(segments, other_workspace, "theirs", all_of(cond("score", "gte", 1)))
    lead = add_lead(leads, workspace, "mine@x.io")
    for segment_id in ["seg_01UNKNOWN", theirs.id, lead.id]:  # a lead id is no segment either
        with pytest.raises(grpc.RpcError) as caught:
            listed(events, workspace, segment_id=segment_id)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert details(caught.value) == ("SEGMENT_NOT_FOUND", ["segment_id"])
        watch = GrpcWatch(channel, workspace, segment_id=segment_id)
        watch.wait_ended(10)
        assert watch.grpc_code == grpc.StatusCode.NOT_FOUND
        assert watch.items.get(timeout=1) is None  # nothing before the error

    for path in ["/api/v1/crm/events", "/api/v1/crm/events:watch"]:
        reply = http.get(
            gateway_url + path,
            headers=workspace.headers,
            params={"segment_id": theirs.id},
            timeout=10,
        )
        assert reply.status_code == 404, reply.text
        assert json_details(reply.json()) == ("SEGMENT_NOT_FOUND", ["segment_id"])


def test_a_malformed_segment_id_is_400(
    events: Events, http: requests.Session, gateway_url: str, workspace: Workspace
) -> None:
    # A NUL is refused by the request pipeline for every field (NUL_CHARACTER); a length
    # by the events domain.
    for bad, reason in [("seg\x00x", "NUL_CHARACTER"), ("s" * 101, "EVENTS_INVALID")]:
        with pytest.raises(grpc.RpcError) as caught:
            listed(events, workspace, segment_id=bad)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(caught.value) == (reason, ["segment_id"])
        for path in ["/api/v1/crm/events", "/api/v1/crm/events:watch"]:
            reply = http.get(
                gateway_url + path,
                headers=workspace.headers,
                params={"segment_id": bad},
                timeout=10,
            )
            assert reply.status_code == 400, reply.text
            assert json_details(reply.json()) == (reason, ["segment_id"])
