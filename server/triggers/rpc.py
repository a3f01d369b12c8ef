"""TriggerService over gRPC: proto ↔ domain translation only."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2
from tnx.crm.v1 import trigger_pb2, trigger_service_pb2, trigger_service_pb2_grpc

from server.db.engine import Database
from server.outbound import AllowList
from server.pagination import CursorCodec
from server.rpc.context import workspace_id
from server.rpc.convert import optional_datetime, timestamp, update_paths
from server.triggers import service
from server.triggers.model import (
    Action,
    ActionKind,
    Condition,
    Delivery,
    DeliveryStatus,
    ThresholdCondition,
    Trigger,
    TriggerInput,
)

Context = grpc.aio.ServicerContext[Any, Any]
Direction = trigger_pb2.ThresholdCondition.Direction
_DIRECTION_TO_PROTO = {
    "": Direction.DIRECTION_UNSPECIFIED,
    "up": Direction.UP,
    "down": Direction.DOWN,
}
_DIRECTION_FROM_PROTO = {v: k for k, v in _DIRECTION_TO_PROTO.items()}
_STATUS_TO_PROTO = {
    DeliveryStatus.PENDING: trigger_pb2.Delivery.PENDING,
    DeliveryStatus.SUCCEEDED: trigger_pb2.Delivery.SUCCEEDED,
    DeliveryStatus.FAILED: trigger_pb2.Delivery.FAILED,
    DeliveryStatus.DEAD: trigger_pb2.Delivery.DEAD,
}
_STATUS_FROM_PROTO = {v: k for k, v in _STATUS_TO_PROTO.items()}


def _condition_from_proto(message: trigger_pb2.TriggerCondition) -> Condition:
    threshold = None
    if message.HasField("threshold"):
        threshold = ThresholdCondition(
            name=message.threshold.name,
            direction=_DIRECTION_FROM_PROTO.get(message.threshold.direction, "?"),
        )
    return Condition(message.segment_id, threshold, message.form_id, message.filter)


def _action_from_proto(message: trigger_pb2.TriggerAction) -> Action | None:
    kind = message.WhichOneof("kind")
    if kind == "webhook":
        return Action(ActionKind.WEBHOOK, {"url": message.webhook.url})
    if kind == "slack":
        settings = {
            "webhook_url": message.slack.webhook_url,
            "template": message.slack.template,
            "link_template": message.slack.link_template,
        }
        return Action(ActionKind.SLACK, settings)
    if kind == "enrichment":
        return Action(ActionKind.ENRICHMENT, {"connector_id": message.enrichment.connector_id})
    return None


def from_proto(message: trigger_pb2.Trigger) -> TriggerInput:
    return TriggerInput(
        name=message.name,
        enabled=message.enabled,
        event_types=tuple(message.event_types),
        condition=_condition_from_proto(message.condition),
        action=_action_from_proto(message.action),
    )


def _action_to_proto(action: Action, secret: str) -> trigger_pb2.TriggerAction:
    found = action.settings
    if action.kind == ActionKind.WEBHOOK:
        webhook = trigger_pb2.WebhookAction(url=found["url"], secret=secret)
        return trigger_pb2.TriggerAction(webhook=webhook)
    if action.kind == ActionKind.SLACK:
        slack = trigger_pb2.SlackAction(
            webhook_url=found["webhook_url"],
            template=found.get("template", ""),
            link_template=found.get("link_template", ""),
        )
        return trigger_pb2.TriggerAction(slack=slack)
    enrichment = trigger_pb2.EnrichmentAction(connector_id=found.get("connector_id", ""))
    return trigger_pb2.TriggerAction(enrichment=enrichment)


def to_proto(trigger: Trigger) -> trigger_pb2.Trigger:
    condition = trigger.condition
    message = trigger_pb2.Trigger(
        id=trigger.id,
        name=trigger.name,
        enabled=trigger.enabled,
        event_types=trigger.event_types,
        condition=trigger_pb2.TriggerCondition(
            segment_id=condition.segment_id, form_id=condition.form_id, filter=condition.filter
        ),
        action=_action_to_proto(trigger.action, trigger.secret),
        disabled_reason=trigger.disabled_reason,
        created_at=timestamp(trigger.created_at),
        updated_at=timestamp(trigger.updated_at),
    )
    if condition.threshold is not None:
        message.condition.threshold.CopyFrom(
            trigger_pb2.ThresholdCondition(
                name=condition.threshold.name,
                direction=_DIRECTION_TO_PROTO[condition.threshold.direction],
            )
        )
    return message


def delivery_to_proto(delivery: Delivery) -> trigger_pb2.Delivery:
    return trigger_pb2.Delivery(
        id=delivery.id,
        trigger_id=delivery.trigger_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        status=_STATUS_TO_PROTO[delivery.status],
        attempts=delivery.attempts,
        last_http_status=delivery.last_http_status,
        last_error=delivery.last_error,
        next_attempt_at=(
            timestamp(delivery.next_attempt_at)
            if delivery.status in (DeliveryStatus.PENDING, DeliveryStatus.FAILED)
            else None
        ),
        last_attempt_at=timestamp(delivery.last_attempt_at),
        created_at=timestamp(delivery.created_at),
    )


class TriggerServicer(trigger_service_pb2_grpc.TriggerServiceServicer):
    def __init__(self, db: Database, cursors: CursorCodec, allow: AllowList) -> None:
        self.db, self.cursors, self.allow = db, cursors, allow

    async def CreateTrigger(
        self, request: trigger_service_pb2.CreateTriggerRequest, context: Context
    ) -> trigger_pb2.Trigger:
        trigger = await service.create_trigger(
            self.db, self.allow, workspace_id=workspace_id(), data=from_proto(request.trigger)
        )
        return to_proto(trigger)

    async def GetTrigger(
        self, request: trigger_service_pb2.GetTriggerRequest, context: Context
    ) -> trigger_pb2.Trigger:
        return to_proto(
            await service.get_trigger(self.db, workspace_id=workspace_id(), trigger_id=request.id)
        )

    async def UpdateTrigger(
        self, request: trigger_service_pb2.UpdateTriggerRequest, context: Context
    ) -> trigger_pb2.Trigger:
        paths, _ = update_paths(request.trigger, request.update_mask)
        trigger = await service.update_trigger(
            self.db,
            self.allow,
            workspace_id=workspace_id(),
            trigger_id=request.trigger.id,
            data=from_proto(request.trigger),
            paths=paths,
        )
        return to_proto(trigger)

    async def DeleteTrigger(
        self, request: trigger_service_pb2.DeleteTriggerRequest, context: Context
    ) -> empty_pb2.Empty:
        await service.delete_trigger(self.db, workspace_id=workspace_id(), trigger_id=request.id)
        return empty_pb2.Empty()

    async def ListTriggers(
        self, request: trigger_service_pb2.ListTriggersRequest, context: Context
    ) -> trigger_service_pb2.ListTriggersResponse:
        page = await service.list_triggers(
            self.db,
            self.cursors,
            workspace_id=workspace_id(),
            limit=request.limit,
            cursor=request.cursor,
        )
        return trigger_service_pb2.ListTriggersResponse(
            triggers=[to_proto(t) for t in page.triggers], next_cursor=page.next_cursor
        )

    async def RotateTriggerSecret(
        self, request: trigger_service_pb2.RotateTriggerSecretRequest, context: Context
    ) -> trigger_pb2.Trigger:
        trigger = await service.rotate_secret(
            self.db,
            workspace_id=workspace_id(),
            trigger_id=request.id,
            overlap_seconds=request.overlap_seconds,
        )
        return to_proto(trigger)

    async def TestTrigger(
        self, request: trigger_service_pb2.TestTriggerRequest, context: Context
    ) -> trigger_pb2.Delivery:
        delivery = await service.test_trigger(
            self.db,
            workspace_id=workspace_id(),
            trigger_id=request.id,
            event_type=request.event_type,
        )
        return delivery_to_proto(delivery)

    async def ListTriggerDeliveries(
        self, request: trigger_service_pb2.ListTriggerDeliveriesRequest, context: Context
    ) -> trigger_service_pb2.ListTriggerDeliveriesResponse:
        page = await service.list_deliveries(
            self.db,
            self.cursors,
            workspace_id=workspace_id(),
            trigger_id=request.id,
            status=_STATUS_FROM_PROTO.get(request.status),
            limit=request.limit,
            cursor=request.cursor,
        )
        return trigger_service_pb2.ListTriggerDeliveriesResponse(
            deliveries=[delivery_to_proto(d) for d in page.deliveries],
            next_cursor=page.next_cursor,
        )

    async def RedeliverTriggerDelivery(
        self, request: trigger_service_pb2.RedeliverTriggerDeliveryRequest, context: Context
    ) -> trigger_pb2.Delivery:
        delivery = await service.redeliver(
            self.db,
            workspace_id=workspace_id(),
            trigger_id=request.id,
            delivery_id=request.delivery_id,
        )
        return delivery_to_proto(delivery)

    async def ReplayTriggerEvents(
        self, request: trigger_service_pb2.ReplayTriggerEventsRequest, context: Context
    ) -> trigger_service_pb2.ReplayTriggerEventsResponse:
        queued = await service.replay(
            self.db,
            workspace_id=workspace_id(),
            trigger_id=request.id,
            after=optional_datetime(request, "after"),
            before=optional_datetime(request, "before"),
        )
        return trigger_service_pb2.ReplayTriggerEventsResponse(deliveries_queued=queued)
