"""The events outbox as its consumers (the flows module) follow it."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import pytest
from tnx.crm.v1 import event_service_pb2, event_service_pb2_grpc, segment_service_pb2_grpc

from tests.conftest import Workspace
from tests.segments.helpers import Leads, add_lead, all_of, cond, rule_segment, update_lead
from tests.support.errors import details

Events = event_service_pb2_grpc.EventServiceStub


@pytest.fixture
def events(channel: grpc.Channel) -> Events:
    return event_service_pb2_grpc.EventServiceStub(channel)


def list_all(
    events: Events, ws: Workspace, after: str = "", types: list[str] | None = None
) -> list[event_service_pb2.Event]:
    reply = events.ListEvents(
        event_service_pb2.ListEventsRequest(after=after, types=types or [], limit=1000),
        metadata=ws.metadata,
    )
    return list(reply.events)


def settled(
    events: Events, ws: Workspace, count: int, **kwargs: Any
) -> list[event_service_pb2.Event]:
    """The feed as a consumer sees it once `count` events are visible. Delivery waits for
    every older transaction of the database cluster to end, so this polls briefly."""
    deadline = time.monotonic() + 10
    found = list_all(events, ws, **kwargs)
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(0.05)
        found = list_all(events, ws, **kwargs)
    return found


def test_events_list_in_order_and_filter_by_type(
    events: Events, leads: Leads, channel: grpc.Channel, workspace: Workspace
) -> None:
    segments = segment_service_pb2_grpc.SegmentServiceStub(channel)
    hot = rule_segment(segments, workspace, "hot", all_of(cond("score", "gte", 50)))
    lead = add_lead(leads, workspace, "e@x.io", score=80)
    everything = settled(events, workspace, 3)
    assert [e.type for e in everything] == [
        "segment.created",
        "lead.created",
        "segment.lead_entered",
    ]
    entered = settled(events, workspace, 1, types=["segment.lead_entered"])
    assert [(e.subject_id, dict(e.payload)["segment_id"]) for e in entered] == [(lead.id, hot.id)]


def test_resuming_from_a_cursor_repeats_and_skips_nothing(
    events: Events, leads: Leads, workspace: Workspace
) -> None:
    for i in range(5):
        add_lead(leads, workspace, f"r{i}@x.io")
    first = events.ListEvents(
        event_service_pb2.ListEventsRequest(limit=2), metadata=workspace.metadata
    )
    rest = list_all(events, workspace, after=first.next_cursor)
    subjects = [e.subject_id for e in [*first.events, *rest]]
    assert len(subjects) == 5 and len(set(subjects)) == 5
    assert list_all(events, workspace, after=rest[-1].cursor) == []


def test_watch_streams_new_events_as_they_commit(
    events: Events, leads: Leads, workspace: Workspace
) -> None:
    add_lead(leads, workspace, "before@x.io")
    start = settled(events, workspace, 1)[-1].cursor
    stream = events.WatchEvents(
        event_service_pb2.WatchEventsRequest(after=start), metadata=workspace.metadata
    )
    received: list[event_service_pb2.Event] = []

    def consume() -> None:
        try:
            for event in stream:
                received.append(event)
                if len(received) == 3:
                    stream.cancel()  # type: ignore[no-untyped-call]
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.CANCELLED  # we hung up, as a consumer does

    consumer = threading.Thread(target=consume)
    consumer.start()
    lead = add_lead(leads, workspace, "during@x.io")
    update_lead(leads, workspace, lead.id, title="CEO")
    add_lead(leads, workspace, "after@x.io")
    consumer.join(timeout=10)
    assert [e.type for e in received] == ["lead.created", "lead.updated", "lead.created"]


def test_an_event_committed_late_is_not_skipped_by_a_reader_that_moved_on(
    events: Events, leads: Leads, workspace: Workspace, database_url: str
) -> None:
    """A transaction that took its event id first but commits last must still be delivered
    after a consumer has read past later ids."""
    import psycopg

    from server.db.url import libpq_url

    slow = psycopg.connect(libpq_url(database_url))
    slow.execute(
        "INSERT INTO events (workspace_id, type, subject_id) VALUES (%s, 'test.slow', 'x')",
        (workspace.id,),
    )
    add_lead(leads, workspace, "fast@x.io")  # commits while `slow` is still open
    seen = list_all(events, workspace)
    assert [e.type for e in seen] == []  # held back behind the open transaction
    slow.commit()
    slow.close()
    later = settled(events, workspace, 2)
    assert [e.type for e in later] == ["test.slow", "lead.created"]


def test_forged_event_cursor_is_invalid(events: Events, workspace: Workspace) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        events.ListEvents(
            event_service_pb2.ListEventsRequest(after="forged"), metadata=workspace.metadata
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(caught.value)[1] == ["after"]


def test_events_of_another_workspace_are_invisible(
    events: Events, leads: Leads, workspace: Workspace, other_workspace: Workspace
) -> None:
    add_lead(leads, other_workspace, "theirs@x.io")
    assert list_all(events, workspace) == []
