"""The triggers domain's shapes: a trigger (event types, condition, action) and a delivery."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class ActionKind(StrEnum):
    """As stored in triggers.action_kind."""

    WEBHOOK = "webhook"
    SLACK = "slack"
    ENRICHMENT = "enrichment"


class DeliveryStatus(StrEnum):
    """As stored in deliveries.status."""

    PENDING = "pending"  # not attempted yet, or queued again
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the last attempt failed; another is due at next_attempt_at
    DEAD = "dead"  # given up


WAITING = (DeliveryStatus.PENDING, DeliveryStatus.FAILED)


@dataclass(frozen=True)
class ThresholdCondition:
    name: str
    direction: str = ""  # "up", "down" or "" (either)


@dataclass(frozen=True)
class Condition:
    segment_id: str = ""
    threshold: ThresholdCondition | None = None
    form_id: str = ""
    filter: str = ""

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.segment_id:
            found["segment_id"] = self.segment_id
        if self.threshold:
            found["threshold"] = {
                "name": self.threshold.name,
                "direction": self.threshold.direction,
            }
        if self.form_id:
            found["form_id"] = self.form_id
        if self.filter:
            found["filter"] = self.filter
        return found

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Condition:
        threshold = data.get("threshold")
        return cls(
            segment_id=data.get("segment_id", ""),
            threshold=ThresholdCondition(**threshold) if threshold else None,
            form_id=data.get("form_id", ""),
            filter=data.get("filter", ""),
        )


@dataclass(frozen=True)
class Action:
    """One of the kinds; `settings` holds its fields as stored (never a secret):
    webhook {url}, slack {webhook_url, template, link_template}, enrichment {connector_id}."""

    kind: ActionKind
    settings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TriggerInput:
    name: str = ""
    enabled: bool = True
    event_types: tuple[str, ...] = ()
    condition: Condition = Condition()
    action: Action | None = None


@dataclass(frozen=True)
class Trigger:
    id: str
    name: str
    enabled: bool
    event_types: list[str]
    condition: Condition
    action: Action
    disabled_reason: str
    created_at: datetime
    updated_at: datetime
    secret: str = ""  # only in the reply that made it (create, rotate)


@dataclass(frozen=True)
class Delivery:
    id: str
    trigger_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_http_status: int
    last_error: str
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    created_at: datetime
