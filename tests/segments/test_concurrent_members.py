"""Many clients changing one static segment's members at once (issue 16, fault 4: concurrent
`members:add` and `:remove` deadlocked in PostgreSQL and came back as 500 INTERNAL)."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import grpc
import requests
from tnx.crm.v1 import segment_service_pb2_grpc

from tests.conftest import Workspace
from tests.segments.helpers import Leads, add_lead, static_segment
from tests.support import db

CLIENTS = 16
REQUESTS = 320


def test_concurrent_adds_and_removes_on_one_segment_all_succeed_and_counts_match(
    channel: grpc.Channel, leads: Leads, workspace: Workspace, gateway_url: str, database_url: str
) -> None:
    segments = segment_service_pb2_grpc.SegmentServiceStub(channel)
    segment = static_segment(segments, workspace)
    lead_ids = [add_lead(leads, workspace, f"m{i}@x.io").id for i in range(120)]
    base = f"{gateway_url}/api/v1/crm/lists/{segment.id}/members"
    rng = random.Random(4)
    # Overlapping sets in different orders: the shape that deadlocked.
    plans = [
        (rng.choice([":add", ":remove"]), rng.sample(lead_ids, rng.randint(10, 100)))
        for _ in range(REQUESTS)
    ]

    def send(plan: tuple[str, list[str]]) -> int:
        action, ids = plan
        with requests.Session() as http:
            reply = http.post(
                base + action, json={"lead_ids": ids}, headers=workspace.headers, timeout=30
            )
        return reply.status_code

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = list(pool.map(send, plans))

    assert statuses.count(200) == REQUESTS, sorted(set(statuses))
    members = db.query(
        database_url, "SELECT count(*) FROM segment_members WHERE segment_id = %s", segment.id
    )[0][0]
    counted = db.query(database_url, "SELECT member_count FROM segments WHERE id = %s", segment.id)
    assert counted[0][0] == members
