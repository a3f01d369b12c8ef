"""SQL for the events outbox."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

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
