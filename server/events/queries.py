"""SQL for the events outbox."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from server.db.engine import AnyRow
from server.db.tables import events as events_table
from server.events.catalogue import EventType, NewEvent

# The events that name a segment in their payload rather than as their subject.
SEGMENT_MEMBERSHIP_TYPES = [str(EventType.SEGMENT_LEAD_ENTERED), str(EventType.SEGMENT_LEAD_EXITED)]
# A segment's own events: the segment is their subject.
SEGMENT_OWN_TYPES = [
    str(EventType.SEGMENT_CREATED),
    str(EventType.SEGMENT_UPDATED),
    str(EventType.SEGMENT_DELETED),
]


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
    segment_id: str = "",
    limit: int,
) -> list[AnyRow]:
    """Events in commit-visibility order after a position (txid, id), only from transactions
    older than every transaction still running: a late commit can't land behind a cursor.
    `segment_id`: the segment's entries and exits (named in their payload) and its own
    events (the segment as subject)."""
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
    if segment_id:
        sql += (
            " AND ((type = ANY(:membership_types) AND payload->>'segment_id' = :segment)"
            " OR subject_id = :segment)"
        )
        params["segment"] = segment_id
        params["membership_types"] = SEGMENT_MEMBERSHIP_TYPES
    sql += " ORDER BY txid, id LIMIT :limit"
    return list((await conn.execute(text(sql), params)).all())


async def segment_has_events(conn: AsyncConnection, *, workspace_id: str, segment_id: str) -> bool:
    """Whether the workspace wrote a segment's own events (every segment is created with
    `segment.created`; a deleted one keeps them); index events_subject_position."""
    sql = (
        "SELECT EXISTS (SELECT 1 FROM events WHERE subject_id = :segment "
        "AND workspace_id = :ws AND type = ANY(:own_types))"
    )
    params = {"segment": segment_id, "ws": workspace_id, "own_types": SEGMENT_OWN_TYPES}
    return bool((await conn.execute(text(sql), params)).scalar())
