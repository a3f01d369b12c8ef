"""The events outbox: every change other modules care about writes an event row in the
same transaction as the change, so an event exists exactly when its change committed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from server.db.engine import Database
from server.errors import InvalidArgument
from server.events import queries
from server.events.catalogue import NewEvent, event_id
from server.pagination import CursorCodec, Keyset, page_size

WATCH_POLL_SECONDS = 0.2
WATCH_BATCH = 500


async def record(conn: AsyncConnection, *, workspace_id: str, events: Sequence[NewEvent]) -> None:
    """Write events (catalogue.new) in the caller's transaction, in one statement."""
    if events:
        await queries.insert_events(conn, workspace_id=workspace_id, events=events)


@dataclass(frozen=True)
class Event:
    id: str  # evt_…, the same on every read: consumers de-duplicate by it
    cursor: str
    type: str
    subject_id: str
    payload: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class EventPage:
    events: list[Event]
    next_cursor: str


CURSOR_QUERY = "events"  # positions are global, so a cursor survives a change of `types`
MAX_TYPES = 50
MAX_SUBJECT = 100


def _position(codec: CursorCodec, workspace_id: str, cursor: str) -> tuple[int, int]:
    keyset = Keyset(codec, workspace_id, CURSOR_QUERY, field="after")
    position = keyset.position(cursor, int, int)
    return (0, 0) if position is None else (position[0], position[1])


def _subject(subject_id: str) -> str:
    subject = subject_id.strip()
    if len(subject) > MAX_SUBJECT or "\x00" in subject:
        raise InvalidArgument.on(
            "subject_id", f"an id of at most {MAX_SUBJECT} characters", reason="EVENTS_INVALID"
        )
    return subject


async def list_events(
    db: Database,
    codec: CursorCodec,
    *,
    workspace_id: str,
    after: str,
    types: Sequence[str],
    subject_id: str = "",
    limit: int,
) -> EventPage:
    size = page_size(limit)
    if len(types) > MAX_TYPES:
        raise InvalidArgument.on("types", f"at most {MAX_TYPES} types", reason="EVENTS_INVALID")
    subject_id = _subject(subject_id)
    position = _position(codec, workspace_id, after)
    async with db.transaction() as conn:
        rows = await queries.events_after(
            conn,
            workspace_id=workspace_id,
            after=position,
            types=types,
            subject_id=subject_id,
            limit=size,
        )
    found = []
    for row in rows:
        position = (row.txid, row.id)
        found.append(
            Event(
                id=event_id(row.id),
                cursor=codec.encode(
                    workspace_id=workspace_id, query=CURSOR_QUERY, position=list(position)
                ),
                type=row.type,
                subject_id=row.subject_id,
                payload=row.payload,
                created_at=row.created_at,
            )
        )
    next_cursor = codec.encode(
        workspace_id=workspace_id, query=CURSOR_QUERY, position=list(position)
    )
    return EventPage(events=found, next_cursor=next_cursor)


async def watch_events(
    db: Database,
    codec: CursorCodec,
    *,
    workspace_id: str,
    after: str,
    types: Sequence[str],
    subject_id: str = "",
    poll_seconds: float = WATCH_POLL_SECONDS,
) -> AsyncIterator[Event]:
    """Every event after the cursor, then each new one as it becomes visible, until the
    caller stops listening. Resuming from any delivered event's cursor repeats nothing."""
    cursor = after
    while True:
        page = await list_events(
            db,
            codec,
            workspace_id=workspace_id,
            after=cursor,
            types=types,
            subject_id=subject_id,
            limit=WATCH_BATCH,
        )
        for event in page.events:
            yield event
        cursor = page.next_cursor
        if len(page.events) < WATCH_BATCH:
            await asyncio.sleep(poll_seconds)
