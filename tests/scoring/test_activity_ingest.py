"""High-volume ingest: activities as NDJSON bytes in a stream, checked by PostgreSQL with
the same rules as proto activities."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from tnx.crm.v1 import scoring_pb2
from tnx.crm.v1 import scoring_service_pb2 as ss

from tests.conftest import Workspace
from tests.scoring.conftest import Leads, Scoring, last_activity_at, new_lead, stored
from tests.scoring.test_activities_grpc import batch


def ndjson(*items: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


def stream(scoring: Scoring, ws: Workspace, *chunks: bytes) -> ss.StreamActivitiesResponse:
    def messages() -> Iterator[ss.StreamActivitiesRequest]:
        for chunk in chunks:
            yield ss.StreamActivitiesRequest(ndjson=chunk)

    reply: ss.StreamActivitiesResponse = scoring.StreamActivities(messages(), metadata=ws.metadata)
    return reply


def test_ndjson_lines_split_anywhere_are_recorded_and_bad_ones_reported_by_number(
    scoring: Scoring, leads: Leads, workspace: Workspace, database_url: str
) -> None:
    ada = new_lead(leads, workspace, "ada@x.io")
    grace = new_lead(leads, workspace, "grace@x.io")
    when = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    data = ndjson(
        {"lead_id": ada.id, "type": "page_view", "properties": {"url": "/a\tb\\c"}},
        {"email": "GRACE@x.io", "type": "email_open", "occurred_at": when.isoformat()},
        {"lead_id": ada.id, "type": "Bad Type"},
        {"email": "nobody@x.io", "type": "page_view"},
        {"lead_id": ada.id, "type": "page_view", "idempotency_key": "k1"},
        {"lead_id": ada.id, "type": "page_view", "idempotency_key": "k1"},
        {
            "lead_id": ada.id,
            "type": "page_view",
            "occurred_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        },
    )
    cut = [data[:7], data[7:100], data[100:101], data[101:]]  # splits inside lines
    reply = stream(scoring, workspace, *cut, data[:0])
    assert (reply.recorded, reply.duplicates, reply.failed) == (3, 1, 3)
    refused = {e.index: (e.error.reason, list(e.error.fields)) for e in reply.errors}
    assert refused == {
        2: ("ACTIVITY_INVALID", ["activities[2].type"]),
        3: ("LEAD_NOT_FOUND", ["activities[3].email"]),
        6: ("ACTIVITY_INVALID", ["activities[6].occurred_at"]),
    }
    rows = stored(database_url, workspace.id)
    assert sorted((r[1], r[2]) for r in rows) == sorted(
        [(ada.id, "page_view"), (grace.id, "email_open"), (ada.id, "page_view")]
    )
    assert {r[3]["url"] for r in rows if r[3]} == {"/a\tb\\c"}  # escapes survive COPY
    assert last_activity_at(leads, workspace, grace.id) == when


def test_ndjson_and_proto_activities_are_refused_for_the_same_reasons(
    scoring: Scoring, leads: Leads, workspace: Workspace
) -> None:
    lead = new_lead(leads, workspace, "same@x.io")
    bad: list[dict[str, Any]] = [
        {"type": "9nope"},
        {"type": "page_view", "occurred_at": "1999-12-31T00:00:00Z"},
        {"type": "page_view", "source": "s" * 101},
        {"type": "page_view", "idempotency_key": "k" * 201},
        {"type": "score_adjusted", "properties": {"points": 1.5}},
        {"type": "page_view", "properties": {"blob": "x" * 17_000}},
    ]
    as_lines = stream(scoring, workspace, ndjson(*({"lead_id": lead.id, **b} for b in bad)))
    from_lines = {e.index: (e.error.reason, list(e.error.fields)) for e in as_lines.errors}
    protos = []
    for item in bad:
        message = scoring_pb2.Activity(lead_id=lead.id, type=item["type"])
        if "occurred_at" in item:
            message.occurred_at.FromJsonString(item["occurred_at"])
        message.source = item.get("source", "")
        message.idempotency_key = item.get("idempotency_key", "")
        message.properties.update(item.get("properties", {}))
        protos.append(message)
    from_protos = {
        r.index: (r.error.reason, list(r.error.fields)) for r in batch(scoring, workspace, *protos)
    }
    assert from_lines == from_protos
    assert len(from_lines) == len(bad)


def test_a_nul_byte_in_ndjson_refuses_the_stream(scoring: Scoring, workspace: Workspace) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        stream(scoring, workspace, b'{"type": "page_view", "email": "a\x00@x.io"}\n')
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_lines_that_are_not_json_or_name_no_time_are_refused_and_the_rest_recorded(
    scoring: Scoring, leads: Leads, workspace: Workspace, database_url: str
) -> None:
    # One piece: the statement that trusts every line to parse fails, and the careful one
    # (each line and time tested before it is parsed) answers for the whole piece.
    lead = new_lead(leads, workspace, "careful@x.io")
    good = {"lead_id": lead.id, "type": "page_view"}
    data = (
        ndjson(good)
        + b"{not json\n"
        + ndjson({**good, "occurred_at": "yesterday-ish"}, {**good, "type": "t" + "x" * 63})
        + b'{"lead_id": "'
        + lead.id.encode()
        + b'", "type": "x\\u0000"}\n'
        + ndjson({**good, "type": "t" + "x" * 64}, {**good, "occurred_at": 5})
    )
    reply = stream(scoring, workspace, data)
    assert (reply.recorded, reply.failed) == (2, 5)
    # A line that is not JSON has no type or lead either: its first problem says why.
    refused = {e.index: e.error.fields[0] for e in reply.errors}
    assert refused == {
        1: "activities[1].line",
        2: "activities[2].occurred_at",
        4: "activities[4].line",
        5: "activities[5].type",  # 65 characters: one too many
        6: "activities[6].occurred_at",
    }
    assert len(stored(database_url, workspace.id)) == 2


def test_last_activity_at_moves_forward_only_across_pieces(
    scoring: Scoring, leads: Leads, workspace: Workspace
) -> None:
    lead = new_lead(leads, workspace, "forward@x.io")
    later = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    earlier = later - timedelta(days=3)
    line = {"lead_id": lead.id, "type": "page_view"}
    stream(scoring, workspace, ndjson({**line, "occurred_at": later.isoformat()}))
    assert last_activity_at(leads, workspace, lead.id) == later
    reply = stream(scoring, workspace, ndjson({**line, "occurred_at": earlier.isoformat()}))
    assert reply.recorded == 1
    assert last_activity_at(leads, workspace, lead.id) == later  # an older one moves nothing
    latest = later + timedelta(hours=1)
    both = ndjson(
        {**line, "occurred_at": latest.isoformat()}, {**line, "occurred_at": earlier.isoformat()}
    )
    assert stream(scoring, workspace, both).recorded == 2
    assert last_activity_at(leads, workspace, lead.id) == latest
