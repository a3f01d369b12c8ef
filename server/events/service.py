"""The events outbox: every change other modules care about writes an event row in the
same transaction as the change, so an event exists exactly when its change committed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from server.db.engine import Database
from server.errors import FieldViolation, InvalidArgument, NotFound, Unauthenticated
from server.events import queries
from server.events.catalogue import NewEvent, event_id
from server.events.settings import WatchSettings
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
class Heartbeat:
    """What a watch sends when it has been quiet for a while: not a catalogued event (no id,
    no subject, no payload); its cursor is the position the watch has read up to."""

    cursor: str


HEARTBEAT_TYPE = "heartbeat"


@dataclass(frozen=True)
class EventPage:
    events: list[Event]
    next_cursor: str


CURSOR_QUERY = "events"  # positions are global, so a cursor survives a change of `types`
MAX_TYPES = 50
MAX_SUBJECT = 100

Position = tuple[int, int]
# Whether the caller's credentials still hold; a watch asks it every few seconds.
StillAuthorized = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class _Filter:
    """A checked request: which events of which workspace."""

    workspace_id: str
    types: list[str]
    subject_id: str
    segment_id: str


def _position(codec: CursorCodec, workspace_id: str, cursor: str) -> Position:
    keyset = Keyset(codec, workspace_id, CURSOR_QUERY, field="after")
    position = keyset.position(cursor, int, int)
    return (0, 0) if position is None else (position[0], position[1])


def _encode(codec: CursorCodec, workspace_id: str, position: Position) -> str:
    return codec.encode(workspace_id=workspace_id, query=CURSOR_QUERY, position=list(position))


def _id_field(name: str, value: str) -> str:
    value = value.strip()
    if len(value) > MAX_SUBJECT or "\x00" in value:
        raise InvalidArgument.on(
            name, f"an id of at most {MAX_SUBJECT} characters", reason="EVENTS_INVALID"
        )
    return value


async def _checked(
    db: Database,
    *,
    workspace_id: str,
    types: Sequence[str],
    subject_id: str,
    segment_id: str,
) -> _Filter:
    if len(types) > MAX_TYPES:
        raise InvalidArgument.on("types", f"at most {MAX_TYPES} types", reason="EVENTS_INVALID")
    checked = _Filter(
        workspace_id=workspace_id,
        types=list(types),
        subject_id=_id_field("subject_id", subject_id),
        segment_id=_id_field("segment_id", segment_id),
    )
    if checked.segment_id:
        await _require_known_segment(db, workspace_id=workspace_id, segment_id=checked.segment_id)
    return checked


async def _require_known_segment(db: Database, *, workspace_id: str, segment_id: str) -> None:
    """A segment this workspace created (live or deleted: its history stays readable), as
    its own events show; else NotFound, as for any other workspace's id."""
    async with db.read() as conn:
        known = await queries.segment_has_events(
            conn, workspace_id=workspace_id, segment_id=segment_id
        )
    if not known:
        error = NotFound.resource("segment", segment_id)
        error.violations.append(FieldViolation("segment_id", "unknown segment"))
        raise error


async def _read(
    db: Database, codec: CursorCodec, query: _Filter, after: Position, limit: int
) -> tuple[list[Event], Position]:
    """Up to `limit` events after a position, and the position after the last of them."""
    async with db.transaction() as conn:
        rows = await queries.events_after(
            conn,
            workspace_id=query.workspace_id,
            after=after,
            types=query.types,
            subject_id=query.subject_id,
            segment_id=query.segment_id,
            limit=limit,
        )
    found = []
    position = after
    for row in rows:
        position = (row.txid, row.id)
        found.append(
            Event(
                id=event_id(row.id),
                cursor=_encode(codec, query.workspace_id, position),
                type=row.type,
                subject_id=row.subject_id,
                payload=row.payload,
                created_at=row.created_at,
            )
        )
    return found, position


async def list_events(
    db: Database,
    codec: CursorCodec,
    *,
    workspace_id: str,
    after: str,
    types: Sequence[str],
    subject_id: str = "",
    segment_id: str = "",
    limit: int,
) -> EventPage:
    size = page_size(limit)
    position = _position(codec, workspace_id, after)
    query = await _checked(
        db, workspace_id=workspace_id, types=types, subject_id=subject_id, segment_id=segment_id
    )
    found, position = await _read(db, codec, query, position, size)
    return EventPage(events=found, next_cursor=_encode(codec, workspace_id, position))


async def watch_events(
    db: Database,
    codec: CursorCodec,
    *,
    workspace_id: str,
    after: str,
    types: Sequence[str],
    subject_id: str = "",
    segment_id: str = "",
    still_authorized: StillAuthorized | None = None,
    settings: WatchSettings | None = None,
    poll_seconds: float = WATCH_POLL_SECONDS,
) -> AsyncIterator[Event | Heartbeat]:
    """Every event after the cursor, then each new one as it becomes visible, until the
    caller stops listening. Resuming from any delivered event's or heartbeat's cursor
    repeats nothing and misses nothing.

    When nothing was sent for `settings.heartbeat_seconds` a `Heartbeat` goes out. Every
    `settings.key_check_seconds` the watch asks `still_authorized`; once it says no, the
    watch ends with Unauthenticated (a revoked key stops its open streams)."""
    settings = settings or WatchSettings()
    position = _position(codec, workspace_id, after)
    query = await _checked(
        db, workspace_id=workspace_id, types=types, subject_id=subject_id, segment_id=segment_id
    )
    last_sent = last_checked = time.monotonic()
    while True:
        if still_authorized is not None and (
            time.monotonic() - last_checked >= settings.key_check_seconds
        ):
            if not await still_authorized():
                raise Unauthenticated(
                    "the API key was revoked (or its workspace removed) while the watch was open",
                    reason="API_KEY_REVOKED",
                )
            last_checked = time.monotonic()
        found, position = await _read(db, codec, query, position, WATCH_BATCH)
        for event in found:
            yield event
        if found:
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent >= settings.heartbeat_seconds:
            yield Heartbeat(cursor=_encode(codec, workspace_id, position))
            last_sent = time.monotonic()
        if len(found) < WATCH_BATCH:
            await asyncio.sleep(poll_seconds)
