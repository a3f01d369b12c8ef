"""SQL for the events outbox."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from server.db.engine import AnyRow
from server.db.tables import events as events_table
from server.events.catalogue import NewEvent


async def insert_events(
    conn: AsyncConnection, *, workspace_id: str, events: Sequence[NewEvent]
) -> None:
    rows = [
        {
            "workspace_id": workspace_id,
            "type": str(event.type),
            "subject_id": event.subject_id,
            "payload": event.payload,
        }
        for event in events
    ]
    await conn.execute(insert(events_table), rows)


async def events_after(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    after: tuple[int, int],
    types: Sequence[str],
    subject_id: str,
    limit: int,
) -> list[AnyRow]:
    """Events in commit-visibility order after a position (txid, id), only from transactions
    older than every transaction still running: a late commit can't land behind a cursor."""
    sql = (
        "SELECT id, txid::text::bigint AS txid, type, subject_id, payload, created_at FROM events "
        "WHERE workspace_id = :ws AND txid < pg_snapshot_xmin(pg_current_snapshot()) "
        "AND (txid, id) > (CAST(CAST(:txid AS text) AS xid8), :id)"
    )
    params: dict[str, Any] = {"ws": workspace_id, "txid": after[0], "id": after[1], "limit": limit}
    if types:
        sql += " AND type = ANY(:types)"
        params["types"] = list(types)
    if subject_id:
        sql += " AND subject_id = :subject"
        params["subject"] = subject_id
    sql += " ORDER BY txid, id LIMIT :limit"
    return list((await conn.execute(text(sql), params)).all())
