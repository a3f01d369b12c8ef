"""Webhooks delivered for real: a worker process runs the delivery loop against a receiver
that is a real HTTP server; signatures are checked with the independent `standardwebhooks`
package, never with the server's own code.

Where a test shows that something is *not* delivered, it makes an event that must be
delivered afterwards: fan-out reads events in commit order, so once the later one arrives
the earlier one has been judged."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from standardwebhooks.webhooks import Webhook
from tnx.crm.v1 import segment_pb2, segment_service_pb2, segment_service_pb2_grpc
from tnx.crm.v1 import trigger_pb2 as pb
from tnx.crm.v1 import trigger_service_pb2 as rpc

from tests.conftest import Workspace
from tests.support import db
from tests.support.imports import WorkerProcess, wait_until
from tests.triggers.conftest import (
    ISSUED_SECRETS,
    Delivery,
    Leads,
    Scoring,
    Triggers,
    click,
    deliveries,
    get_trigger,
    new_lead,
    rotate,
    set_thresholds,
    wait_for_status,
    webhook_trigger,
)
from tests.triggers.receiver import Receiver, Reply

pytestmark = pytest.mark.usefixtures("delivery_worker")


def arrived(receiver: Receiver, count: int, timeout: float = 20) -> list[Any]:
    """The bodies of the first `count` requests, once they have come."""
    wait_until(lambda: len(receiver.snapshot()) >= count, timeout=timeout)
    return [r.json() for r in receiver.snapshot()[:count]]


def webhook_ids(receiver: Receiver) -> list[str]:
    return [r.headers["webhook-id"] for r in receiver.snapshot()]


# -- delivery, signed ----------------------------------------------------------------------


def test_new_lead_reaches_the_webhook_signed_per_standard_webhooks(
    triggers: Triggers, leads: Leads, workspace: Workspace, receiver: Receiver
) -> None:
    trigger = webhook_trigger(triggers, workspace, receiver.url())
    assert trigger.action.webhook.secret.startswith("whsec_")
    lead = new_lead(leads, workspace, "ada@example.com", first_name="Ada")

    wait_until(lambda: len(receiver.snapshot()) == 1, timeout=20)
    got = receiver.snapshot()[0]
    Webhook(trigger.action.webhook.secret).verify(got.body, got.headers)  # raises if wrong
    body = got.json()
    assert body["type"] == "lead.created"
    assert body["data"]["subject_id"] == lead.id
    assert body["data"]["lead"]["email"] == "ada@example.com"
    assert body["data"]["lead"]["first_name"] == "Ada"
    assert got.headers["webhook-id"].startswith("evt_")
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 30

    [delivery] = wait_for_status(triggers, workspace, trigger.id, Delivery.SUCCEEDED)
    assert delivery.event_id == got.headers["webhook-id"]
    assert delivery.attempts == 1 and delivery.last_http_status == 200


def test_a_test_event_is_delivered_signed_with_data_test_true(
    triggers: Triggers, workspace: Workspace, receiver: Receiver
) -> None:
    trigger = webhook_trigger(triggers, workspace, receiver.url())
    queued = triggers.TestTrigger(
        rpc.TestTriggerRequest(id=trigger.id), metadata=workspace.metadata
    )
    assert queued.status == Delivery.PENDING
    assert queued.event_id.startswith("evt_test_") and queued.event_type == "lead.created"

    [body] = arrived(receiver, 1)
    got = receiver.snapshot()[0]
    Webhook(trigger.action.webhook.secret).verify(got.body, got.headers)
    assert got.headers["webhook-id"] == queued.event_id
    assert body["type"] == "lead.created"
    assert body["data"]["test"] is True
    [done] = wait_for_status(triggers, workspace, trigger.id, Delivery.SUCCEEDED)
    assert done.id == queued.id


def test_after_a_rotation_both_the_old_and_the_new_secret_verify(
    triggers: Triggers, leads: Leads, workspace: Workspace, receiver: Receiver
) -> None:
    trigger = webhook_trigger(triggers, workspace, receiver.url())
    old = trigger.action.webhook.secret
    new = rotate(triggers, workspace, trigger.id, overlap_seconds=3600).action.webhook.secret
    new_lead(leads, workspace, "rotated@example.com")

    arrived(receiver, 1)
    got = receiver.snapshot()[0]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(got.body, got.headers)
    Webhook(new).verify(got.body, got.headers)


# -- retries and giving up ------------------------------------------------------------------


def test_failed_attempts_are_retried_with_the_same_webhook_id_until_success(
    triggers: Triggers, leads: Leads, workspace: Workspace, receiver: Receiver
) -> None:
    receiver.replies = [Reply(500), Reply(503)]
    trigger = webhook_trigger(triggers, workspace, receiver.url())
    new_lead(leads, workspace, "retry@example.com")

    [delivery] = wait_for_status(triggers, workspace, trigger.id, Delivery.SUCCEEDED, timeout=30)
    attempts = receiver.snapshot()
    assert len(attempts) == 3 and delivery.attempts == 3
    assert len({a.headers["webhook-id"] for a in attempts}) == 1
    assert len({a.body for a in attempts}) == 1
    assert attempts[1].at - attempts[0].at >= 0.7  # the schedule's pause (1 s ± 20%)


def test_retry_after_is_waited_for(
    triggers: Triggers, leads: Leads, workspace: Workspace, receiver: Receiver
) -> None:
    receiver.replies = [Reply(429, {"Retry-After": "3"})]
    trigger = webhook_trigger(triggers, workspace, receiver.url())
    new_lead(leads, workspace, "slow-down@example.com")

    [delivery] = wait_for_status(triggers, workspace, trigger.id, Delivery.SUCCEEDED)
    first, second = receiver.snapshot()
    assert second.at - first.at >= 2.5  # not the schedule's 1 s
    assert delivery.attempts == 2


def test_an_attempt_that_times_out_fails_and_is_retried(
    triggers: Triggers, leads: Leads, workspace: Workspace, receiver: Receiver
) -> None:
    receiver.replies = [Reply(delay=11)]  # past the 10 s an attempt may take
    trigger = webhook_trigger(triggers, workspace, receiver.url())
    new_lead(leads, workspace, "sleepy@example.com")

    seen: list[pb.Delivery] = []

    def failed_by_time_out() -> bool:
        seen[:] = deliveries(triggers, workspace, trigger.id, Delivery.FAILED)
        return bool(seen)

    wait_until(failed_by_time_out, timeout=20, interval=0.05)
    assert "timed out" in seen[0].last_error and seen[0].last_http_status == 0
    [done] = wait_for_status(triggers, workspace, trigger.id, Delivery.SUCCEEDED)
    assert done.attempts == 2 and done.last_error == ""
    first, second = receiver.snapshot()
    assert second.at - first.at >= 10


def test_the_last_failed_attempt_gives_up_and_a_redelivery_tries_again(
    triggers: Triggers, leads: Leads, workspace: Workspace, receiver: Receiver
) -> None:
    receiver.default = Reply(500)
    trigger = webhook_trigger(triggers, workspace, receiver.url())
    new_lead(leads, workspace, "always-500@example.com")

    [dead] = wait_for_status(triggers, workspace, trigger.id, Delivery.DEAD)
    assert dead.attempts == 3 and dead.last_http_status == 500
    assert "HTTP 500" in dead.last_error
    assert [d.id for d in deliveries(triggers, workspace, trigger.id, Delivery.DEAD)] == [dead.id]
    assert deliveries(triggers, workspace, trigger.id, Delivery.SUCCEEDED) == []
    assert len(receiver.snapshot()) == 3

    receiver.default = Reply(200)
    again = triggers.RedeliverTriggerDelivery(
        rpc.RedeliverTriggerDeliveryRequest(id=trigger.id, delivery_id=dead.id),
        metadata=workspace.metadata,
    )
    assert again.id == dead.id and again.status == Delivery.PENDING
    [done] = wait_for_status(triggers, workspace, trigger.id, Delivery.SUCCEEDED)
    assert done.attempts == 4
    requests = receiver.snapshot()
    assert len(requests) == 4
    assert {r.headers["webhook-id"] for r in requests} == {dead.event_id}
    assert len({r.body for r in requests}) == 1


def test_gone_disables_the_trigger_until_it_is_enabled_again(
    triggers: Triggers, leads: Leads, workspace: Workspace, receiver: Receiver
) -> None:
    receiver.default = Reply(410)
    trigger = webhook_trigger(triggers, workspace, receiver.url())
    new_lead(leads, workspace, "gone@example.com")

    [delivery] = wait_for_status(triggers, workspace, trigger.id, Delivery.DEAD)
    assert delivery.last_http_status == 410 and delivery.attempts == 1
    found = get_trigger(triggers, workspace, trigger.id)
    assert not found.enabled and "410" in found.disabled_reason
    assert found.action.webhook.secret == ""  # shown once, at creation

    receiver.default = Reply(200)
    enabled = triggers.UpdateTrigger(
        rpc.UpdateTriggerRequest(
            trigger=pb.Trigger(id=trigger.id, enabled=True),
            update_mask=field_mask_pb2.FieldMask(paths=["enabled"]),
        ),
        metadata=workspace.metadata,
    )
    assert enabled.enabled and enabled.disabled_reason == ""
    new_lead(leads, workspace, "back@example.com")
    wait_for_status(triggers, workspace, trigger.id, Delivery.SUCCEEDED)
    assert len(receiver.snapshot()) == 2


def _set_enabled(triggers: Triggers, ws: Workspace, trigger_id: str, enabled: bool) -> None:
    triggers.UpdateTrigger(
        rpc.UpdateTriggerRequest(
            trigger=pb.Trigger(id=trigger_id, enabled=enabled),
            update_mask=field_mask_pb2.FieldMask(paths=["enabled"]),
        ),
        metadata=ws.metadata,
    )


def _fanned_out(database_url: str, ws: Workspace) -> bool:
    """Whether fan-out has read every event of the workspace written so far."""
    rows = db.query(
        database_url,
        "SELECT (SELECT event_row FROM trigger_cursors WHERE workspace_id = %s)"
        " >= (SELECT max(id) FROM events WHERE workspace_id = %s)",
        ws.id,
        ws.id,
    )
    return bool(rows[0][0])


def test_events_while_a_trigger_is_disabled_are_not_delivered_when_it_is_enabled(
    triggers: Triggers, leads: Leads, workspace: Workspace, receiver: Receiver, database_url: str
) -> None:
    trigger = webhook_trigger(triggers, workspace, receiver.url())
    _set_enabled(triggers, workspace, trigger.id, False)
    new_lead(leads, workspace, "while-disabled@example.com")
    # Fanned out "within a second of it" (the contract), while the trigger is disabled.
    wait_until(lambda: _fanned_out(database_url, workspace), timeout=5)

    _set_enabled(triggers, workspace, trigger.id, True)
    new_lead(leads, workspace, "enabled-again@example.com")
    [body] = arrived(receiver, 1)
    assert body["data"]["lead"]["email"] == "enabled-again@example.com"
    wait_for_status(triggers, workspace, trigger.id, Delivery.SUCCEEDED)
    assert len(deliveries(triggers, workspace, trigger.id)) == 1


# -- the address guard when sending ----------------------------------------------------------


def test_a_name_resolving_to_loopback_is_refused_when_sending(
    triggers: Triggers, leads: Leads, workspace: Workspace, canary: Receiver
) -> None:
    # A DNS name is not resolved when saved: what it resolves to then proves nothing.
    trigger = webhook_trigger(triggers, workspace, f"https://localhost:{canary.port}/hook")
    new_lead(leads, workspace, "ssrf@example.com")

    [dead] = wait_for_status(triggers, workspace, trigger.id, Delivery.DEAD)
    assert "loopback" in dead.last_error and dead.last_http_status == 0
    assert dead.attempts == 1  # refused for good, never retried
    assert canary.connections == 0 and canary.snapshot() == []


def test_a_redirect_to_loopback_is_not_followed(
    triggers: Triggers, leads: Leads, workspace: Workspace, receiver: Receiver, canary: Receiver
) -> None:
    receiver.default = Reply(302, {"Location": f"http://127.0.0.1:{canary.port}/hook"})
    trigger = webhook_trigger(triggers, workspace, receiver.url())
    new_lead(leads, workspace, "redirected@example.com")

    [dead] = wait_for_status(triggers, workspace, trigger.id, Delivery.DEAD)
    assert dead.last_http_status == 302 and "redirect" in dead.last_error
    assert dead.attempts == 3 and len(receiver.snapshot()) == 3
    assert canary.connections == 0 and canary.snapshot() == []


# -- conditions -----------------------------------------------------------------------------


def _static_segment(channel: grpc.Channel, ws: Workspace, name: str) -> str:
    segment = segment_pb2.Segment(name=name, membership=segment_pb2.Segment.STATIC)
    reply = segment_service_pb2_grpc.SegmentServiceStub(channel).CreateSegment(
        segment_service_pb2.CreateSegmentRequest(segment=segment), metadata=ws.metadata
    )
    segment_id: str = reply.id
    return segment_id


def _add_member(channel: grpc.Channel, ws: Workspace, segment_id: str, lead_id: str) -> None:
    segment_service_pb2_grpc.SegmentServiceStub(channel).AddSegmentMembers(
        segment_service_pb2.AddSegmentMembersRequest(id=segment_id, lead_ids=[lead_id]),
        metadata=ws.metadata,
    )


def test_a_segment_condition_delivers_entries_to_that_segment_only(
    triggers: Triggers,
    leads: Leads,
    workspace: Workspace,
    receiver: Receiver,
    channel: grpc.Channel,
) -> None:
    wanted = _static_segment(channel, workspace, "VIPs")
    other = _static_segment(channel, workspace, "Others")
    trigger = webhook_trigger(
        triggers, workspace, receiver.url(), ("segment.lead_entered",), segment_id=wanted
    )
    vip = new_lead(leads, workspace, "vip@example.com")
    bystander = new_lead(leads, workspace, "bystander@example.com")

    _add_member(channel, workspace, other, bystander.id)  # first: judged before the next
    _add_member(channel, workspace, wanted, vip.id)

    [body] = arrived(receiver, 1)
    data = body["data"]
    assert body["type"] == "segment.lead_entered"
    assert data["segment_id"] == wanted and data["segment_name"] == "VIPs"
    assert data["lead"]["email"] == "vip@example.com"
    wait_for_status(triggers, workspace, trigger.id, Delivery.SUCCEEDED)
    assert len(deliveries(triggers, workspace, trigger.id)) == 1
    assert len(receiver.snapshot()) == 1


def test_a_filter_condition_delivers_matching_leads_only(
    triggers: Triggers, leads: Leads, workspace: Workspace, receiver: Receiver
) -> None:
    trigger = webhook_trigger(triggers, workspace, receiver.url(), filter='source = "webinar"')
    new_lead(leads, workspace, "ads@example.com", source="ads")
    new_lead(leads, workspace, "webinar@example.com", source="webinar")

    [body] = arrived(receiver, 1)
    assert body["data"]["lead"]["email"] == "webinar@example.com"
    wait_for_status(triggers, workspace, trigger.id, Delivery.SUCCEEDED)
    assert len(deliveries(triggers, workspace, trigger.id)) == 1


def test_a_threshold_condition_delivers_the_crossing_it_names(
    triggers: Triggers, scoring: Scoring, leads: Leads, workspace: Workspace, receiver: Receiver
) -> None:
    set_thresholds(scoring, workspace, Engaged=40, MQL=50)
    trigger = webhook_trigger(
        triggers,
        workspace,
        receiver.url(),
        ("lead.threshold_crossed",),
        threshold=pb.ThresholdCondition(name="MQL", direction=pb.ThresholdCondition.UP),
    )
    lead = new_lead(leads, workspace, "cto@example.com", title="CTO")  # 30 points
    click(scoring, workspace, lead.id)  # 40: crosses Engaged, not MQL
    click(scoring, workspace, lead.id)  # 50: crosses MQL

    [body] = arrived(receiver, 1)
    assert body["type"] == "lead.threshold_crossed"
    data = body["data"]
    assert (data["threshold"], data["direction"], data["score"]) == ("MQL", "up", 50)
    assert data["subject_id"] == lead.id
    wait_for_status(triggers, workspace, trigger.id, Delivery.SUCCEEDED)
    assert len(deliveries(triggers, workspace, trigger.id)) == 1


# -- replay ---------------------------------------------------------------------------------


def test_a_replay_sends_the_windows_events_again_with_their_own_ids(
    triggers: Triggers, leads: Leads, workspace: Workspace, receiver: Receiver
) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    trigger = webhook_trigger(triggers, workspace, receiver.url())
    new_lead(leads, workspace, "first@example.com")
    new_lead(leads, workspace, "second@example.com")
    wait_for_status(triggers, workspace, trigger.id, Delivery.SUCCEEDED, count=2)
    first_ids = webhook_ids(receiver)
    assert len(set(first_ids)) == 2

    after = timestamp_pb2.Timestamp()
    after.FromDatetime(start)
    reply = triggers.ReplayTriggerEvents(
        rpc.ReplayTriggerEventsRequest(id=trigger.id, after=after), metadata=workspace.metadata
    )
    assert reply.deliveries_queued == 2
    wait_for_status(triggers, workspace, trigger.id, Delivery.SUCCEEDED, count=4)
    again = webhook_ids(receiver)[2:]
    assert sorted(again) == sorted(first_ids)


# -- secrets stay secret (keep this test last: it reads the logs the others wrote) ----------


def test_no_secret_is_ever_logged(
    triggers: Triggers,
    leads: Leads,
    workspace: Workspace,
    receiver: Receiver,
    database_url: str,
    work_dir: Path,
    delivery_worker: WorkerProcess,
) -> None:
    receiver.replies = [Reply(500)]  # a failure too, which the worker may log
    trigger = webhook_trigger(triggers, workspace, receiver.url())
    rotate(triggers, workspace, trigger.id)
    new_lead(leads, workspace, "logged@example.com")
    wait_for_status(triggers, workspace, trigger.id, Delivery.SUCCEEDED)

    stored = db.query(
        database_url, "SELECT s->>'secret' FROM triggers, jsonb_array_elements(secrets) s"
    )
    secrets = ISSUED_SECRETS | {row[0] for row in stored}
    assert len(secrets) >= 2
    logs = [p for p in work_dir.rglob("*") if p.is_file()]  # the server's, Envoy's, workers'
    assert delivery_worker.log_path in logs and work_dir / "server.log" in logs
    for path in logs:
        text = path.read_text(errors="replace")
        leaked = [s for s in secrets if s.removeprefix("whsec_") in text]
        assert leaked == [], f"{path.name} holds a webhook secret"
