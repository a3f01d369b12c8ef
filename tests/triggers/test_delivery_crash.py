"""At least once, for real: the worker is killed with SIGKILL halfway through a thousand
deliveries, another worker takes over, and every event still reaches the receiver — some
perhaps twice, always with the same webhook-id and body, none skipped.

The test runs on a database and a gRPC server of its own, and starts its own workers: no
other worker of the session (every worker runs the delivery loop) can deliver in its place
while the first one is killed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from tnx.crm.v1 import lead_service_pb2_grpc, trigger_service_pb2_grpc
from tnx.crm.v1 import trigger_service_pb2 as rpc

from server.events.catalogue import event_id
from tests.conftest import Workspace
from tests.support import db, stack
from tests.support.imports import wait_until
from tests.triggers.conftest import (
    Delivery,
    Leads,
    Triggers,
    new_lead,
    start_worker,
    webhook_trigger,
)
from tests.triggers.receiver import Receiver, Reply

EVENTS = 1000
# A worker claims 200 deliveries at a time, sends them, then records the outcomes. Killed
# when 300 requests have arrived, it is halfway through its second batch: some sent but not
# recorded (sent again later), the rest claimed but not sent (waiting for the lease to end).
KILL_AFTER = 300
SLOW = Reply(delay=0.05)  # a receiver that takes its time, as real ones do
# A killed worker's claims come back when their lease ends: a few seconds here.
SHORT_LEASE = {"CRM_DELIVERY_LEASE_SECONDS": "4"}


@dataclass(frozen=True)
class Alone:
    """A stack no other worker knows of: its database, a workspace, the stubs."""

    database_url: str
    workspace: Workspace
    triggers: Triggers
    leads: Leads


@pytest.fixture(scope="module")
def alone(work_dir: Path) -> Iterator[Alone]:
    with (
        db.fresh_database() as url,
        stack.grpc_server(url, work_dir / "crash-server.log") as (address, _),
        grpc.insecure_channel(address) as channel,
    ):
        created = db.create_workspace(url)
        yield Alone(
            database_url=url,
            workspace=Workspace(id=created.workspace_id, key=created.key),
            triggers=trigger_service_pb2_grpc.TriggerServiceStub(channel),
            leads=lead_service_pb2_grpc.LeadServiceStub(channel),
        )


def statuses(database_url: str, trigger_id: str) -> dict[str, int]:
    rows = db.query(
        database_url,
        "SELECT status, count(*) FROM deliveries WHERE trigger_id = %s GROUP BY status",
        trigger_id,
    )
    return {status: count for status, count in rows}


def every_delivery(triggers: Triggers, ws: Workspace, trigger_id: str) -> list[Delivery]:
    found: list[Delivery] = []
    cursor = ""
    while True:
        page = triggers.ListTriggerDeliveries(
            rpc.ListTriggerDeliveriesRequest(id=trigger_id, limit=500, cursor=cursor),
            metadata=ws.metadata,
        )
        found.extend(page.deliveries)
        cursor = page.next_cursor
        if not cursor:
            return found


def test_a_worker_killed_mid_way_skips_no_event(
    alone: Alone, receiver: Receiver, work_dir: Path
) -> None:
    database_url, workspace = alone.database_url, alone.workspace
    triggers, leads = alone.triggers, alone.leads
    receiver.default = SLOW
    trigger = webhook_trigger(triggers, workspace, receiver.url())
    # Written while no worker runs: the thousand events wait in the outbox, and the first
    # worker fans them out into a thousand pending deliveries at once.
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: new_lead(leads, workspace, f"crash{n}@example.com"), range(EVENTS)))
    event_ids = {
        event_id(row[0])
        for row in db.query(
            database_url,
            "SELECT id FROM events WHERE workspace_id = %s AND type = 'lead.created'",
            workspace.id,
        )
    }
    assert len(event_ids) == EVENTS

    first = start_worker(database_url, work_dir, "crash-first", **SHORT_LEASE)
    try:
        wait_until(lambda: len(receiver.snapshot()) >= KILL_AFTER, timeout=60, interval=0.01)
    finally:
        first.kill()
    recorded = statuses(database_url, trigger.id).get("succeeded", 0)
    assert recorded < len(receiver.snapshot()) < EVENTS, "the kill did not land mid-way"

    second = start_worker(database_url, work_dir, "crash-second", **SHORT_LEASE)
    try:
        wait_until(
            lambda: statuses(database_url, trigger.id) == {"succeeded": EVENTS},
            timeout=90,
            interval=0.2,
        )
    finally:
        second.stop()

    received = receiver.snapshot()
    by_id: dict[str, set[bytes]] = defaultdict(set)
    for request in received:
        by_id[request.headers["webhook-id"]].add(request.body)
    assert set(by_id) == event_ids  # every event, and nothing else
    differing = {
        i: sorted(len(b) for b in bodies) for i, bodies in by_id.items() if len(bodies) > 1
    }
    assert differing == {}  # a duplicate is the same request again (sizes shown if not)
    found = every_delivery(triggers, workspace, trigger.id)
    assert len(found) == EVENTS
    assert {d.event_id for d in found} == event_ids
    assert all(d.status == Delivery.SUCCEEDED for d in found)
    retried = [d for d in found if d.attempts > 1]
    assert 0 < len(received) - EVENTS <= len(retried)  # duplicates: the interrupted batch
