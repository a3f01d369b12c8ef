"""Triggers: CRUD, webhook secrets, test events, the delivery log, redelivery and replay.
Sending is the worker's (server/triggers/sender.py); this module only queues."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from server import ids
from server.db.engine import AnyRow, Database
from server.errors import InvalidArgument, NotFound
from server.outbound import AllowList
from server.pagination import CursorCodec, Keyset, fingerprint, page_size
from server.triggers import fanout, queries, signing, validation
from server.triggers.model import (
    Action,
    ActionKind,
    Condition,
    Delivery,
    DeliveryStatus,
    Trigger,
    TriggerInput,
)

UPDATABLE = ("name", "enabled", "event_types", "condition", "action")
DEFAULT_OVERLAP = timedelta(days=1)
MAX_OVERLAP = timedelta(days=7)
MAX_REPLAY = 100_000


@dataclass(frozen=True)
class TriggerPage:
    triggers: list[Trigger]
    next_cursor: str


@dataclass(frozen=True)
class DeliveryPage:
    deliveries: list[Delivery]
    next_cursor: str


def _to_trigger(row: AnyRow, secret: str = "") -> Trigger:
    return Trigger(
        id=row.id,
        name=row.name,
        enabled=row.enabled,
        event_types=list(row.event_types),
        condition=Condition.from_json(row.condition),
        action=Action(ActionKind(row.action_kind), dict(row.action)),
        disabled_reason=row.disabled_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        secret=secret,
    )


def _to_delivery(row: AnyRow) -> Delivery:
    values = row._mapping
    return Delivery(
        **{name: values[name] for name in Delivery.__dataclass_fields__ if name != "status"},
        status=DeliveryStatus(row.status),
    )


def _stored(data: TriggerInput) -> dict[str, Any]:
    assert data.action is not None  # validated
    return {
        "name": data.name,
        "enabled": data.enabled,
        "event_types": list(data.event_types),
        "condition": data.condition.to_json(),
        "action_kind": str(data.action.kind),
        "action": data.action.settings,
    }


async def create_trigger(
    db: Database, allow: AllowList, *, workspace_id: str, data: TriggerInput
) -> Trigger:
    async with db.transaction() as conn:
        clean = await validation.trigger(conn, workspace_id, data, allow)
        secret = signing.new_secret() if clean.action and clean.action.kind == "webhook" else ""
        row = await queries.insert_trigger(
            conn,
            values={
                "id": ids.new_id("trg"),
                "workspace_id": workspace_id,
                **_stored(clean),
                "secrets": [{"secret": secret, "until": None}] if secret else [],
            },
        )
        await queries.start_cursor(conn, workspace_id=workspace_id)
    return _to_trigger(row, secret)


async def _require(conn: Any, workspace_id: str, trigger_id: str, *, lock: bool = False) -> AnyRow:
    row = await queries.get_trigger(
        conn, workspace_id=workspace_id, trigger_id=trigger_id, lock=lock
    )
    if row is None:
        raise NotFound.resource("trigger", trigger_id)
    return row


async def get_trigger(db: Database, *, workspace_id: str, trigger_id: str) -> Trigger:
    async with db.read() as conn:
        return _to_trigger(await _require(conn, workspace_id, trigger_id))


async def update_trigger(
    db: Database,
    allow: AllowList,
    *,
    workspace_id: str,
    trigger_id: str,
    data: TriggerInput,
    paths: Sequence[str],
) -> Trigger:
    unknown = [p for p in paths if p not in UPDATABLE]
    if unknown:
        raise InvalidArgument.on(
            "update_mask", f"cannot update {unknown[0]!r}; updatable: {', '.join(UPDATABLE)}"
        )
    async with db.transaction() as conn:
        current = _to_trigger(await _require(conn, workspace_id, trigger_id, lock=True))
        merged = TriggerInput(
            name=data.name if "name" in paths else current.name,
            enabled=data.enabled if "enabled" in paths else current.enabled,
            event_types=tuple(data.event_types if "event_types" in paths else current.event_types),
            condition=data.condition if "condition" in paths else current.condition,
            action=data.action if "action" in paths else current.action,
        )
        clean = await validation.trigger(conn, workspace_id, merged, allow)
        values = _stored(clean)
        if clean.enabled:
            values["disabled_reason"] = ""
        assert clean.action is not None
        secret = ""
        if clean.action.kind == ActionKind.WEBHOOK and current.action.kind != ActionKind.WEBHOOK:
            secret = signing.new_secret()  # became a webhook: it needs a key of its own
            values["secrets"] = [{"secret": secret, "until": None}]
        row = await queries.update_trigger(
            conn, workspace_id=workspace_id, trigger_id=trigger_id, values=values
        )
    return _to_trigger(row, secret)


async def delete_trigger(db: Database, *, workspace_id: str, trigger_id: str) -> None:
    async with db.transaction() as conn:
        if not await queries.delete_trigger(conn, workspace_id=workspace_id, trigger_id=trigger_id):
            raise NotFound.resource("trigger", trigger_id)


async def list_triggers(
    db: Database, codec: CursorCodec, *, workspace_id: str, limit: int, cursor: str
) -> TriggerPage:
    size = page_size(limit)
    keyset = Keyset(codec, workspace_id, fingerprint("triggers"))
    async with db.read() as conn:
        rows = await queries.list_triggers(
            conn, workspace_id=workspace_id, after_id=keyset.after_id(cursor), limit=size
        )
    rows, next_cursor = keyset.page(rows, size, lambda r: [r.id])
    return TriggerPage([_to_trigger(r) for r in rows], next_cursor)


def active_secrets(stored: Sequence[dict[str, Any]], at: datetime) -> list[str]:
    """The secrets that sign at `at`: the current one, and old ones inside their overlap."""
    return [
        s["secret"] for s in stored if s["until"] is None or datetime.fromisoformat(s["until"]) > at
    ]


async def rotate_secret(
    db: Database, *, workspace_id: str, trigger_id: str, overlap_seconds: int
) -> Trigger:
    overlap = timedelta(seconds=overlap_seconds) if overlap_seconds else DEFAULT_OVERLAP
    if overlap_seconds < 0 or overlap > MAX_OVERLAP:
        raise InvalidArgument.on("overlap_seconds", "0 to 604800 seconds (7 days)")
    async with db.transaction() as conn:
        row = await _require(conn, workspace_id, trigger_id, lock=True)
        if row.action_kind != ActionKind.WEBHOOK:
            raise InvalidArgument.on("id", "only a webhook trigger has a secret")
        now = datetime.now(UTC)
        until = (now + overlap).isoformat()
        kept = [
            {"secret": s, "until": until}
            for s in active_secrets(await queries.secrets(conn, trigger_id=trigger_id), now)
        ]
        secret = signing.new_secret()
        await queries.set_secrets(
            conn, trigger_id=trigger_id, values=[{"secret": secret, "until": None}, *kept[:4]]
        )
        row = await _require(conn, workspace_id, trigger_id)
    return _to_trigger(row, secret)


def _sample_lead(now: datetime) -> dict[str, Any]:
    moment = fanout.timestamp(now)
    return {
        "id": "lead_test",
        "email": "jane.doe@example.com",
        "first_name": "Jane",
        "last_name": "Doe",
        "company": "Example Inc.",
        "score": 62,
        "created_at": moment,
        "updated_at": moment,
    }


async def test_trigger(
    db: Database, *, workspace_id: str, trigger_id: str, event_type: str
) -> Delivery:
    async with db.transaction() as conn:
        trigger = _to_trigger(await _require(conn, workspace_id, trigger_id))
        chosen = event_type.strip() or trigger.event_types[0]
        if chosen not in trigger.event_types:
            raise InvalidArgument.on("event_type", "one of the trigger's event types")
        now = datetime.now(UTC)
        delivery_id = ids.new_id("dlv")
        payload = {"test": True}
        body = fanout.body(chosen, now, "lead_test", payload, _sample_lead(now))
        row = {
            "id": delivery_id,
            "workspace_id": workspace_id,
            "trigger_id": trigger_id,
            "event_id": "evt_test_" + delivery_id.removeprefix("dlv_"),
            "event_type": chosen,
            "lead_id": None,
            "body": body,
            "status": DeliveryStatus.PENDING,
            "next_attempt_at": now,
        }
        await queries.insert_deliveries(conn, [row])
        found = await queries.get_delivery(
            conn, workspace_id=workspace_id, trigger_id=trigger_id, delivery_id=delivery_id
        )
    assert found is not None
    return _to_delivery(found)


async def list_deliveries(
    db: Database,
    codec: CursorCodec,
    *,
    workspace_id: str,
    trigger_id: str,
    status: DeliveryStatus | None,
    limit: int,
    cursor: str,
) -> DeliveryPage:
    size = page_size(limit)
    keyset = Keyset(codec, workspace_id, fingerprint("deliveries", trigger_id, status or ""))
    async with db.read() as conn:
        await _require(conn, workspace_id, trigger_id)
        rows = await queries.list_deliveries(
            conn,
            workspace_id=workspace_id,
            trigger_id=trigger_id,
            status=status,
            before_id=keyset.after_id(cursor),
            limit=size,
        )
    rows, next_cursor = keyset.page(rows, size, lambda r: [r.id])
    return DeliveryPage([_to_delivery(r) for r in rows], next_cursor)


async def redeliver(
    db: Database, *, workspace_id: str, trigger_id: str, delivery_id: str
) -> Delivery:
    async with db.transaction() as conn:
        found = await queries.get_delivery(
            conn, workspace_id=workspace_id, trigger_id=trigger_id, delivery_id=delivery_id
        )
        if found is None:
            raise NotFound.resource("delivery", delivery_id)
        return _to_delivery(await queries.requeue(conn, delivery_id=delivery_id))


async def replay(
    db: Database,
    *,
    workspace_id: str,
    trigger_id: str,
    after: datetime | None,
    before: datetime | None,
) -> int:
    """New deliveries for the window's events that the trigger matches as configured now."""
    if after is None:
        raise InvalidArgument.on("after", "required: the start of the window")
    before = before or datetime.now(UTC)
    if before <= after:
        raise InvalidArgument.on("before", "must be later than after")
    async with db.transaction() as conn:
        row = await _require(conn, workspace_id, trigger_id)
        target = fanout.Target(
            row.id, frozenset(row.event_types), Condition.from_json(row.condition), row.created_at
        )
        events = await queries.events_between(
            conn,
            workspace_id=workspace_id,
            types=row.event_types,
            after=after,
            before=before,
            limit=MAX_REPLAY,
        )
        matches = fanout.candidates(events, [target], since_creation=False)
        rows = await fanout.delivery_rows(conn, workspace_id, matches)
        await queries.insert_deliveries(conn, rows)
    return len(rows)
