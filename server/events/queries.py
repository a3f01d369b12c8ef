"""SQL for the events outbox."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from server.db.engine import AnyRow
from server.db.tables import events


async def insert_event(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    event_type: str,
    subject_id: str,
    payload: dict[str, Any],
) -> None:
    await conn.execute(
        insert(events).values(
            workspace_id=workspace_id, type=event_type, subject_id=subject_id, payload=payload
        )
    )


async def insert_events(
    conn: AsyncConnection, *, workspace_id: str, items: list[tuple[str, str, dict[str, Any]]]
) -> None:
    rows = [
        {"workspace_id": workspace_id, "type": kind, "subject_id": subject, "payload": payload}
        for kind, subject, payload in items
    ]
    await conn.execute(insert(events).values(rows))


async def events_after(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    after: tuple[int, int],
    types: Sequence[str],
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
    sql += " ORDER BY txid, id LIMIT :limit"
    return list((await conn.execute(text(sql), params)).all())
