"""Slack triggers delivered for real: a worker process posts Block Kit messages to a receiver
standing in for a Slack incoming webhook, at most one a second, a burst as one digest."""

from __future__ import annotations

import json
import time
from itertools import pairwise

import pytest
from tnx.crm.v1 import trigger_pb2 as pb

from tests.conftest import Workspace
from tests.support.imports import wait_until
from tests.triggers.conftest import (
    Delivery,
    Leads,
    Triggers,
    create,
    get_trigger,
    new_lead,
    slack,
    wait_for_status,
)
from tests.triggers.receiver import Receiver, Reply

pytestmark = pytest.mark.usefixtures("delivery_worker")
PATH = "/services/T/B/X"


def slack_trigger(triggers: Triggers, ws: Workspace, receiver: Receiver) -> pb.Trigger:
    trigger = pb.Trigger(
        name="new leads to #sales",
        enabled=True,
        event_types=["lead.created"],
        action=slack(receiver.url(PATH)),
    )
    return create(triggers, ws, trigger)


def test_one_event_is_one_block_kit_message_with_a_fallback_text(
    triggers: Triggers, leads: Leads, workspace: Workspace, receiver: Receiver
) -> None:
    trigger = slack_trigger(triggers, workspace, receiver)
    new_lead(leads, workspace, "jane@acme.com", first_name="Jane", last_name="Doe")

    [delivery] = wait_for_status(triggers, workspace, trigger.id, Delivery.SUCCEEDED)
    [post] = receiver.snapshot()
    assert post.path == PATH
    assert post.headers["content-type"] == "application/json"
    assert "webhook-signature" not in post.headers  # Slack's URL is the secret
    message = post.json()
    assert "Jane Doe" in message["text"] and "jane@acme.com" in message["text"]
    section = message["blocks"][0]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "jane@acme.com" in section["text"]["text"]
    assert message["blocks"][-1]["type"] == "context"
    assert delivery.attempts == 1 and delivery.last_http_status == 200


def test_a_burst_becomes_digests_at_most_one_a_second(
    triggers: Triggers, leads: Leads, workspace: Workspace, receiver: Receiver
) -> None:
    trigger = slack_trigger(triggers, workspace, receiver)
    emails = [f"burst{n}@example.com" for n in range(5)]
    for email in emails:  # over about a second: one message each if nothing paced them
        new_lead(leads, workspace, email)
        time.sleep(0.25)

    wait_for_status(triggers, workspace, trigger.id, Delivery.SUCCEEDED, count=5)
    posts = receiver.snapshot()
    assert 2 <= len(posts) < 5, [p.json()["text"] for p in posts]
    everything = " ".join(json.dumps(p.json()) for p in posts)
    assert all(email in everything for email in emails)
    digests = [p.json() for p in posts if p.json()["blocks"][0]["type"] == "header"]
    assert digests
    for digest in digests:
        sections = [b for b in digest["blocks"] if b["type"] == "section"]
        assert digest["blocks"][0]["text"]["text"] == f"{len(sections)} CRM events"
    gaps = [later.at - earlier.at for earlier, later in pairwise(posts)]
    # Claims are paced a second apart; arrivals also carry each send's own delay, which a
    # loaded machine stretches for one message and not the next (seen: 0.88 s in CI).
    assert all(gap >= 0.75 for gap in gaps), gaps
    assert sum(gaps) >= 0.95 * len(gaps), gaps


def test_a_removed_slack_webhook_disables_the_trigger(
    triggers: Triggers, leads: Leads, workspace: Workspace, receiver: Receiver
) -> None:
    receiver.default = Reply(404)  # Slack's no_service: the webhook was removed
    trigger = slack_trigger(triggers, workspace, receiver)
    new_lead(leads, workspace, "nobody-listens@example.com")

    [dead] = wait_for_status(triggers, workspace, trigger.id, Delivery.DEAD)
    assert dead.last_http_status == 404 and dead.attempts == 1
    found = get_trigger(triggers, workspace, trigger.id)
    assert not found.enabled and "404" in found.disabled_reason
    wait_until(lambda: len(receiver.snapshot()) == 1, timeout=5)
