"""SQL for activities. Every statement is scoped by workspace_id."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from server.db.engine import AnyRow
from server.db.tables import activities, leads

ACTIVITY_COLUMNS = [
    activities.c.id,
    activities.c.lead_id,
    activities.c.type,
    activities.c.data,
    activities.c.occurred_at,
    activities.c.source,
    activities.c.idempotency_key,
    activities.c.created_at,
]


async def find_leads(
    conn: AsyncConnection, *, workspace_id: str, lead_ids: Sequence[str], emails: Sequence[str]
) -> list[AnyRow]:
    """(id, lower-cased email) of the workspace's leads named by id or by email (lower-cased
    by the caller; the unique index is on lower(email))."""
    if not lead_ids and not emails:
        return []
    email = func.lower(leads.c.email)
    query = select(leads.c.id, email.label("email")).where(
        leads.c.workspace_id == workspace_id,
        or_(leads.c.id.in_(list(lead_ids)), email.in_(list(emails))),
    )
    return list((await conn.execute(query)).all())


async def lead_exists(conn: AsyncConnection, *, workspace_id: str, lead_id: str) -> bool:
    query = select(leads.c.id).where(leads.c.workspace_id == workspace_id, leads.c.id == lead_id)
    return (await conn.execute(query)).first() is not None


async def insert_activities(
    conn: AsyncConnection, *, workspace_id: str, rows: Sequence[dict[str, Any]]
) -> dict[str, datetime]:
    """Insert in one statement (columns as arrays: one fixed statement whatever the count);
    a row whose idempotency key the workspace already has is skipped (it waits for a
    concurrent insert of the same key to commit or roll back first). Returns the ids
    inserted, with their created_at."""
    if not rows:
        return {}
    params: dict[str, Any] = {"ws": workspace_id}
    for column in ("id", "lead_id", "type", "occurred_at", "source", "idempotency_key"):
        params[column] = [row[column] for row in rows]
    params["data"] = [json.dumps(row["data"]) for row in rows]
    result = await conn.execute(_INSERT, params)
    return {row.id: row.created_at for row in result}


_INSERT = text(
    """
    INSERT INTO activities (id, workspace_id, lead_id, type, data, occurred_at, source,
                            idempotency_key)
    SELECT a.id, :ws, a.lead_id, a.type, a.data::jsonb, a.occurred_at, a.source, a.key
    FROM unnest(CAST(:id AS text[]), CAST(:lead_id AS text[]), CAST(:type AS text[]),
                CAST(:data AS text[]), CAST(:occurred_at AS timestamptz[]),
                CAST(:source AS text[]), CAST(:idempotency_key AS text[]))
         WITH ORDINALITY AS a(id, lead_id, type, data, occurred_at, source, key, ord)
    ORDER BY a.ord
    ON CONFLICT (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, created_at
    """
)


async def by_idempotency_keys(
    conn: AsyncConnection, *, workspace_id: str, keys: Sequence[str]
) -> list[AnyRow]:
    if not keys:
        return []
    query = select(*ACTIVITY_COLUMNS).where(
        activities.c.workspace_id == workspace_id, activities.c.idempotency_key.in_(list(keys))
    )
    return list((await conn.execute(query)).all())


async def timeline(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    lead_id: str,
    types: Sequence[str],
    after: datetime | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[AnyRow]:
    """A lead's activities newest first by (occurred_at, id), from just below `before`;
    limit + 1 rows so the caller knows whether more follow."""
    conditions = [activities.c.workspace_id == workspace_id, activities.c.lead_id == lead_id]
    if types:
        conditions.append(activities.c.type.in_(list(types)))
    if after is not None:
        conditions.append(activities.c.occurred_at >= after)
    if before is not None:
        conditions.append(tuple_(activities.c.occurred_at, activities.c.id) < tuple_(*before))
    query = (
        select(*ACTIVITY_COLUMNS)
        .where(and_(*conditions))
        .order_by(activities.c.occurred_at.desc(), activities.c.id.desc())
        .limit(limit + 1)
    )
    return list((await conn.execute(query)).all())
