"""Segments: static lists kept by hand and rule lists kept current on every write."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from server import ids
from server.db import locks
from server.db.engine import AnyRow, Database
from server.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from server.events import catalogue
from server.events import service as events
from server.events.catalogue import EventType
from server.filtering.ast import Node
from server.pagination import CursorCodec, Keyset, fingerprint, page_size
from server.segments import membership, queries, rules
from server.segments.enums import Membership, State

log = logging.getLogger(__name__)

MEMBERSHIPS = tuple(Membership)
MAX_NAME = 200
MAX_MEMBER_IDS = 1000
# A rule segment of a workspace with fewer leads is built inside the create/update call,
# so it is READY when the call returns; larger ones build in the background.
SYNC_BUILD_LIMIT = 20_000
BUILD_BATCH = 5_000
# How often each server looks for rule segments left BUILDING by a process that stopped.
RESUME_SECONDS = 30.0
UPDATABLE = ("name", "description", "rules")
MANUAL = "manual"  # the cause of a membership change made through the members API


@dataclass(frozen=True)
class Segment:
    id: str
    name: str
    description: str
    membership: Membership
    rules: Node | None
    member_count: int
    state: State
    created_at: datetime
    updated_at: datetime


@dataclass
class SegmentInput:
    name: str = ""
    description: str = ""
    membership: Membership | None = None  # None: not given (refused on create)
    rules: Node | None = None


@dataclass(frozen=True)
class SegmentPage:
    segments: list[Segment]
    next_cursor: str


@dataclass(frozen=True)
class MemberChange:
    changed: list[str]
    unchanged: list[str]
    not_found: list[str]
    member_count: int


def _to_segment(row: AnyRow) -> Segment:
    return Segment(
        id=row.id,
        name=row.name,
        description=row.description,
        membership=Membership(row.membership),
        rules=rules.from_json(row.rules) if row.rules is not None else None,
        member_count=row.member_count,
        state=State(row.state),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _check_name(name: str) -> str:
    clean = name.strip()
    if not clean:
        raise InvalidArgument.on("segment.name", "is required", reason="SEGMENT_INVALID")
    if len(clean) > MAX_NAME:
        raise InvalidArgument.on(
            "segment.name", f"longer than {MAX_NAME} characters", reason="SEGMENT_INVALID"
        )
    return clean


class SegmentBuilder:
    """Populates rule segments in the background, one batch per transaction, so writes are
    never blocked for long; a segment is READY once every lead has been evaluated.

    Any server process may build any segment: a build holds an advisory lock on its segment
    (one builder at a time, whichever process scheduled it), and every process looks for
    segments left BUILDING every `RESUME_SECONDS` (at start-up too), so a build whose
    server stopped is carried on by another without waiting for a restart."""

    def __init__(self, db: Database, *, sync_limit: int = SYNC_BUILD_LIMIT) -> None:
        self.db = db
        self.sync_limit = sync_limit
        self._tasks: set[asyncio.Task[None]] = set()
        self._building: set[str] = set()  # segment ids this process is building now

    def schedule(self, *, workspace_id: str, segment_id: str) -> None:
        if segment_id in self._building:
            return
        self._building.add(segment_id)
        task = asyncio.get_running_loop().create_task(
            self.build(workspace_id=workspace_id, segment_id=segment_id)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._building.discard(segment_id))

    async def resume(self) -> None:
        async with self.db.transaction() as conn:
            pending = await queries.building_segments(conn)
        for row in pending:
            self.schedule(workspace_id=row.workspace_id, segment_id=row.id)

    async def resume_every(self, seconds: float = RESUME_SECONDS) -> None:
        """Runs until cancelled: pick up builds no process is carrying on."""
        while True:
            try:
                await self.resume()
            except Exception:  # the database may be away; the next round tries again
                log.warning("looking for unfinished segment builds failed", exc_info=True)
            await asyncio.sleep(seconds)

    async def wait(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def build(self, *, workspace_id: str, segment_id: str) -> None:
        try:
            async with locks.held(self.db, f"segment-build:{segment_id}") as mine:
                if mine:  # else another process builds it
                    await build_segment(self.db, workspace_id=workspace_id, segment_id=segment_id)
        except Exception:
            log.exception("building segment %s failed; another round will retry", segment_id)


async def build_segment(db: Database, *, workspace_id: str, segment_id: str) -> None:
    """Evaluate every lead of the workspace against one segment's rule, batch by batch."""
    after: str | None = None
    async with db.transaction() as conn:
        row = await queries.get_segment(conn, workspace_id=workspace_id, segment_id=segment_id)
    if row is None or row.state != State.BUILDING:
        return
    version = row.updated_at
    while True:
        async with db.transaction() as conn:
            current = await queries.get_segment(
                conn, workspace_id=workspace_id, segment_id=segment_id
            )
            if current is None or current.updated_at != version:
                return  # deleted, or the rule changed and a newer build took over
            batch = await queries.lead_ids_batch(
                conn, workspace_id=workspace_id, after_id=after, limit=BUILD_BATCH
            )
            await membership.refresh(
                conn,
                workspace_id=workspace_id,
                lead_ids=batch,
                cause="segment.built",
                only_segments=[segment_id],
            )
            if len(batch) < BUILD_BATCH:
                await queries.mark_ready(conn, segment_id=segment_id, version=version)
                return
            after = batch[-1]


