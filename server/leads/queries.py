"""SQL for leads. Every statement is scoped by workspace_id."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    cast,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import REGCONFIG
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import Label

from server.db.engine import AnyRow
from server.db.tables import leads, segment_members
from server.updates import patched_custom_fields

# A lead's segments come with every read of it, in the same statement.
SEGMENT_IDS: Label[Any] = literal_column(
    "ARRAY(SELECT m.segment_id FROM segment_members m WHERE m.lead_id = leads.id "
    "ORDER BY m.segment_id)"
).label("segment_ids")
LEAD_COLUMNS = [*(c for c in leads.c if c.name != "search_vector"), SEGMENT_IDS]


def _scoped(workspace_id: str, lead_id: str) -> ColumnElement[bool]:
    return and_(leads.c.workspace_id == workspace_id, leads.c.id == lead_id)


async def insert_lead(conn: AsyncConnection, *, values: dict[str, Any]) -> AnyRow:
    result = await conn.execute(insert(leads).values(**values).returning(*LEAD_COLUMNS))
    return result.one()


async def get_lead(conn: AsyncConnection, *, workspace_id: str, lead_id: str) -> AnyRow | None:
    result = await conn.execute(select(*LEAD_COLUMNS).where(_scoped(workspace_id, lead_id)))
    return result.first()


async def lock_lead(conn: AsyncConnection, *, workspace_id: str, lead_id: str) -> AnyRow | None:
    query = select(*LEAD_COLUMNS).where(_scoped(workspace_id, lead_id)).with_for_update()
    return (await conn.execute(query)).first()


async def update_lead(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    lead_id: str,
    values: dict[str, Any],
    custom_merge: dict[str, Any] | None = None,
    custom_remove: list[str] | None = None,
) -> AnyRow | None:
    """Set columns, and patch custom_fields key by key (merge, then remove) in one statement."""
    assignments: dict[str, Any] = {**values, "updated_at": func.now()}
    document = patched_custom_fields(leads.c.custom_fields, custom_merge, custom_remove)
    if document is not None:
        assignments["custom_fields"] = document
    statement = (
        update(leads)
        .where(_scoped(workspace_id, lead_id))
        .values(**assignments)
        .returning(*LEAD_COLUMNS)
    )
    return (await conn.execute(statement)).first()


def _visible(
    workspace_id: str, predicate: ColumnElement[bool], include_archived: bool
) -> list[ColumnElement[bool]]:
    conditions = [leads.c.workspace_id == workspace_id, predicate]
    if not include_archived:
        conditions.append(leads.c.archived_at.is_(None))
    return conditions


async def list_page(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    predicate: ColumnElement[bool],
    include_archived: bool,
    after_id: str | None,
    limit: int,
) -> list[AnyRow]:
    """One keyset page in id order; fetches limit + 1 rows so the caller knows if more follow."""
    conditions = _visible(workspace_id, predicate, include_archived)
    if after_id is not None:
        conditions.append(leads.c.id > after_id)
    query: Select[Any] = (
        select(*LEAD_COLUMNS).where(*conditions).order_by(leads.c.id).limit(limit + 1)
    )
    return list((await conn.execute(query)).all())


async def search_page(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    tsquery: str,
    predicate: ColumnElement[bool],
    include_archived: bool,
    after: tuple[float, str] | None,
    limit: int,
) -> list[AnyRow]:
    """One page of matches, best rank first, ties by id; rows carry their `rank`."""
    query_vector = func.to_tsquery(cast(literal("simple"), REGCONFIG), tsquery)
    rank = func.ts_rank_cd(leads.c.search_vector, query_vector)
    conditions = _visible(workspace_id, predicate, include_archived)
    conditions.append(leads.c.search_vector.op("@@")(query_vector))
    if after is not None:
        after_rank, after_id = after
        conditions.append(or_(rank < after_rank, and_(rank == after_rank, leads.c.id > after_id)))
    query = (
        select(*LEAD_COLUMNS, rank.label("rank"))
        .where(*conditions)
        .order_by(rank.desc(), leads.c.id)
        .limit(limit + 1)
    )
    return list((await conn.execute(query)).all())


def in_segment(segment_id: str) -> ColumnElement[bool]:
    return leads.c.id.in_(
        select(segment_members.c.lead_id).where(segment_members.c.segment_id == segment_id)
    )
