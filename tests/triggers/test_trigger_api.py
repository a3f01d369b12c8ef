"""TriggerService over gRPC as a client uses it: the trigger's lifecycle, a webhook secret
that is shown once, other workspaces' triggers that do not exist for you, and bad input
refused with the field it is about, writing nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from tnx.crm.v1 import (
    enrichment_pb2,
    enrichment_service_pb2,
    enrichment_service_pb2_grpc,
    segment_pb2,
    segment_service_pb2,
    segment_service_pb2_grpc,
)
from tnx.crm.v1 import trigger_pb2 as pb
from tnx.crm.v1 import trigger_service_pb2 as rpc

from tests.conftest import Workspace
from tests.support import db
from tests.support.errors import details
from tests.triggers.conftest import (
    NOWHERE,
    Scoring,
    Triggers,
    create,
    get_trigger,
    rotate,
    set_thresholds,
    slack,
    webhook,
)


def a_trigger(**fields: Any) -> pb.Trigger:
    """A valid webhook trigger on lead.created, with `fields` replacing its own."""
    values: dict[str, Any] = {
        "name": "new leads to the warehouse",
        "enabled": True,
        "event_types": ["lead.created"],
        "action": webhook(NOWHERE),
        **fields,
    }
    return pb.Trigger(**values)


def listed(triggers: Triggers, ws: Workspace) -> list[pb.Trigger]:
    reply = triggers.ListTriggers(rpc.ListTriggersRequest(limit=1000), metadata=ws.metadata)
    return list(reply.triggers)


def refused(call: Callable[[], object], code: grpc.StatusCode) -> tuple[str, list[str]]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == code, caught.value.details()
    return details(caught.value)


def stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    found = timestamp_pb2.Timestamp()
    found.FromDatetime(moment)
    return found


# -- the lifecycle ------------------------------------------------------------------------


def test_a_created_trigger_is_returned_as_stored(triggers: Triggers, workspace: Workspace) -> None:
    condition = pb.TriggerCondition(filter='source = "webinar"')
    created = create(triggers, workspace, a_trigger(condition=condition))

    assert created.id.startswith("trg_")
    assert created.name == "new leads to the warehouse" and created.enabled
    assert list(created.event_types) == ["lead.created"]
    assert created.condition.filter == 'source = "webinar"'
    assert created.action.webhook.url == NOWHERE
    assert created.disabled_reason == ""
    assert created.created_at.seconds > 0 and created.updated_at.seconds > 0

    fetched = get_trigger(triggers, workspace, created.id)
    created.action.webhook.secret = ""  # the only difference: the secret is shown once
    assert fetched == created


def test_triggers_are_listed_a_page_at_a_time(triggers: Triggers, workspace: Workspace) -> None:
    made = {create(triggers, workspace, a_trigger(name=f"t{n}")).id for n in range(3)}

    seen: list[str] = []
    cursor = ""
    for _ in range(4):
        page = triggers.ListTriggers(
            rpc.ListTriggersRequest(limit=1, cursor=cursor), metadata=workspace.metadata
        )
        assert len(page.triggers) <= 1
        seen.extend(t.id for t in page.triggers)
        cursor = page.next_cursor
        if not cursor:
            break
    assert seen == sorted(made)
    assert cursor == ""


def test_an_update_changes_only_the_masked_fields(triggers: Triggers, workspace: Workspace) -> None:
    created = create(triggers, workspace, a_trigger())
    reply = triggers.UpdateTrigger(
        rpc.UpdateTriggerRequest(
            trigger=pb.Trigger(id=created.id, name="renamed", event_types=["lead.updated"]),
            update_mask=field_mask_pb2.FieldMask(paths=["name"]),
        ),
        metadata=workspace.metadata,
    )
    assert reply.name == "renamed"
    assert list(reply.event_types) == ["lead.created"]  # not in the mask
    assert reply.action.webhook.url == NOWHERE and reply.enabled
    assert get_trigger(triggers, workspace, created.id) == reply

    moved = triggers.UpdateTrigger(
        rpc.UpdateTriggerRequest(
            trigger=pb.Trigger(
                id=created.id,
                event_types=["lead.updated", "lead.archived"],
                action=webhook("http://127.0.0.2:9/elsewhere"),
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["event_types", "action"]),
        ),
        metadata=workspace.metadata,
    )
    assert list(moved.event_types) == ["lead.updated", "lead.archived"]
    assert moved.action.webhook.url == "http://127.0.0.2:9/elsewhere"
    assert moved.name == "renamed"


def test_disabling_and_enabling_clears_the_reason_it_was_disabled(
    triggers: Triggers, workspace: Workspace, database_url: str
) -> None:
    created = create(triggers, workspace, a_trigger())
    # What the worker writes when a receiver answers 410 (tests/triggers/test_webhook_delivery
    # shows it for real).
    db.execute(
        database_url,
        "UPDATE triggers SET enabled = false, disabled_reason = 'receiver answered 410 Gone' "
        "WHERE id = %s",
        created.id,
    )
    assert get_trigger(triggers, workspace, created.id).disabled_reason

    enabled = triggers.UpdateTrigger(
        rpc.UpdateTriggerRequest(
            trigger=pb.Trigger(id=created.id, enabled=True),
            update_mask=field_mask_pb2.FieldMask(paths=["enabled"]),
        ),
        metadata=workspace.metadata,
    )
    assert enabled.enabled and enabled.disabled_reason == ""
    assert get_trigger(triggers, workspace, created.id).disabled_reason == ""

    disabled = triggers.UpdateTrigger(
        rpc.UpdateTriggerRequest(
            trigger=pb.Trigger(id=created.id, enabled=False),
            update_mask=field_mask_pb2.FieldMask(paths=["enabled"]),
        ),
        metadata=workspace.metadata,
    )
    assert not disabled.enabled and disabled.disabled_reason == ""


def test_a_deleted_trigger_is_gone_with_its_deliveries(
    triggers: Triggers, workspace: Workspace, database_url: str
) -> None:
    created = create(triggers, workspace, a_trigger())
    kept = create(triggers, workspace, a_trigger(name="kept"))
    triggers.TestTrigger(rpc.TestTriggerRequest(id=created.id), metadata=workspace.metadata)

    triggers.DeleteTrigger(rpc.DeleteTriggerRequest(id=created.id), metadata=workspace.metadata)

    assert [t.id for t in listed(triggers, workspace)] == [kept.id]
    refused(lambda: get_trigger(triggers, workspace, created.id), grpc.StatusCode.NOT_FOUND)
    again = rpc.DeleteTriggerRequest(id=created.id)
    reason, _ = refused(
        lambda: triggers.DeleteTrigger(again, metadata=workspace.metadata),
        grpc.StatusCode.NOT_FOUND,
    )
    assert reason == "TRIGGER_NOT_FOUND"
    left = db.query(
        database_url, "SELECT count(*) FROM deliveries WHERE trigger_id = %s", created.id
    )
    assert left == [(0,)]


# -- the webhook secret -------------------------------------------------------------------


def test_the_webhook_secret_is_shown_only_when_created_or_rotated(
    triggers: Triggers, workspace: Workspace
) -> None:
    created = create(triggers, workspace, a_trigger())
    secret = created.action.webhook.secret
    assert secret.startswith("whsec_") and len(secret) > 40

    assert get_trigger(triggers, workspace, created.id).action.webhook.secret == ""
    assert all(t.action.webhook.secret == "" for t in listed(triggers, workspace))
    updated = triggers.UpdateTrigger(
        rpc.UpdateTriggerRequest(
            trigger=pb.Trigger(id=created.id, name="renamed", action=webhook(NOWHERE + "2")),
            update_mask=field_mask_pb2.FieldMask(paths=["name", "action"]),
        ),
        metadata=workspace.metadata,
    )
    assert updated.action.webhook.secret == ""

    rotated = rotate(triggers, workspace, created.id)
    assert rotated.action.webhook.secret.startswith("whsec_")
    assert rotated.action.webhook.secret != secret
    assert get_trigger(triggers, workspace, created.id).action.webhook.secret == ""
    assert all(t.action.webhook.secret == "" for t in listed(triggers, workspace))


def test_a_slack_trigger_has_no_secret_to_rotate(triggers: Triggers, workspace: Workspace) -> None:
    created = create(triggers, workspace, a_trigger(action=slack("https://hooks.slack.com/x")))
    assert created.action.slack.webhook_url == "https://hooks.slack.com/x"
    assert created.action.webhook.secret == ""

    _, fields = refused(
        lambda: rotate(triggers, workspace, created.id), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert fields == ["id"]


@pytest.mark.parametrize("overlap", [-1, 604_801])
def test_an_overlap_out_of_range_is_refused_and_the_secret_kept(
    triggers: Triggers, workspace: Workspace, database_url: str, overlap: int
) -> None:
    created = create(triggers, workspace, a_trigger())
    stored = db.query(database_url, "SELECT secrets FROM triggers WHERE id = %s", created.id)

    _, fields = refused(
        lambda: rotate(triggers, workspace, created.id, overlap), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert fields == ["overlap_seconds"]
    assert (
        db.query(database_url, "SELECT secrets FROM triggers WHERE id = %s", created.id) == stored
    )


# -- another workspace's trigger -----------------------------------------------------------


def _theirs(database_url: str, trigger_id: str) -> list[tuple[Any, ...]]:
    """The trigger as stored and its deliveries' ids (a worker may be attempting them)."""
    return db.query(
        database_url,
        "SELECT t.*, (SELECT array_agg(d.id ORDER BY d.id) FROM deliveries d"
        " WHERE d.trigger_id = t.id) FROM triggers t WHERE t.id = %s",
        trigger_id,
    )