async def _build_now(
    conn: AsyncConnection, *, workspace_id: str, segment_id: str, limit: int
) -> bool:
    """Build inside the caller's transaction when the workspace is small; True if done."""
    total = await queries.count_workspace_leads(conn, workspace_id=workspace_id, cap=limit)
    if total >= limit:
        return False
    batch = await queries.lead_ids_batch(
        conn, workspace_id=workspace_id, after_id=None, limit=limit
    )
    await membership.refresh(
        conn,
        workspace_id=workspace_id,
        lead_ids=batch,
        cause="segment.built",
        only_segments=[segment_id],
    )
    await queries.mark_ready(conn, segment_id=segment_id, version=None)
    return True


# -- commands -------------------------------------------------------------------------


async def create_segment(
    db: Database, builder: SegmentBuilder, *, workspace_id: str, data: SegmentInput
) -> Segment:
    name = _check_name(data.name)
    if data.membership not in MEMBERSHIPS:
        raise InvalidArgument.on(
            "segment.membership", "must be STATIC or RULE", reason="SEGMENT_INVALID"
        )
    if data.membership == Membership.RULE:
        if data.rules is None:
            raise InvalidArgument.on(
                "segment.rules", "a RULE segment needs rules", reason="SEGMENT_INVALID"
            )
        rules.validate(data.rules)
    elif data.rules is not None:
        raise InvalidArgument.on(
            "segment.rules", "a STATIC segment has no rules", reason="SEGMENT_INVALID"
        )
    segment_id = ids.new_id("seg")
    values = {
        "id": segment_id,
        "workspace_id": workspace_id,
        "name": name,
        "description": data.description.strip(),
        "membership": data.membership,
        "rules": rules.to_json(data.rules) if data.rules is not None else None,
        "state": State.BUILDING if data.membership == Membership.RULE else State.READY,
    }
    async with db.transaction() as conn:
        await queries.insert_segment(conn, values=values)
        created = catalogue.new(EventType.SEGMENT_CREATED, segment_id)
        await events.record(conn, workspace_id=workspace_id, events=[created])
        built = data.membership != Membership.RULE or await _build_now(
            conn, workspace_id=workspace_id, segment_id=segment_id, limit=builder.sync_limit
        )
        row = await queries.get_segment(conn, workspace_id=workspace_id, segment_id=segment_id)
    if not built:
        builder.schedule(workspace_id=workspace_id, segment_id=segment_id)
    assert row is not None
    return _to_segment(row)


async def get_segment(db: Database, *, workspace_id: str, segment_id: str) -> Segment:
    async with db.transaction() as conn:
        row = await require_segment(conn, workspace_id=workspace_id, segment_id=segment_id)
    return _to_segment(row)


async def update_segment(
    db: Database,
    builder: SegmentBuilder,
    *,
    workspace_id: str,
    segment_id: str,
    data: SegmentInput,
    paths: Sequence[str],
) -> Segment:
    unknown = [p for p in paths if p not in UPDATABLE]
    if unknown:
        raise InvalidArgument.on(
            "update_mask",
            f"unknown or read-only field path {unknown[0]!r}",
            reason="UPDATE_MASK_INVALID",
        )
    values: dict[str, object] = {}
    if "name" in paths:
        values["name"] = _check_name(data.name)
    if "description" in paths:
        values["description"] = data.description.strip()
    async with db.transaction() as conn:
        row = await queries.get_segment(
            conn, workspace_id=workspace_id, segment_id=segment_id, lock=True
        )
        if row is None:
            raise NotFound.resource("segment", segment_id)
        rebuild = "rules" in paths
        if rebuild:
            if row.membership != Membership.RULE:
                raise InvalidArgument.on(
                    "segment.rules", "a STATIC segment has no rules", reason="SEGMENT_INVALID"
                )
            if data.rules is None:
                raise InvalidArgument.on(
                    "segment.rules", "a RULE segment needs rules", reason="SEGMENT_INVALID"
                )
            rules.validate(data.rules)
            values.update(rules=rules.to_json(data.rules), state=State.BUILDING)
        if not values:
            return _to_segment(row)
        await queries.update_segment(
            conn, workspace_id=workspace_id, segment_id=segment_id, values=values
        )
        updated_event = catalogue.new(
            EventType.SEGMENT_UPDATED, segment_id, {"fields": sorted(paths)}
        )
        await events.record(conn, workspace_id=workspace_id, events=[updated_event])
        built = not rebuild or await _build_now(
            conn, workspace_id=workspace_id, segment_id=segment_id, limit=builder.sync_limit
        )
        updated = await queries.get_segment(conn, workspace_id=workspace_id, segment_id=segment_id)
    if not built:
        builder.schedule(workspace_id=workspace_id, segment_id=segment_id)
    assert updated is not None
    return _to_segment(updated)


