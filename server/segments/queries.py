"""SQL for segments and static membership. Every statement is scoped by workspace."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.db.engine import AnyRow
from server.db.tables import leads, segment_members, segments


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


async def add_members(
    conn: AsyncConnection, *, segment_id: str, lead_ids: Sequence[str]
) -> list[str]:
    """Insert memberships; returns the lead ids that were not members before."""
    if not lead_ids:
        return []
    statement = (
        pg_insert(segment_members)
        .values([{"segment_id": segment_id, "lead_id": lead_id} for lead_id in lead_ids])
        .on_conflict_do_nothing()
        .returning(segment_members.c.lead_id)
    )
    return list((await conn.scalars(statement)).all())


async def remove_members(
    conn: AsyncConnection, *, segment_id: str, lead_ids: Sequence[str]
) -> list[str]:
    if not lead_ids:
        return []
    statement = (
        delete(segment_members)
        .where(segment_members.c.segment_id == segment_id, segment_members.c.lead_id.in_(lead_ids))
        .returning(segment_members.c.lead_id)
    )
    return list((await conn.scalars(statement)).all())


async def member_lead_ids_page(
    conn: AsyncConnection, *, segment_id: str, after_id: str | None, limit: int
) -> list[str]:
    query = select(segment_members.c.lead_id).where(segment_members.c.segment_id == segment_id)
    if after_id is not None:
        query = query.where(segment_members.c.lead_id > after_id)
    query = query.order_by(segment_members.c.lead_id).limit(limit)
    return list((await conn.scalars(query)).all())


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
    query = select(segments.c.id, segments.c.workspace_id).where(segments.c.state == "building")
    return list((await conn.execute(query)).all())


async def count_workspace_leads(conn: AsyncConnection, *, workspace_id: str, cap: int) -> int:
    """How many leads, counting no further than `cap` (enough to choose sync or background)."""
    inner = select(leads.c.id).where(leads.c.workspace_id == workspace_id).limit(cap).subquery()
    return int(await conn.scalar(select(func.count()).select_from(inner)) or 0)


async def mark_ready(conn: AsyncConnection, *, segment_id: str, version: object | None) -> None:
    """READY, unless the rule changed since this build began (then a newer build runs)."""
    sql = "UPDATE segments SET state = 'ready' WHERE id = :id"
    params: dict[str, Any] = {"id": segment_id}
    if version is not None:
        sql += " AND updated_at = :version"
        params["version"] = version
    await conn.execute(text(sql), params)