def test_another_workspaces_trigger_is_not_found_and_left_alone(
    triggers: Triggers, workspace: Workspace, other_workspace: Workspace, database_url: str
) -> None:
    theirs = create(triggers, other_workspace, a_trigger(name="theirs"))
    their_delivery = triggers.TestTrigger(
        rpc.TestTriggerRequest(id=theirs.id), metadata=other_workspace.metadata
    )
    before = _theirs(database_url, theirs.id)
    mine = workspace.metadata
    calls: dict[str, Callable[[], object]] = {
        "get": lambda: triggers.GetTrigger(rpc.GetTriggerRequest(id=theirs.id), metadata=mine),
        "update": lambda: triggers.UpdateTrigger(
            rpc.UpdateTriggerRequest(
                trigger=pb.Trigger(id=theirs.id, name="mine now"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            ),
            metadata=mine,
        ),
        "delete": lambda: triggers.DeleteTrigger(
            rpc.DeleteTriggerRequest(id=theirs.id), metadata=mine
        ),
        "rotate": lambda: rotate(triggers, workspace, theirs.id),
        "test": lambda: triggers.TestTrigger(rpc.TestTriggerRequest(id=theirs.id), metadata=mine),
        "deliveries": lambda: triggers.ListTriggerDeliveries(
            rpc.ListTriggerDeliveriesRequest(id=theirs.id), metadata=mine
        ),
        "redeliver": lambda: triggers.RedeliverTriggerDelivery(
            rpc.RedeliverTriggerDeliveryRequest(id=theirs.id, delivery_id=their_delivery.id),
            metadata=mine,
        ),
        "replay": lambda: triggers.ReplayTriggerEvents(
            rpc.ReplayTriggerEventsRequest(
                id=theirs.id, after=stamp(datetime.now(UTC) - timedelta(days=1))
            ),
            metadata=mine,
        ),
    }
    for name, call in calls.items():
        reason, _ = refused(call, grpc.StatusCode.NOT_FOUND)
        assert reason.endswith("_NOT_FOUND"), name
    assert listed(triggers, workspace) == []
    after = _theirs(database_url, theirs.id)
    assert after == before


# -- bad input -----------------------------------------------------------------------------


def _segment(channel: grpc.Channel, ws: Workspace) -> str:
    stub = segment_service_pb2_grpc.SegmentServiceStub(channel)
    segment = segment_pb2.Segment(name="hand-picked", membership=segment_pb2.Segment.STATIC)
    reply = stub.CreateSegment(
        segment_service_pb2.CreateSegmentRequest(segment=segment), metadata=ws.metadata
    )
    segment_id: str = reply.id
    return segment_id


THRESHOLD_MQL = pb.TriggerCondition(threshold=pb.ThresholdCondition(name="MQL"))

BAD_TRIGGERS: dict[str, tuple[pb.Trigger, str]] = {
    "no name": (a_trigger(name="  "), "trigger.name"),
    "a name too long": (a_trigger(name="x" * 201), "trigger.name"),
    "an unknown event type": (
        a_trigger(event_types=["lead.created", "lead.teleported"]),
        "trigger.event_types[1]",
    ),
    "no event types": (a_trigger(event_types=[]), "trigger.event_types"),
    "a threshold condition without threshold events": (
        a_trigger(condition=THRESHOLD_MQL),
        "trigger.condition.threshold",
    ),
    "an unknown segment": (
        a_trigger(condition=pb.TriggerCondition(segment_id="seg_nope")),
        "trigger.condition.segment_id",
    ),
    "a filter that does not parse": (
        a_trigger(condition=pb.TriggerCondition(filter='source = "webinar" AND (')),
        "trigger.condition.filter",
    ),
    "a filter on an unknown field": (
        a_trigger(condition=pb.TriggerCondition(filter='shoe_size = "9"')),
        "trigger.condition.filter",
    ),
    "no action": (a_trigger(action=pb.TriggerAction()), "trigger.action"),
    "a loopback webhook": (
        a_trigger(action=webhook("https://127.0.0.1/hook")),
        "trigger.action.webhook.url",
    ),
    "a private webhook": (
        a_trigger(action=webhook("https://10.0.0.1/hook")),
        "trigger.action.webhook.url",
    ),
    "the cloud metadata address": (
        a_trigger(action=webhook("http://169.254.169.254/latest/meta-data/")),
        "trigger.action.webhook.url",
    ),
    "plain http to a host not allow-listed": (
        a_trigger(action=webhook("http://example.com/")),
        "trigger.action.webhook.url",
    ),
    "a URL with user information": (
        a_trigger(action=webhook("https://user:pass@example.com/hook")),
        "trigger.action.webhook.url",
    ),
    "not a URL": (a_trigger(action=webhook("hooks.example.com")), "trigger.action.webhook.url"),
    "a Slack template with an unknown placeholder": (
        a_trigger(action=slack("https://hooks.slack.com/services/T/B/X", "{name} {shoe_size}")),
        "trigger.action.slack.template",
    ),
    "a Slack webhook on a private address": (
        a_trigger(action=slack("https://192.168.1.10/services/T/B/X")),
        "trigger.action.slack.webhook_url",
    ),
    "a Slack link template that is no URL": (
        a_trigger(action=slack("https://hooks.slack.com/services/T/B/X", "", "/leads/{lead_id}")),
        "trigger.action.slack.link_template",
    ),
}


@pytest.mark.parametrize("case", BAD_TRIGGERS, ids=list(BAD_TRIGGERS))
def test_a_bad_trigger_is_refused_naming_the_field_and_nothing_is_written(
    triggers: Triggers, workspace: Workspace, case: str
) -> None:
    trigger, field = BAD_TRIGGERS[case]
    reason, fields = refused(
        lambda: create(triggers, workspace, trigger), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert fields == [field]
    assert reason.endswith("_INVALID")
    assert listed(triggers, workspace) == []


def test_a_threshold_is_refused_unless_the_scoring_model_has_it(
    triggers: Triggers, scoring: Scoring, workspace: Workspace
) -> None:
    types = ["lead.threshold_crossed"]
    condition = pb.TriggerCondition(threshold=pb.ThresholdCondition(name="SQL"))
    _, fields = refused(
        lambda: create(triggers, workspace, a_trigger(event_types=types, condition=condition)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert fields == ["trigger.condition.threshold.name"]  # no model yet: no thresholds

    set_thresholds(scoring, workspace, MQL=50)
    _, fields = refused(
        lambda: create(triggers, workspace, a_trigger(event_types=types, condition=condition)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert fields == ["trigger.condition.threshold.name"]
    assert listed(triggers, workspace) == []

    mql = pb.ThresholdCondition(name="MQL", direction=pb.ThresholdCondition.UP)
    made = create(
        triggers,
        workspace,
        a_trigger(event_types=types, condition=pb.TriggerCondition(threshold=mql)),
    )
    assert made.condition.threshold == mql


def test_a_segment_condition_names_a_segment_of_this_workspace(
    triggers: Triggers, workspace: Workspace, other_workspace: Workspace, channel: grpc.Channel
) -> None:
    theirs = _segment(channel, other_workspace)
    condition = pb.TriggerCondition(segment_id=theirs)
    _, fields = refused(
        lambda: create(triggers, workspace, a_trigger(condition=condition)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert fields == ["trigger.condition.segment_id"]
    assert listed(triggers, workspace) == []

    mine = _segment(channel, workspace)
    made = create(
        triggers,
        workspace,
        a_trigger(
            event_types=["segment.lead_entered"],
            condition=pb.TriggerCondition(segment_id=mine),
        ),
    )
    assert made.condition.segment_id == mine


def _connector(channel: grpc.Channel, ws: Workspace) -> str:
    connector = enrichment_pb2.Connector(
        name="names", kind=enrichment_pb2.Connector.NAME_FROM_EMAIL, enabled=True
    )
    reply = enrichment_service_pb2_grpc.EnrichmentServiceStub(channel).CreateConnector(
        enrichment_service_pb2.CreateConnectorRequest(connector=connector), metadata=ws.metadata
    )
    connector_id: str = reply.id
    return connector_id


def test_an_enrichment_action_names_a_connector_of_this_workspace(
    channel: grpc.Channel,
    triggers: Triggers,
    workspace: Workspace,
    other_workspace: Workspace,
) -> None:
    theirs = _connector(channel, other_workspace)
    for connector_id in ("clearbit", theirs, ""):
        action = pb.TriggerAction(enrichment=pb.EnrichmentAction(connector_id=connector_id))
        _, fields = refused(
            lambda a=action: create(triggers, workspace, a_trigger(action=a)),  # type: ignore[misc]
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert fields == ["trigger.action.enrichment.connector_id"], connector_id
    assert listed(triggers, workspace) == []

    mine = _connector(channel, workspace)
    action = pb.TriggerAction(enrichment=pb.EnrichmentAction(connector_id=mine))
    created = create(triggers, workspace, a_trigger(action=action))
    assert created.action.enrichment.connector_id == mine
    assert get_trigger(triggers, workspace, created.id).action == action


def test_a_bad_update_is_refused_and_changes_nothing(
    triggers: Triggers, workspace: Workspace
) -> None:
    created = create(triggers, workspace, a_trigger())
    before = get_trigger(triggers, workspace, created.id)
    cases: list[tuple[pb.Trigger, list[str], str]] = [
        (pb.Trigger(name=""), ["name"], "trigger.name"),
        (
            pb.Trigger(action=webhook("https://127.0.0.1/")),
            ["action"],
            "trigger.action.webhook.url",
        ),
        (pb.Trigger(event_types=["nope"]), ["event_types"], "trigger.event_types[0]"),
        (pb.Trigger(name="x"), ["secret"], "update_mask"),
    ]
    for trigger, paths, field in cases:
        trigger.id = created.id
        request = rpc.UpdateTriggerRequest(
            trigger=trigger, update_mask=field_mask_pb2.FieldMask(paths=paths)
        )
        _, fields = refused(
            partial(triggers.UpdateTrigger, request, metadata=workspace.metadata),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert fields == [field]
    assert get_trigger(triggers, workspace, created.id) == before


def test_a_test_event_of_a_type_the_trigger_lacks_is_refused(
    triggers: Triggers, workspace: Workspace
) -> None:
    created = create(triggers, workspace, a_trigger())
    request = rpc.TestTriggerRequest(id=created.id, event_type="form.submitted")
    _, fields = refused(
        lambda: triggers.TestTrigger(request, metadata=workspace.metadata),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert fields == ["event_type"]
    assert (
        triggers.ListTriggerDeliveries(
            rpc.ListTriggerDeliveriesRequest(id=created.id), metadata=workspace.metadata
        ).deliveries
        == []
    )


def test_a_replay_needs_a_window(triggers: Triggers, workspace: Workspace) -> None:
    created = create(triggers, workspace, a_trigger())
    now = datetime.now(UTC)
    cases = [
        (rpc.ReplayTriggerEventsRequest(id=created.id), "after"),
        (
            rpc.ReplayTriggerEventsRequest(
                id=created.id, after=stamp(now), before=stamp(now - timedelta(hours=1))
            ),
            "before",
        ),
    ]
    for request, field in cases:
        _, fields = refused(
            partial(triggers.ReplayTriggerEvents, request, metadata=workspace.metadata),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert fields == [field]
