"""WatchEvents as a flow holds it open: it outlives the gateway's route and idle timeouts
(heartbeats while idle), resumes from any event's or heartbeat's cursor, and ends soon after
its API key is revoked. A server of this module's own sends a heartbeat every second, and an
Envoy rendered from the real template with 3 s route and idle timeouts stands in front of it,
so "far past the timeouts" takes seconds."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from tnx.crm.v1 import event_service_pb2, event_service_pb2_grpc

from server.auth import service as auth
from tests.conftest import Workspace
from tests.events.watching import HEARTBEAT, GrpcWatch, RestWatch, gateway_with_short_timeouts
from tests.segments.helpers import Leads, add_lead, update_lead
from tests.support import db, stack
from tests.support.errors import details, json_details

HEARTBEAT_S = 1
TIMEOUT_S = 3  # the test gateway's route timeout and stream idle timeout (60 s in production)


@pytest.fixture(scope="module")
def watch_server(database_url: str, work_dir: Path) -> Iterator[tuple[str, int]]:
    with stack.grpc_server(
        database_url, work_dir / "watch-server.log", CRM_WATCH_HEARTBEAT_SECONDS=str(HEARTBEAT_S)
    ) as server:
        yield server


@pytest.fixture(scope="module")
def watch_channel(watch_server: tuple[str, int]) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(watch_server[0]) as channel:
        yield channel


@pytest.fixture(scope="module")
def short_gateway(watch_server: tuple[str, int], work_dir: Path) -> Iterator[str]:
    with gateway_with_short_timeouts(watch_server[1], work_dir / "short-gateway", TIMEOUT_S) as url:
        yield url


def visible(channel: grpc.Channel, ws: Workspace, count: int) -> list[event_service_pb2.Event]:
    """Wait until `count` events of the workspace are visible (delivery waits for every older
    transaction on the database server), so a watch opened now sees them before idling."""
    stub = event_service_pb2_grpc.EventServiceStub(channel)
    deadline = time.monotonic() + 10
    while True:
        found = list(
            stub.ListEvents(
                event_service_pb2.ListEventsRequest(limit=1000), metadata=ws.metadata
            ).events
        )
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def assert_heartbeat(item: dict[str, Any]) -> None:
    assert item["type"] == HEARTBEAT
    assert item["cursor"]
    assert item["id"] == "" and item["subject_id"] == ""
    assert "payload" not in item and "created_at" not in item
    assert not item.get("_has_payload") and not item.get("_has_created_at")


def test_rest_watch_outlives_the_route_and_idle_timeouts_with_heartbeats_and_events(
    short_gateway: str, leads: Leads, workspace: Workspace
) -> None:
    watch = RestWatch(short_gateway, workspace)
    assert watch.response.headers["content-type"].startswith("application/json")
    opened = time.monotonic()
    items: list[tuple[float, dict[str, Any]]] = []

    def pump(until: float, events_wanted: int = 0) -> None:
        """Collect what arrives until `until` (and, past it, up to 10 s more for events
        still on their way); the stream must stay open all along."""
        deadline = until + 10
        while time.monotonic() < until or (
            sum(i["type"] != HEARTBEAT for _, i in items) < events_wanted
            and time.monotonic() < deadline
        ):
            try:
                item = watch.next(timeout=0.2)
            except queue.Empty:
                continue
            elapsed = time.monotonic() - opened
            assert item is not None, f"the watch ended after {elapsed:.1f}s: {watch.error!r}"
            items.append(item)

    try:
        pump(opened + 1.5)
        first = add_lead(leads, workspace, "first@x.io")
        pump(opened + 1.5 + 2 * TIMEOUT_S, events_wanted=1)
        second = add_lead(leads, workspace, "second@x.io")
        pump(opened + 3 * TIMEOUT_S + 2, events_wanted=2)
        assert watch.ended_at is None
    finally:
        watch.close()

    events = [i for _, i in items if i["type"] != HEARTBEAT]
    assert [(e["type"], e["subject_id"]) for e in events] == [
        ("lead.created", first.id),
        ("lead.created", second.id),
    ]
    assert all(e["id"].startswith("evt_") for e in events)
    heartbeats = [i for _, i in items if i["type"] == HEARTBEAT]
    assert len(heartbeats) >= 2 * TIMEOUT_S
    for heartbeat in heartbeats:
        assert_heartbeat(heartbeat)
    # Never silent for as long as the idle timeout, and open far past the route timeout.
    arrivals = [opened, *(at for at, _ in items)]
    assert max(b - a for a, b in pairwise(arrivals)) < TIMEOUT_S
    assert arrivals[-1] - opened > 3 * TIMEOUT_S


def test_an_idle_grpc_watch_sends_heartbeats_that_carry_no_event(
    watch_channel: grpc.Channel, workspace: Workspace
) -> None:
    watch = GrpcWatch(watch_channel, workspace)
    try:
        started = time.monotonic()
        seen, heartbeat = watch.until_heartbeat(timeout=5)
        assert seen == []
        assert time.monotonic() - started < HEARTBEAT_S + 2
        assert_heartbeat(heartbeat)
        _, again = watch.until_heartbeat(timeout=5)
        assert again["cursor"] == heartbeat["cursor"]  # nothing read in between
    finally:
        watch.close()


def test_resuming_from_a_heartbeat_or_an_event_cursor_misses_and_repeats_nothing(
    watch_channel: grpc.Channel, short_gateway: str, leads: Leads, workspace: Workspace
) -> None:
    a = add_lead(leads, workspace, "a@x.io")
    b = add_lead(leads, workspace, "b@x.io")
    visible(watch_channel, workspace, 2)
    watch = GrpcWatch(watch_channel, workspace)
    seen, heartbeat = watch.until_heartbeat()
    watch.close()
    assert [e["subject_id"] for e in seen] == [a.id, b.id]

    c = add_lead(leads, workspace, "c@x.io")
    d = add_lead(leads, workspace, "d@x.io")
    visible(watch_channel, workspace, 4)
    # From the heartbeat: exactly what came after it, over gRPC and over REST.
    watch = GrpcWatch(watch_channel, workspace, after=heartbeat["cursor"])
    after_heartbeat, _ = watch.until_heartbeat()
    watch.close()
    assert [e["subject_id"] for e in after_heartbeat] == [c.id, d.id]
    rest = RestWatch(short_gateway, workspace, after=heartbeat["cursor"])
    rest_after_heartbeat, rest_heartbeat = rest.until_heartbeat()
    rest.close()
    assert [e["id"] for e in rest_after_heartbeat] == [e["id"] for e in after_heartbeat]
    # From an event: what follows that event.
    watch = GrpcWatch(watch_channel, workspace, after=after_heartbeat[0]["cursor"])
    after_c, _ = watch.until_heartbeat()
    watch.close()
    assert [e["subject_id"] for e in after_c] == [d.id]
    # From the last heartbeat: nothing yet; ListEvents takes a heartbeat's cursor too.
    rest = RestWatch(short_gateway, workspace, after=rest_heartbeat["cursor"])
    nothing, _ = rest.until_heartbeat()
    rest.close()
    assert nothing == []
    stub = event_service_pb2_grpc.EventServiceStub(watch_channel)
    listed = stub.ListEvents(
        event_service_pb2.ListEventsRequest(after=heartbeat["cursor"]), metadata=workspace.metadata
    )
    assert [e.subject_id for e in listed.events] == [c.id, d.id]

    # A filtered watch's heartbeat resumes that filter without a gap either.
    watch = GrpcWatch(watch_channel, workspace, types=["lead.updated"])
    none_yet, filtered_heartbeat = watch.until_heartbeat()
    watch.close()
    assert none_yet == []
    update_lead(leads, workspace, a.id, title="CEO")
    visible(watch_channel, workspace, 5)
    watch = GrpcWatch(
        watch_channel, workspace, after=filtered_heartbeat["cursor"], types=["lead.updated"]
    )
    updates, _ = watch.until_heartbeat()
    watch.close()
    assert [(e["type"], e["subject_id"]) for e in updates] == [("lead.updated", a.id)]


def test_revoking_the_key_ends_open_grpc_and_rest_watches_within_5s(
    watch_channel: grpc.Channel, short_gateway: str, database_url: str
) -> None:
    created = db.create_workspace(database_url, name="revoked")
    ws = Workspace(id=created.workspace_id, key=created.key)
    over_grpc = GrpcWatch(watch_channel, ws)
    over_rest = RestWatch(short_gateway, ws)
    try:
        over_grpc.until_heartbeat()
        over_rest.until_heartbeat()
        assert over_grpc.ended_at is None and over_rest.ended_at is None
        revoked = time.monotonic()
        db.run_with_db(database_url, lambda d: auth.revoke_key(d, key_ref=created.key_id))
        over_grpc.wait_ended(10)
        over_rest.wait_ended(10)
    finally:
        over_grpc.close()
        over_rest.close()
    assert over_grpc.ended_at is not None and over_grpc.ended_at - revoked < 5
    assert over_grpc.grpc_code == grpc.StatusCode.UNAUTHENTICATED
    assert isinstance(over_grpc.error, grpc.RpcError)
    assert details(over_grpc.error)[0] == "API_KEY_REVOKED"
    # Over REST the body just ends, after whole lines only.
    assert over_rest.ended_at is not None and over_rest.ended_at - revoked < 5
    assert over_rest.error is None and over_rest.leftover == b""
    # And the key opens no new watch.
    again = requests.get(short_gateway + "/api/v1/crm/events:watch", headers=ws.headers, timeout=10)
    assert again.status_code == 401


def test_a_bad_watch_request_is_an_ordinary_json_error_through_the_production_gateway(
    http: requests.Session, gateway_url: str, workspace: Workspace
) -> None:
    """The watch route carries its own copy of the transcoder config: it must still refuse
    unknown parameters, convert statuses and check the key like every other route."""
    url = gateway_url + "/api/v1/crm/events:watch"
    unknown = http.get(url, headers=workspace.headers, params={"bogus": "1"}, timeout=10)
    assert unknown.status_code == 400, unknown.text
    forged = http.get(url, headers=workspace.headers, params={"after": "forged"}, timeout=10)
    assert forged.status_code == 400, forged.text
    assert json_details(forged.json())[1] == ["after"]
    anonymous = http.get(url, timeout=10)
    assert anonymous.status_code == 401, anonymous.text
