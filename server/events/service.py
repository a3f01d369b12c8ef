"""The events outbox: every change other modules care about writes an event row in the
same transaction as the change, so an event exists exactly when its change committed."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from server.events import queries


async def record(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    event_type: str,
    subject_id: str,
    payload: dict[str, Any] | None = None,
) -> None:
    await queries.insert_event(
        conn,
        workspace_id=workspace_id,
        event_type=event_type,
        subject_id=subject_id,
        payload=payload or {},
    )