async def delete_segment(db: Database, *, workspace_id: str, segment_id: str) -> None:
    async with db.transaction() as conn:
        if not await queries.delete_segment(conn, workspace_id=workspace_id, segment_id=segment_id):
            raise NotFound.resource("segment", segment_id)
        deleted = catalogue.new(EventType.SEGMENT_DELETED, segment_id)
        await events.record(conn, workspace_id=workspace_id, events=[deleted])


async def list_segments(
    db: Database, codec: CursorCodec, *, workspace_id: str, limit: int, cursor: str
) -> SegmentPage:
    size = page_size(limit)
    keyset = Keyset(codec, workspace_id, fingerprint("segments"))
    after = keyset.after_id(cursor)
    async with db.transaction() as conn:
        rows = await queries.list_segments(
            conn, workspace_id=workspace_id, after_id=after, limit=size
        )
    rows, next_cursor = keyset.page(rows, size, lambda r: [r.id])
    return SegmentPage(segments=[_to_segment(r) for r in rows], next_cursor=next_cursor)


def _member_ids(lead_ids: Sequence[str]) -> list[str]:
    unique = list(dict.fromkeys(i.strip() for i in lead_ids if i.strip()))
    if not unique:
        raise InvalidArgument.on(
            "lead_ids", "name at least one lead", reason="SEGMENT_MEMBERS_INVALID"
        )
    if len(unique) > MAX_MEMBER_IDS:
        raise InvalidArgument.on(
            "lead_ids", f"at most {MAX_MEMBER_IDS} per call", reason="SEGMENT_MEMBERS_INVALID"
        )
    return unique


async def change_members(
    db: Database, *, workspace_id: str, segment_id: str, lead_ids: Sequence[str], add: bool
) -> MemberChange:
    """Add or remove leads of a STATIC segment. Idempotent; ids of no lead of this workspace
    are reported back, never silently dropped."""
    wanted = _member_ids(lead_ids)
    async with db.transaction() as conn:
        row = await require_segment(conn, workspace_id=workspace_id, segment_id=segment_id)
        if row.membership != Membership.STATIC:
            raise FailedPrecondition(
                message="a RULE segment's members follow its rules; change the rules or the leads",
                reason="SEGMENT_IS_RULE_BASED",
                metadata={"segment_id": segment_id},
            )
        existing = await queries.existing_lead_ids(conn, workspace_id=workspace_id, lead_ids=wanted)
        known = [i for i in wanted if i in existing]
        if add:
            changes = await membership.add_static(
                conn,
                workspace_id=workspace_id,
                lead_ids=known,
                segment_ids=[segment_id],
                cause=MANUAL,
            )
        else:
            changes = await membership.remove_static(
                conn, workspace_id=workspace_id, segment_id=segment_id, lead_ids=known, cause=MANUAL
            )
        changed = [change.lead_id for change in changes]
        after = await require_segment(conn, workspace_id=workspace_id, segment_id=segment_id)
    changed_set = set(changed)
    return MemberChange(
        changed=[i for i in known if i in changed_set],
        unchanged=[i for i in known if i not in changed_set],
        not_found=[i for i in wanted if i not in existing],
        member_count=after.member_count,
    )


async def require_segment(
    conn: AsyncConnection, *, workspace_id: str, segment_id: str, field_name: str = ""
) -> AnyRow:
    """The segment, or NotFound (naming `field_name` when a request field named it)."""
    row = await queries.get_segment(conn, workspace_id=workspace_id, segment_id=segment_id)
    if row is None:
        error = NotFound.resource("segment", segment_id)
        if field_name:
            error.violations.append(FieldViolation(field_name, "unknown segment"))
        raise error
    return row


async def static_segment_ids(
    conn: AsyncConnection, *, workspace_id: str, segment_ids: Sequence[str]
) -> set[str]:
    """Which of these ids are STATIC segments of the workspace."""
    return await queries.static_segment_ids(
        conn, workspace_id=workspace_id, segment_ids=segment_ids
    )


async def require_static_segments(
    conn: AsyncConnection, *, workspace_id: str, segment_ids: Sequence[str], field_name: str
) -> None:
    """Targets a form or an import adds leads to: each must be a STATIC segment here."""
    for index, segment_id in enumerate(segment_ids):
        name = f"{field_name}[{index}]"
        row = await require_segment(
            conn, workspace_id=workspace_id, segment_id=segment_id, field_name=name
        )
        if row.membership != Membership.STATIC:
            raise FailedPrecondition(
                message=f"segment {segment_id!r} is RULE based: its members follow its rules",
                reason="SEGMENT_IS_RULE_BASED",
                violations=[FieldViolation(name, "not a STATIC segment")],
                metadata={"segment_id": segment_id},
            )
