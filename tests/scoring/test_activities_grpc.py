"""Recording activities (one, a batch, a stream) and reading a lead's timeline, over gRPC."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from tnx.crm.v1 import scoring_pb2
from tnx.crm.v1 import scoring_service_pb2 as ss

from server.errors import InvalidArgument
from server.scoring import activities
from tests.conftest import Workspace
from tests.scoring.conftest import (
    Leads,
    Scoring,
    last_activity_at,
    new_lead,
    stamp,
    stored,
    written,
)
from tests.support import db
from tests.support.errors import details

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def activity(
    type: str = "page_view",
    *,
    at: datetime | None = None,
    properties: dict[str, Any] | None = None,
    **fields: Any,
) -> scoring_pb2.Activity:
    message = scoring_pb2.Activity(type=type, **fields)
    if at is not None:
        message.occurred_at.CopyFrom(stamp(at))
    if properties is not None:
        message.properties.update(properties)
    return message


def create(
    scoring: Scoring, ws: Workspace, lead_id: str, message: scoring_pb2.Activity
) -> scoring_pb2.Activity:
    reply: scoring_pb2.Activity = scoring.CreateActivity(
        ss.CreateActivityRequest(lead_id=lead_id, activity=message), metadata=ws.metadata
    )
    return reply


def batch(scoring: Scoring, ws: Workspace, *items: scoring_pb2.Activity) -> list[ss.ActivityResult]:
    reply = scoring.BatchCreateActivities(
        ss.BatchCreateActivitiesRequest(activities=list(items)), metadata=ws.metadata
    )
    return list(reply.results)


def timeline(
    scoring: Scoring, ws: Workspace, lead_id: str, **query: Any
) -> ss.ListActivitiesResponse:
    reply: ss.ListActivitiesResponse = scoring.ListActivities(
        ss.ListActivitiesRequest(lead_id=lead_id, **query), metadata=ws.metadata
    )
    return reply


def refused(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


# -- one activity ------------------------------------------------------------------------


def test_a_recorded_activity_comes_back_in_the_timeline(
    scoring: Scoring, leads: Leads, workspace: Workspace, database_url: str
) -> None:
    lead = new_lead(leads, workspace, "ada@example.com")
    before = datetime.now(UTC)
    recorded = create(
        scoring,
        workspace,
        lead.id,
        activity(
            "email_click",
            at=T0,
            properties={"url": "/pricing", "clicks": 3, "tags": ["a", "b"]},
            source="email",
            idempotency_key="click-1",
        ),
    )
    assert recorded.id.startswith("act_")
    assert recorded.lead_id == lead.id
    assert (recorded.type, recorded.source, recorded.idempotency_key) == (
        "email_click",
        "email",
        "click-1",
    )
    assert recorded.occurred_at.ToDatetime(tzinfo=UTC) == T0
    assert json_format.MessageToDict(recorded.properties) == {
        "url": "/pricing",
        "clicks": 3,
        "tags": ["a", "b"],
    }
    assert recorded.created_at.ToDatetime(tzinfo=UTC) >= before - timedelta(seconds=5)

    listed = timeline(scoring, workspace, lead.id)
    assert list(listed.activities) == [recorded]
    assert listed.next_cursor == ""
    # Stored as given: whole numbers stay whole numbers.
    [row] = stored(database_url, workspace.id)
    assert row[3] == {"url": "/pricing", "clicks": 3, "tags": ["a", "b"]}


def test_occurred_at_defaults_to_the_time_it_is_received(
    scoring: Scoring, leads: Leads, workspace: Workspace
) -> None:
    lead = new_lead(leads, workspace, "now@example.com")
    before = datetime.now(UTC)
    recorded = create(scoring, workspace, lead.id, activity("meeting_booked"))
    after = datetime.now(UTC)
    when = recorded.occurred_at.ToDatetime(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= when <= after + timedelta(seconds=1)
    assert last_activity_at(leads, workspace, lead.id) == when


def test_last_activity_at_moves_forward_and_never_back(
    scoring: Scoring, leads: Leads, workspace: Workspace
) -> None:
    lead = new_lead(leads, workspace, "moves@example.com")
    assert last_activity_at(leads, workspace, lead.id) is None
    create(scoring, workspace, lead.id, activity(at=T0))
    assert last_activity_at(leads, workspace, lead.id) == T0
    create(scoring, workspace, lead.id, activity(at=T0 - timedelta(days=3)))  # older: late
    assert last_activity_at(leads, workspace, lead.id) == T0
    create(scoring, workspace, lead.id, activity(at=T0 + timedelta(hours=1)))
    assert last_activity_at(leads, workspace, lead.id) == T0 + timedelta(hours=1)


def test_the_same_idempotency_key_twice_records_once(
    scoring: Scoring, leads: Leads, workspace: Workspace, database_url: str
) -> None:
    lead = new_lead(leads, workspace, "twice@example.com")
    first = create(
        scoring, workspace, lead.id, activity(at=T0, properties={"n": 1}, idempotency_key="k-1")
    )
    again = create(
        scoring,
        workspace,
        lead.id,
        activity(at=T0 + timedelta(days=1), properties={"n": 2}, idempotency_key="k-1"),
    )
    assert again == first  # the first activity, not the second's values
    assert len(stored(database_url, workspace.id)) == 1
    # The repeat wrote nothing: the lead's last activity is still the first one's.
    assert last_activity_at(leads, workspace, lead.id) == T0


def test_idempotency_keys_belong_to_a_workspace(
    scoring: Scoring,
    leads: Leads,
    workspace: Workspace,
    other_workspace: Workspace,
    database_url: str,
) -> None:
    mine = new_lead(leads, workspace, "mine@example.com")
    theirs = new_lead(leads, other_workspace, "theirs@example.com")
    first = create(scoring, workspace, mine.id, activity(idempotency_key="shared"))
    second = create(scoring, other_workspace, theirs.id, activity(idempotency_key="shared"))
    assert first.id != second.id
    assert len(stored(database_url, workspace.id)) == 1
    assert len(stored(database_url, other_workspace.id)) == 1


def test_bad_input_is_refused_naming_every_field_and_writes_nothing(
    scoring: Scoring, leads: Leads, workspace: Workspace, database_url: str
) -> None:
    lead = new_lead(leads, workspace, "bad@example.com")
    before = written(database_url, workspace.id)
    error = refused(
        lambda: create(
            scoring,
            workspace,
            lead.id,
            activity(
                "Page View",
                at=datetime(1999, 12, 31, tzinfo=UTC),
                properties={"note": "x" * 17_000},  # over the 16 KiB limit
                source="s" * 101,
                idempotency_key="k" * 201,
            ),
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    reason, fields = details(error)
    assert reason == "ACTIVITY_INVALID"
    assert sorted(fields) == [
        "activity.idempotency_key",
        "activity.occurred_at",
        "activity.properties",
        "activity.source",
        "activity.type",
    ]
    assert written(database_url, workspace.id) == before


def test_properties_may_be_16_kib_of_json_and_no_more(
    scoring: Scoring, leads: Leads, workspace: Workspace, database_url: str
) -> None:
    lead = new_lead(leads, workspace, "big@example.com")
    wrapper = len('{"s": ""}')
    create(scoring, workspace, lead.id, activity(properties={"s": "x" * (16384 - wrapper)}))
    before = written(database_url, workspace.id)
    error = refused(
        lambda: create(
            scoring, workspace, lead.id, activity(properties={"s": "x" * (16385 - wrapper)})
        )
    )
    assert details(error) == ("ACTIVITY_INVALID", ["activity.properties"])
    assert written(database_url, workspace.id) == before


@pytest.mark.parametrize(
    "properties",
    [{}, {"points": 1.5}, {"points": "5"}, {"points": 1_000_001}, {"points": True}],
    ids=["missing", "fraction", "text", "too-many", "boolean"],
)
def test_a_score_adjustment_needs_whole_points(
    scoring: Scoring, leads: Leads, workspace: Workspace, properties: dict[str, Any]
) -> None:
    lead = new_lead(leads, workspace, "adjust@example.com")
    error = refused(
        lambda: create(
            scoring, workspace, lead.id, activity("score_adjusted", properties=properties)
        )
    )
    assert details(error) == ("ACTIVITY_INVALID", ["activity.properties.points"])


def test_a_score_adjustment_with_whole_points_is_recorded(
    scoring: Scoring, leads: Leads, workspace: Workspace
) -> None:
    lead = new_lead(leads, workspace, "adjusted@example.com")
    for points in (-1_000_000, 25):
        recorded = create(
            scoring, workspace, lead.id, activity("score_adjusted", properties={"points": points})
        )
        assert recorded.properties["points"] == points


def test_the_occurred_at_window_is_a_minute_of_skew_and_nothing_before_2000() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)  # a fixed clock: no race with the wall clock

    def at(when: datetime) -> datetime:
        data = activities.ActivityInput(type="page_view", occurred_at=when)
        return activities.check(data, prefix="activity.", now=now, names_lead=False).occurred_at

    assert at(now + timedelta(seconds=60)) == now + timedelta(seconds=60)
    assert at(datetime(2000, 1, 1, tzinfo=UTC)) == datetime(2000, 1, 1, tzinfo=UTC)
    for late in (
        now + timedelta(seconds=60, microseconds=1),
        datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
    ):
        with pytest.raises(InvalidArgument) as caught:
            at(late)
        assert [v.field for v in caught.value.violations] == ["activity.occurred_at"]
    default = activities.check(
        activities.ActivityInput(type="page_view"), prefix="", now=now, names_lead=False
    )
    assert default.occurred_at == now


def test_a_future_activity_is_refused(scoring: Scoring, leads: Leads, workspace: Workspace) -> None:
    lead = new_lead(leads, workspace, "future@example.com")
    later = datetime.now(UTC) + timedelta(minutes=5)
    error = refused(lambda: create(scoring, workspace, lead.id, activity(at=later)))
    assert details(error) == ("ACTIVITY_INVALID", ["activity.occurred_at"])


def test_an_unknown_or_another_workspaces_lead_is_not_found(
    scoring: Scoring,
    leads: Leads,
    workspace: Workspace,
    other_workspace: Workspace,
    database_url: str,
) -> None:
    theirs = new_lead(leads, other_workspace, "theirs@example.com")
    mine_before = written(database_url, workspace.id)
    theirs_before = written(database_url, other_workspace.id)
    for lead_id in (theirs.id, "lead_01HZZZZZZZZZZZZZZZZZZZZZZZ", ""):
        error = refused(lambda lead_id=lead_id: create(scoring, workspace, lead_id, activity()))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert details(error)[0] == "LEAD_NOT_FOUND"
        listed = refused(lambda lead_id=lead_id: timeline(scoring, workspace, lead_id))
        assert listed.code() == grpc.StatusCode.NOT_FOUND
        assert details(listed)[0] == "LEAD_NOT_FOUND"
    assert written(database_url, workspace.id) == mine_before
    assert written(database_url, other_workspace.id) == theirs_before


# -- the timeline ------------------------------------------------------------------------


def test_the_timeline_is_newest_first_and_pages_with_a_cursor(
    scoring: Scoring, leads: Leads, workspace: Workspace
) -> None:
    lead = new_lead(leads, workspace, "pages@example.com")
    offsets = [3, 0, 5, 1, 1, 4, 2]  # two at the same moment: the id orders them
    made = [
        create(scoring, workspace, lead.id, activity(at=T0 + timedelta(minutes=m))) for m in offsets
    ]
    expected = sorted(
        made, key=lambda a: (a.occurred_at.ToDatetime(tzinfo=UTC), a.id), reverse=True
    )
    seen: list[scoring_pb2.Activity] = []
    cursor = ""
    pages = 0
    while True:
        page = timeline(scoring, workspace, lead.id, limit=3, cursor=cursor)
        assert len(page.activities) <= 3
        seen.extend(page.activities)
        pages += 1
        cursor = page.next_cursor
        if not cursor:
            break
    assert [a.id for a in seen] == [a.id for a in expected]
    assert pages == 3


def test_the_timeline_filters_by_types_and_after(
    scoring: Scoring, leads: Leads, workspace: Workspace
) -> None:
    lead = new_lead(leads, workspace, "filters@example.com")
    old_view = create(scoring, workspace, lead.id, activity("page_view", at=T0))
    click = create(scoring, workspace, lead.id, activity("email_click", at=T0 + timedelta(hours=1)))
    view = create(scoring, workspace, lead.id, activity("page_view", at=T0 + timedelta(hours=2)))
    meeting = create(
        scoring, workspace, lead.id, activity("meeting_booked", at=T0 + timedelta(hours=3))
    )

    def ids(**query: Any) -> list[str]:
        return [a.id for a in timeline(scoring, workspace, lead.id, **query).activities]

    assert ids(types=["page_view"]) == [view.id, old_view.id]
    assert ids(types=["page_view", "email_click"]) == [view.id, click.id, old_view.id]
    # `after` is inclusive: an activity at exactly that moment is in.
    assert ids(after=stamp(T0 + timedelta(hours=1))) == [meeting.id, view.id, click.id]
    assert ids(types=["page_view"], after=stamp(T0 + timedelta(minutes=1))) == [view.id]
    assert ids(types=["webinar_attended"]) == []

    first = timeline(scoring, workspace, lead.id, types=["page_view"], limit=1)
    assert [a.id for a in first.activities] == [view.id]
    rest = timeline(
        scoring, workspace, lead.id, types=["page_view"], limit=1, cursor=first.next_cursor
    )
    assert [a.id for a in rest.activities] == [old_view.id] and rest.next_cursor == ""
    # A cursor belongs to its query: another filter refuses it.
    error = refused(
        lambda: timeline(
            scoring, workspace, lead.id, types=["email_click"], cursor=first.next_cursor
        )
    )
    assert details(error) == ("CURSOR_INVALID", ["cursor"])


def test_a_bad_types_filter_is_refused(
    scoring: Scoring, leads: Leads, workspace: Workspace
) -> None:
    lead = new_lead(leads, workspace, "types@example.com")
    error = refused(lambda: timeline(scoring, workspace, lead.id, types=["page_view", "Bad Type"]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(error) == ("ACTIVITY_FILTER_INVALID", ["types[1]"])
    error = refused(
        lambda: timeline(scoring, workspace, lead.id, types=[f"t{i}" for i in range(51)])
    )
    assert details(error) == ("ACTIVITY_FILTER_INVALID", ["types"])


# -- batches -----------------------------------------------------------------------------


def test_a_bad_item_does_not_sink_the_rest_of_a_batch(
    scoring: Scoring,
    leads: Leads,
    workspace: Workspace,
    other_workspace: Workspace,
    database_url: str,
) -> None:
    ada = new_lead(leads, workspace, "ada@example.com")
    bob = new_lead(leads, workspace, "bob@example.com")
    stranger = new_lead(leads, other_workspace, "stranger@example.com")
    theirs_before = written(database_url, other_workspace.id)
    results = batch(
        scoring,
        workspace,
        activity(lead_id=ada.id, at=T0),
        activity("Not A Type", lead_id=ada.id),
        activity(lead_id=ada.id, properties={"k": ["x\x00"]}),
        activity(lead_id=ada.id, at=datetime.now(UTC) + timedelta(hours=1)),
        activity(email="nobody@example.com"),
        activity(lead_id=stranger.id),
        activity(email="  BOB@Example.com ", at=T0 + timedelta(minutes=5)),
        activity(),  # names no lead
    )
    assert [r.index for r in results] == list(range(8))
    good = [results[0], results[6]]
    assert all(not r.HasField("error") and not r.duplicate for r in good)
    assert (good[0].activity.lead_id, good[1].activity.lead_id) == (ada.id, bob.id)
    errors = {
        r.index: (r.error.code, r.error.reason, list(r.error.fields))
        for r in results
        if r.HasField("error")
    }
    assert errors == {
        1: ("INVALID_ARGUMENT", "ACTIVITY_INVALID", ["activities[1].type"]),
        2: ("INVALID_ARGUMENT", "ACTIVITY_INVALID", ["activities[2].properties"]),
        3: ("INVALID_ARGUMENT", "ACTIVITY_INVALID", ["activities[3].occurred_at"]),
        4: ("NOT_FOUND", "LEAD_NOT_FOUND", ["activities[4].email"]),
        5: ("NOT_FOUND", "LEAD_NOT_FOUND", ["activities[5].lead_id"]),
        7: ("INVALID_ARGUMENT", "ACTIVITY_INVALID", ["activities[7].lead_id"]),
    }
    assert all(not r.HasField("activity") for r in results if r.HasField("error"))
    assert all(r.error.message for r in results if r.HasField("error"))
    assert sorted(row[0] for row in stored(database_url, workspace.id)) == sorted(
        r.activity.id for r in good
    )
    assert last_activity_at(leads, workspace, ada.id) == T0
    assert last_activity_at(leads, workspace, bob.id) == T0 + timedelta(minutes=5)
    assert written(database_url, other_workspace.id) == theirs_before


def test_the_same_key_twice_in_one_batch_records_once(
    scoring: Scoring, leads: Leads, workspace: Workspace, database_url: str
) -> None:
    lead = new_lead(leads, workspace, "batchkey@example.com")
    results = batch(
        scoring,
        workspace,
        activity(lead_id=lead.id, at=T0, idempotency_key="dup", properties={"n": 1}),
        activity(lead_id=lead.id, at=T0, idempotency_key="other"),
        activity(lead_id=lead.id, at=T0 + timedelta(days=1), idempotency_key="dup"),
    )
    assert [r.duplicate for r in results] == [False, False, True]
    assert results[2].activity == results[0].activity
    assert dict(results[2].activity.properties) == {"n": 1}
    assert len(stored(database_url, workspace.id)) == 2
    assert last_activity_at(leads, workspace, lead.id) == T0


def test_a_key_recorded_by_an_earlier_call_is_a_duplicate_in_a_batch(
    scoring: Scoring, leads: Leads, workspace: Workspace, database_url: str
) -> None:
    lead = new_lead(leads, workspace, "earlier@example.com")
    first = create(scoring, workspace, lead.id, activity(at=T0, idempotency_key="once"))
    results = batch(
        scoring,
        workspace,
        activity(email="earlier@example.com", idempotency_key="once"),
        activity(lead_id=lead.id, idempotency_key="fresh", at=T0 - timedelta(days=1)),
    )
    assert (results[0].duplicate, results[0].activity) == (True, first)
    assert not results[1].duplicate
    assert len(stored(database_url, workspace.id)) == 2
    # Again, the whole batch: both items are duplicates now and nothing more is written.
    again = batch(
        scoring,
        workspace,
        activity(lead_id=lead.id, idempotency_key="once"),
        activity(lead_id=lead.id, idempotency_key="fresh"),
    )
    assert [r.duplicate for r in again] == [True, True]
    assert [r.activity.id for r in again] == [first.id, results[1].activity.id]
    assert len(stored(database_url, workspace.id)) == 2


@pytest.mark.parametrize("count", [0, 1001])
def test_a_batch_of_none_or_more_than_1000_is_refused(
    scoring: Scoring, leads: Leads, workspace: Workspace, database_url: str, count: int
) -> None:
    lead = new_lead(leads, workspace, "size@example.com")
    before = written(database_url, workspace.id)
    items = [activity(lead_id=lead.id) for _ in range(count)]
    error = refused(lambda: batch(scoring, workspace, *items))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(error) == ("ACTIVITY_BATCH_SIZE", ["activities"])
    assert written(database_url, workspace.id) == before


def test_a_batch_of_1000_is_recorded(
    scoring: Scoring, leads: Leads, workspace: Workspace, database_url: str
) -> None:
    lead = new_lead(leads, workspace, "thousand@example.com")
    results = batch(
        scoring,
        workspace,
        *[activity(lead_id=lead.id, at=T0 + timedelta(seconds=i)) for i in range(1000)],
    )
    assert len(results) == 1000 and not any(r.HasField("error") for r in results)
    assert len(stored(database_url, workspace.id)) == 1000
    assert last_activity_at(leads, workspace, lead.id) == T0 + timedelta(seconds=999)


# -- streams -----------------------------------------------------------------------------


def _count(database_url: str, workspace_id: str) -> int:
    [(count,)] = db.query(
        database_url, "SELECT count(*) FROM activities WHERE workspace_id = %s", workspace_id
    )
    return int(count)


def test_a_stream_commits_each_message_as_it_arrives_and_counts_across_them(
    scoring: Scoring, leads: Leads, workspace: Workspace, database_url: str
) -> None:
    ada = new_lead(leads, workspace, "ada@example.com")
    first = [
        activity(lead_id=ada.id, at=T0 + timedelta(minutes=i), idempotency_key=f"k{i}")
        for i in range(3)
    ]
    second = [
        activity(lead_id=ada.id, idempotency_key="k1"),  # index 3: a duplicate of the first
        activity("Bad", lead_id=ada.id),  # index 4
        activity(email="ada@example.com", at=T0 + timedelta(hours=1)),  # index 5
    ]
    third = [activity(email="ghost@example.com"), activity(lead_id=ada.id, at=T0)]  # 6, 7
    committed_mid_stream: list[int] = []

    def messages() -> Iterator[ss.StreamActivitiesRequest]:
        yield ss.StreamActivitiesRequest(activities=first)
        # The stream is still open: the first message must already be committed.
        deadline = time.monotonic() + 10
        while _count(database_url, workspace.id) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        committed_mid_stream.append(_count(database_url, workspace.id))
        yield ss.StreamActivitiesRequest(activities=second)
        yield ss.StreamActivitiesRequest()  # an empty message is fine
        yield ss.StreamActivitiesRequest(activities=third)

    reply = scoring.StreamActivities(messages(), metadata=workspace.metadata)
    assert committed_mid_stream == [3]
    assert (reply.recorded, reply.duplicates, reply.failed) == (5, 1, 2)
    errors = {e.index: (e.error.reason, list(e.error.fields)) for e in reply.errors}
    assert errors == {
        4: ("ACTIVITY_INVALID", ["activities[4].type"]),
        6: ("LEAD_NOT_FOUND", ["activities[6].email"]),
    }
    assert _count(database_url, workspace.id) == 5
    assert last_activity_at(leads, workspace, ada.id) == T0 + timedelta(hours=1)


def test_a_stream_reports_only_the_first_100_errors_but_counts_them_all(
    scoring: Scoring, leads: Leads, workspace: Workspace, database_url: str
) -> None:
    lead = new_lead(leads, workspace, "many@example.com")
    chunk = [activity("BAD", lead_id=lead.id)] * 80 + [activity(lead_id=lead.id)]
    reply = scoring.StreamActivities(
        iter([ss.StreamActivitiesRequest(activities=chunk)] * 2), metadata=workspace.metadata
    )
    assert (reply.recorded, reply.duplicates, reply.failed) == (2, 0, 160)
    assert [e.index for e in reply.errors] == [*range(80), *range(81, 101)]
    assert _count(database_url, workspace.id) == 2


def test_an_empty_stream_records_nothing(scoring: Scoring, workspace: Workspace) -> None:
    reply = scoring.StreamActivities(iter([]), metadata=workspace.metadata)
    assert (reply.recorded, reply.duplicates, reply.failed, len(reply.errors)) == (0, 0, 0, 0)


def test_a_stream_message_over_1000_is_refused_after_the_earlier_ones_are_kept(
    scoring: Scoring, leads: Leads, workspace: Workspace, database_url: str
) -> None:
    lead = new_lead(leads, workspace, "overflow@example.com")
    requests = [
        ss.StreamActivitiesRequest(activities=[activity(lead_id=lead.id)]),
        ss.StreamActivitiesRequest(activities=[activity(lead_id=lead.id)] * 1001),
    ]
    error = refused(lambda: scoring.StreamActivities(iter(requests), metadata=workspace.metadata))
    assert details(error) == ("ACTIVITY_BATCH_SIZE", ["activities"])
    assert _count(database_url, workspace.id) == 1
