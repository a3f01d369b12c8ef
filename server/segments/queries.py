"""SQL for segments and static membership. Every statement is scoped by workspace."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server.companies import linking
from server.db.engine import AnyRow
from server.db.tables import leads, segments
from server.segments.enums import Membership, State


async def insert_segment(conn: AsyncConnection, *, values: dict[str, Any]) -> AnyRow:
    return (await conn.execute(insert(segments).values(**values).returning(*segments.c))).one()


async def get_segment(
    conn: AsyncConnection, *, workspace_id: str, segment_id: str, lock: bool = False
) -> AnyRow | None:
    query = select(*segments.c).where(
        segments.c.workspace_id == workspace_id, segments.c.id == segment_id
    )
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def update_segment(
    conn: AsyncConnection, *, workspace_id: str, segment_id: str, values: dict[str, Any]
) -> AnyRow | None:
    statement = (
        update(segments)
        .where(segments.c.workspace_id == workspace_id, segments.c.id == segment_id)
        .values(**values, updated_at=func.clock_timestamp())
        .returning(*segments.c)
    )
    return (await conn.execute(statement)).first()


async def delete_segment(conn: AsyncConnection, *, workspace_id: str, segment_id: str) -> bool:
    result = await conn.execute(
        delete(segments).where(segments.c.workspace_id == workspace_id, segments.c.id == segment_id)
    )
    return bool(result.rowcount)


async def list_segments(
    conn: AsyncConnection, *, workspace_id: str, after_id: str | None, limit: int
) -> list[AnyRow]:
    query = select(*segments.c).where(segments.c.workspace_id == workspace_id)
    if after_id is not None:
        query = query.where(segments.c.id > after_id)
    return list((await conn.execute(query.order_by(segments.c.id).limit(limit + 1))).all())


async def existing_lead_ids(
    conn: AsyncConnection, *, workspace_id: str, lead_ids: Sequence[str]
) -> set[str]:
    query = select(leads.c.id).where(leads.c.workspace_id == workspace_id, leads.c.id.in_(lead_ids))
    return set((await conn.scalars(query)).all())


async def static_segment_ids(
    conn: AsyncConnection, *, workspace_id: str, segment_ids: Sequence[str]
) -> set[str]:
    """Which of these ids are STATIC segments of the workspace."""
    if not segment_ids:
        return set()
    query = select(segments.c.id).where(
        segments.c.workspace_id == workspace_id,
        segments.c.id.in_(list(segment_ids)),
        segments.c.membership == Membership.STATIC,
    )
    return set((await conn.scalars(query)).all())


async def lead_ids_batch(
    conn: AsyncConnection, *, workspace_id: str, after_id: str | None, limit: int
) -> list[str]:
    """The next batch of a workspace's leads for a rebuild, share-locked so a concurrent
    update of one of them waits until this batch's membership is settled."""
    sql = "SELECT id FROM leads WHERE workspace_id = :ws"
    params: dict[str, Any] = {"ws": workspace_id, "limit": limit}
    if after_id is not None:
        sql += " AND id > :after"
        params["after"] = after_id
    sql += " ORDER BY id LIMIT :limit FOR SHARE"
    return list((await conn.scalars(text(sql), params)).all())


async def building_segments(conn: AsyncConnection) -> list[AnyRow]:
    query = select(segments.c.id, segments.c.workspace_id).where(segments.c.state == State.BUILDING)
    return list((await conn.execute(query)).all())


async def count_workspace_leads(conn: AsyncConnection, *, workspace_id: str, cap: int) -> int:
    """How many leads, counting no further than `cap` (enough to choose sync or background)."""
    inner = select(leads.c.id).where(leads.c.workspace_id == workspace_id).limit(cap).subquery()
    return int(await conn.scalar(select(func.count()).select_from(inner)) or 0)


async def mark_ready(conn: AsyncConnection, *, segment_id: str, version: object | None) -> None:
    """READY, unless the rule changed since this build began (then a newer build runs)."""
    sql = f"UPDATE segments SET state = '{State.READY}' WHERE id = :id"
    params: dict[str, Any] = {"id": segment_id}
    if version is not None:
        sql += " AND updated_at = :version"
        params["version"] = version
    await conn.execute(text(sql), params)


async def count_matching(
    conn: AsyncConnection, *, workspace_id: str, predicate: ColumnElement[bool]
) -> int:
    """How many live leads of the workspace satisfy a rule predicate compiled with
    `company_joined` (the lead's company LEFT JOINed, as membership.refresh evaluates it)."""
    query = (
        select(func.count())
        .select_from(linking.with_linked_company())
        .where(leads.c.workspace_id == workspace_id, leads.c.archived_at.is_(None), predicate)
    )
    return int(await conn.scalar(query) or 0)


async def newest_matching_ids(
    conn: AsyncConnection, *, workspace_id: str, predicate: ColumnElement[bool], limit: int
) -> list[str]:
    """The ids of the newest `limit` leads count_matching counts."""
    query = (
        select(leads.c.id)
        .select_from(linking.with_linked_company())
        .where(leads.c.workspace_id == workspace_id, leads.c.archived_at.is_(None), predicate)
        .order_by(leads.c.id.desc())
        .limit(limit)
    )
    return list((await conn.scalars(query)).all())
