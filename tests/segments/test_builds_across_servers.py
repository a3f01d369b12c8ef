"""Rule-segment builds belong to no single server process (issue 16: state that was per
process moves to where every process shares it): with two servers, a build runs once, and a
build whose server stopped is finished by the other without waiting for a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from tnx.crm.v1 import segment_pb2, segment_service_pb2_grpc

from tests.conftest import Workspace
from tests.segments.helpers import Segments, all_of, cond, get, member_ids, rule_segment
from tests.support import db, stack

LEADS = 2_000  # test servers build inline below 100 leads


@pytest.fixture
def two_servers(database_url: str, tmp_path: Path) -> Iterator[tuple[Segments, Segments]]:
    with (
        stack.grpc_server(database_url, tmp_path / "a.log", CRM_SEGMENT_RESUME_SECONDS="0.3") as (
            first,
            _,
        ),
        stack.grpc_server(database_url, tmp_path / "b.log", CRM_SEGMENT_RESUME_SECONDS="0.3") as (
            second,
            _,
        ),
        grpc.insecure_channel(first) as a,
        grpc.insecure_channel(second) as b,
    ):
        yield (
            segment_service_pb2_grpc.SegmentServiceStub(a),
            segment_service_pb2_grpc.SegmentServiceStub(b),
        )


def _wait_ready(segments: Segments, ws: Workspace, segment_id: str) -> segment_pb2.Segment:
    deadline = time.monotonic() + 30
    while (segment := get(segments, ws, segment_id)).state != segment_pb2.Segment.READY:
        assert time.monotonic() < deadline, "the segment never became READY"
        time.sleep(0.1)
    return segment


def _entries(url: str, segment_id: str) -> int:
    rows = db.query(
        url,
        "SELECT count(*) FROM events WHERE type = 'segment.lead_entered'"
        " AND payload ->> 'segment_id' = %s",
        segment_id,
    )
    return int(rows[0][0])


def test_a_build_left_by_a_stopped_server_is_finished_by_another_exactly_once(
    two_servers: tuple[Segments, Segments], workspace: Workspace, database_url: str
) -> None:
    first, second = two_servers
    db.execute(
        database_url,
        "INSERT INTO leads (id, workspace_id, email, score) "
        "SELECT 'lead_S' || lpad(g::text, 25, '0'), %s, 'shared' || g || '@example.com', g %% 100"
        " FROM generate_series(1, %s) g",
        workspace.id,
        LEADS,
    )
    segment = rule_segment(first, workspace, "hot", all_of(cond("score", "gte", 80)))
    assert segment.state == segment_pb2.Segment.BUILDING
    # Both servers look for unfinished builds every 0.3 s; the advisory lock lets one build.
    assert _wait_ready(second, workspace, segment.id).member_count == LEADS // 5
    assert _entries(database_url, segment.id) == LEADS // 5

    # A server that stopped mid-build leaves the segment BUILDING with part of its members.
    db.execute(
        database_url,
        "WITH gone AS (DELETE FROM segment_members WHERE segment_id = %s"
        " AND lead_id > 'lead_S' || lpad('1000', 25, '0') RETURNING 1)"
        " UPDATE segments SET state = 'building', member_count = member_count - "
        "(SELECT count(*) FROM gone) WHERE id = %s",
        segment.id,
        segment.id,
    )
    rebuilt = _wait_ready(first, workspace, segment.id)
    assert rebuilt.member_count == LEADS // 5
    assert len(member_ids(first, workspace, segment.id)) == LEADS // 5
