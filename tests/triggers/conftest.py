"""Fixtures for triggers: a receiver (a real HTTP server), a real worker process running the
delivery loop with a short retry schedule, the TriggerService stub, and helpers that create
triggers and leads and wait for deliveries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

import grpc
import pytest
from google.protobuf import json_format
from tnx.crm.v1 import (
    lead_pb2,
    lead_service_pb2,
    lead_service_pb2_grpc,
    scoring_pb2,
    scoring_service_pb2,
    scoring_service_pb2_grpc,
    trigger_pb2,
    trigger_service_pb2,
    trigger_service_pb2_grpc,
)

from tests.conftest import Workspace
from tests.support.imports import WorkerProcess, wait_until
from tests.triggers.receiver import Receiver, running

Triggers = trigger_service_pb2_grpc.TriggerServiceStub
Leads = lead_service_pb2_grpc.LeadServiceStub
Scoring = scoring_service_pb2_grpc.ScoringServiceStub
Delivery = trigger_pb2.Delivery
Status: TypeAlias = trigger_pb2.Delivery.Status.ValueType
# Retries a second apart (three days in production), three attempts in all. The lease
# outlasts an attempt (10 s at most): a worker that is only slow keeps its claim, even when
# another worker of the session runs too. The crash test shortens it.
WORKER_ENV = {"CRM_WEBHOOK_RETRY_DELAYS": "1,1", "CRM_DELIVERY_LEASE_SECONDS": "15"}
# A webhook URL that is accepted (allow-listed) and answers nothing: port 9 is closed, so an
# attempt fails at once instead of reaching anything.
NOWHERE = "http://127.0.0.2:9/hook"
# Every webhook secret the tests were given, so that the logs can be searched for them.
ISSUED_SECRETS: set[str] = set()


@pytest.fixture
def triggers(channel: grpc.Channel) -> Triggers:
    return trigger_service_pb2_grpc.TriggerServiceStub(channel)


@pytest.fixture
def scoring(channel: grpc.Channel) -> Scoring:
    return scoring_service_pb2_grpc.ScoringServiceStub(channel)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running() as found:
        yield found


@pytest.fixture
def canary() -> Iterator[Receiver]:
    """A server on 127.0.0.1, which the outbound guard must never let anything reach."""
    with running(host="127.0.0.1") as found:
        yield found


def start_worker(
    database_url: str, work_dir: Path, name: str = "worker", **env: str
) -> WorkerProcess:
    """A worker process with WORKER_ENV (and `env` over it), logging to triggers-NAME.log."""
    log = work_dir / f"triggers-{name}.log"
    worker = WorkerProcess(database_url, log, **{**WORKER_ENV, **env})
    worker.start()
    return worker


@pytest.fixture(scope="module")
def delivery_worker(database_url: str, work_dir: Path) -> Iterator[WorkerProcess]:
    worker = start_worker(database_url, work_dir)
    try:
        yield worker
    finally:
        worker.stop()


def remember(trigger: trigger_pb2.Trigger) -> trigger_pb2.Trigger:
    """The trigger, its secret (if the reply has one) noted as issued."""
    if trigger.action.webhook.secret:
        ISSUED_SECRETS.add(trigger.action.webhook.secret)
    return trigger


def create(triggers: Triggers, ws: Workspace, trigger: trigger_pb2.Trigger) -> trigger_pb2.Trigger:
    created: trigger_pb2.Trigger = triggers.CreateTrigger(
        trigger_service_pb2.CreateTriggerRequest(trigger=trigger), metadata=ws.metadata
    )
    return remember(created)


def webhook(url: str) -> trigger_pb2.TriggerAction:
    return trigger_pb2.TriggerAction(webhook=trigger_pb2.WebhookAction(url=url))


def slack(url: str, template: str = "", link_template: str = "") -> trigger_pb2.TriggerAction:
    action = trigger_pb2.SlackAction(
        webhook_url=url, template=template, link_template=link_template
    )
    return trigger_pb2.TriggerAction(slack=action)


def webhook_trigger(
    triggers: Triggers,
    ws: Workspace,
    url: str,
    event_types: tuple[str, ...] = ("lead.created",),
    **condition: Any,
) -> trigger_pb2.Trigger:
    trigger = trigger_pb2.Trigger(
        name="to the receiver",
        enabled=True,
        event_types=list(event_types),
        condition=trigger_pb2.TriggerCondition(**condition),
        action=webhook(url),
    )
    return create(triggers, ws, trigger)


def get_trigger(triggers: Triggers, ws: Workspace, trigger_id: str) -> trigger_pb2.Trigger:
    found: trigger_pb2.Trigger = triggers.GetTrigger(
        trigger_service_pb2.GetTriggerRequest(id=trigger_id), metadata=ws.metadata
    )
    return found


def rotate(
    triggers: Triggers, ws: Workspace, trigger_id: str, overlap_seconds: int = 0
) -> trigger_pb2.Trigger:
    request = trigger_service_pb2.RotateTriggerSecretRequest(
        id=trigger_id, overlap_seconds=overlap_seconds
    )
    return remember(triggers.RotateTriggerSecret(request, metadata=ws.metadata))


def new_lead(leads: Leads, ws: Workspace, email: str, **fields: Any) -> lead_pb2.Lead:
    request = lead_service_pb2.CreateLeadRequest(lead=lead_pb2.Lead(email=email, **fields))
    lead: lead_pb2.Lead = leads.CreateLead(request, metadata=ws.metadata)
    return lead


def set_thresholds(scoring: Scoring, ws: Workspace, **scores: int) -> None:
    """A scoring model with these thresholds: a CTO is worth 30 points (fit), each click on
    /pricing 10 (engagement)."""
    model: dict[str, Any] = {
        "fit_rules": [
            {
                "id": "cto",
                "rules": {"rules": [{"condition": {"field": "title", "op": "eq", "value": "CTO"}}]},
                "points": 30,
            }
        ],
        "engagement_rules": [
            {
                "id": "pricing_clicks",
                "activity_type": "email_click",
                "conditions": [{"property": "url", "op": "contains", "value": "/pricing"}],
                "points": 10,
                "half_life_days": 14,
            }
        ],
        "thresholds": [{"name": name, "score": score} for name, score in scores.items()],
    }
    message = json_format.ParseDict(model, scoring_pb2.ScoringModel())
    scoring.UpdateScoringModel(
        scoring_service_pb2.UpdateScoringModelRequest(model=message), metadata=ws.metadata
    )


def click(scoring: Scoring, ws: Workspace, lead_id: str, url: str = "/pricing") -> None:
    activity = scoring_pb2.Activity(type="email_click")
    activity.properties.update({"url": url})
    scoring.CreateActivity(
        scoring_service_pb2.CreateActivityRequest(lead_id=lead_id, activity=activity),
        metadata=ws.metadata,
    )


def deliveries(
    triggers: Triggers,
    ws: Workspace,
    trigger_id: str,
    status: Status = Delivery.STATUS_UNSPECIFIED,
) -> list[trigger_pb2.Delivery]:
    """The trigger's deliveries (in `status`, unless unspecified), newest first."""
    request = trigger_service_pb2.ListTriggerDeliveriesRequest(
        id=trigger_id, status=status, limit=1000
    )
    reply = triggers.ListTriggerDeliveries(request, metadata=ws.metadata)
    return list(reply.deliveries)


def wait_for_status(
    triggers: Triggers,
    ws: Workspace,
    trigger_id: str,
    status: Status,
    count: int = 1,
    timeout: float = 30,
) -> list[trigger_pb2.Delivery]:
    found: list[trigger_pb2.Delivery] = []

    def reached() -> bool:
        nonlocal found
        found = [d for d in deliveries(triggers, ws, trigger_id) if d.status == status]
        return len(found) >= count

    try:
        wait_until(reached, timeout=timeout, interval=0.1)
    except AssertionError:
        seen = deliveries(triggers, ws, trigger_id)
        raise AssertionError(f"no {count} deliveries in status {status}: {seen}") from None
    return found
