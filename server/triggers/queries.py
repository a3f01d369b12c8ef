"""SQL for triggers and their deliveries (the API's side; fan-out and sending have theirs)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server.db.engine import AnyRow
from server.db.tables import deliveries, triggers

TRIGGER_COLUMNS = [c for c in triggers.c if c.name != "secrets"]
DELIVERY_COLUMNS = [c for c in deliveries.c if c.name not in ("body", "workspace_id", "lead_id")]


async def insert_trigger(conn: AsyncConnection, *, values: dict[str, Any]) -> AnyRow:
    statement = insert(triggers).values(**values).returning(*TRIGGER_COLUMNS)
    return (await conn.execute(statement)).one()


# A workspace's first trigger starts its fan-out at the newest event: a trigger acts on
# what happens after it exists, never on history (ReplayTriggerEvents is for that).
_START_CURSOR = text(
    """
    INSERT INTO trigger_cursors (workspace_id, txid, event_row)
    SELECT :ws, coalesce(max(txid), '0'::xid8), coalesce(max(id), 0)
    FROM (SELECT txid, id FROM events WHERE workspace_id = :ws
          ORDER BY txid DESC, id DESC LIMIT 1) AS newest
    ON CONFLICT (workspace_id) DO NOTHING
    """
)


async def start_cursor(conn: AsyncConnection, *, workspace_id: str) -> None:
    await conn.execute(_START_CURSOR, {"ws": workspace_id})


def _scoped(workspace_id: str, trigger_id: str) -> Any:
    return (triggers.c.workspace_id == workspace_id) & (triggers.c.id == trigger_id)


async def get_trigger(
    conn: AsyncConnection, *, workspace_id: str, trigger_id: str, lock: bool = False
) -> AnyRow | None:
    query = select(*TRIGGER_COLUMNS).where(_scoped(workspace_id, trigger_id))
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def update_trigger(
    conn: AsyncConnection, *, workspace_id: str, trigger_id: str, values: dict[str, Any]
) -> AnyRow:
    statement = (
        update(triggers)
        .where(_scoped(workspace_id, trigger_id))
        .values(**values, updated_at=func.now())
        .returning(*TRIGGER_COLUMNS)
    )
    return (await conn.execute(statement)).one()


async def delete_trigger(conn: AsyncConnection, *, workspace_id: str, trigger_id: str) -> bool:
    result = await conn.execute(delete(triggers).where(_scoped(workspace_id, trigger_id)))
    return result.rowcount > 0


async def list_triggers(
    conn: AsyncConnection, *, workspace_id: str, after_id: str | None, limit: int
) -> list[AnyRow]:
    query = select(*TRIGGER_COLUMNS).where(triggers.c.workspace_id == workspace_id)
    if after_id is not None:
        query = query.where(triggers.c.id > after_id)
    query = query.order_by(triggers.c.id).limit(limit + 1)
    return list((await conn.execute(query)).all())


async def secrets(conn: AsyncConnection, *, trigger_id: str) -> list[dict[str, Any]]:
    found = await conn.scalar(select(triggers.c.secrets).where(triggers.c.id == trigger_id))
    return list(found or [])


async def set_secrets(
    conn: AsyncConnection, *, trigger_id: str, values: list[dict[str, Any]]
) -> None:
    statement = (
        update(triggers)
        .where(triggers.c.id == trigger_id)
        .values(secrets=values, updated_at=func.now())
    )
    await conn.execute(statement)


async def insert_deliveries(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(deliveries), list(rows))


async def get_delivery(
    conn: AsyncConnection, *, workspace_id: str, trigger_id: str, delivery_id: str
) -> AnyRow | None:
    query = select(*DELIVERY_COLUMNS).where(
        deliveries.c.workspace_id == workspace_id,
        deliveries.c.trigger_id == trigger_id,
        deliveries.c.id == delivery_id,
    )
    return (await conn.execute(query)).first()


async def list_deliveries(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    trigger_id: str,
    status: str | None,
    before_id: str | None,
    limit: int,
) -> list[AnyRow]:
    """Newest first (ids sort by creation time)."""
    query = select(*DELIVERY_COLUMNS).where(
        deliveries.c.workspace_id == workspace_id, deliveries.c.trigger_id == trigger_id
    )
    if status is not None:
        query = query.where(deliveries.c.status == status)
    if before_id is not None:
        query = query.where(deliveries.c.id < before_id)
    query = query.order_by(deliveries.c.id.desc()).limit(limit + 1)
    return list((await conn.execute(query)).all())


async def requeue(conn: AsyncConnection, *, delivery_id: str) -> AnyRow:
    statement = (
        update(deliveries)
        .where(deliveries.c.id == delivery_id)
        .values(status="pending", next_attempt_at=func.now())
        .returning(*DELIVERY_COLUMNS)
    )
    return (await conn.execute(statement)).one()


async def events_between(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    types: Sequence[str],
    after: datetime,
    before: datetime,
    limit: int,
) -> list[AnyRow]:
    sql = text(
        "SELECT id, type, subject_id, payload, created_at FROM events "
        "WHERE workspace_id = :ws AND type = ANY(:types) "
        "AND created_at >= :after AND created_at < :before ORDER BY txid, id LIMIT :limit"
    )
    params = {"ws": workspace_id, "types": list(types), "after": after, "before": before}
    return list((await conn.execute(sql, {**params, "limit": limit})).all())


def as_json(value: dict[str, Any]) -> str:
    """JSON as it is stored and sent: compact, keys in the order given."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
