"""SQL for forms, their submissions and lead activities. Statements are scoped by
workspace, except the public lookup by slug (slugs are global)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, cast, delete, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.db.engine import AnyRow
from server.db.tables import (
    LEAD_STORED_COLUMNS,
    activities,
    form_submissions,
    forms,
    leads,
    segment_members,
    segments,
)


def _scoped(workspace_id: str, form_id: str) -> Any:
    return and_(forms.c.workspace_id == workspace_id, forms.c.id == form_id)


async def insert_form(conn: AsyncConnection, *, values: dict[str, Any]) -> AnyRow:
    return (await conn.execute(insert(forms).values(**values).returning(*forms.c))).one()


async def get_form(conn: AsyncConnection, *, workspace_id: str, form_id: str) -> AnyRow | None:
    return (await conn.execute(select(*forms.c).where(_scoped(workspace_id, form_id)))).first()


async def form_by_slug(conn: AsyncConnection, *, slug: str) -> AnyRow | None:
    """The form a public submission names, key-share locked so it cannot be deleted
    before the submission referencing it commits."""
    query = select(*forms.c).where(forms.c.slug == slug).with_for_update(read=True, key_share=True)
    return (await conn.execute(query)).first()


async def update_form(
    conn: AsyncConnection, *, workspace_id: str, form_id: str, values: dict[str, Any]
) -> AnyRow | None:
    statement = (
        update(forms)
        .where(_scoped(workspace_id, form_id))
        .values(**values, updated_at=func.clock_timestamp())
        .returning(*forms.c)
    )
    return (await conn.execute(statement)).first()


async def delete_form(conn: AsyncConnection, *, workspace_id: str, form_id: str) -> bool:
    result = await conn.execute(delete(forms).where(_scoped(workspace_id, form_id)))
    return bool(result.rowcount)


async def list_forms(
    conn: AsyncConnection, *, workspace_id: str, after_id: str | None, limit: int
) -> list[AnyRow]:
    query = select(*forms.c).where(forms.c.workspace_id == workspace_id)
    if after_id is not None:
        query = query.where(forms.c.id > after_id)
    return list((await conn.execute(query.order_by(forms.c.id).limit(limit + 1))).all())


async def static_segment_ids(
    conn: AsyncConnection, *, workspace_id: str, segment_ids: Sequence[str]
) -> set[str]:
    """Which of these ids are STATIC segments of the workspace."""
    if not segment_ids:
        return set()
    query = select(segments.c.id).where(
        segments.c.workspace_id == workspace_id,
        segments.c.id.in_(list(segment_ids)),
        segments.c.membership == "static",
    )
    return set((await conn.scalars(query)).all())


async def list_submissions(
    conn: AsyncConnection, *, form_id: str, before_id: str | None, limit: int
) -> list[AnyRow]:
    """Newest first (ids sort by time), limit + 1 rows so the caller knows if more follow."""
    query = select(*form_submissions.c).where(form_submissions.c.form_id == form_id)
    if before_id is not None:
        query = query.where(form_submissions.c.id < before_id)
    query = query.order_by(form_submissions.c.id.desc()).limit(limit + 1)
    return list((await conn.execute(query)).all())


# -- the public submission's writes ---------------------------------------------------


async def lock_lead_by_email(
    conn: AsyncConnection, *, workspace_id: str, email: str
) -> AnyRow | None:
    query = (
        select(*LEAD_STORED_COLUMNS)
        .where(leads.c.workspace_id == workspace_id, func.lower(leads.c.email) == email.lower())
        .with_for_update()
    )
    return (await conn.execute(query)).first()


async def insert_lead_if_absent(conn: AsyncConnection, *, values: dict[str, Any]) -> str | None:
    """Insert a lead unless its email is taken (a concurrent submission may have just
    created it); returns the new id or None."""
    statement = (
        pg_insert(leads)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[leads.c.workspace_id, func.lower(leads.c.email)])
        .returning(leads.c.id)
    )
    inserted: str | None = (await conn.execute(statement)).scalar_one_or_none()
    return inserted


async def update_lead(
    conn: AsyncConnection, *, lead_id: str, values: dict[str, Any], custom: dict[str, Any]
) -> None:
    assignments: dict[str, Any] = {**values, "updated_at": func.now()}
    if custom:
        patch = cast(literal(custom, JSONB), JSONB)
        assignments["custom_fields"] = leads.c.custom_fields.op("||")(patch)
    await conn.execute(update(leads).where(leads.c.id == lead_id).values(**assignments))


async def insert_submission(conn: AsyncConnection, *, values: dict[str, Any]) -> None:
    await conn.execute(insert(form_submissions).values(**values))


async def insert_activity(conn: AsyncConnection, *, values: dict[str, Any]) -> None:
    await conn.execute(insert(activities).values(**values))


async def add_to_segments(
    conn: AsyncConnection, *, workspace_id: str, lead_id: str, segment_ids: Sequence[str]
) -> list[str]:
    """Add one lead to those of these segments that are still STATIC segments of the
    workspace (a target deleted since the form was saved is skipped: the rows are
    key-share locked as they are read, so none can vanish before this commits). Returns the
    segments the lead was not in before."""
    if not segment_ids:
        return []
    targets = (
        select(segments.c.id, literal(lead_id))
        .where(
            segments.c.workspace_id == workspace_id,
            segments.c.id.in_(list(segment_ids)),
            segments.c.membership == "static",
        )
        .order_by(segments.c.id)
        .with_for_update(read=True, key_share=True)
    )
    statement = (
        pg_insert(segment_members)
        .from_select(["segment_id", "lead_id"], targets)
        .on_conflict_do_nothing()
        .returning(segment_members.c.segment_id)
    )
    return sorted((await conn.scalars(statement)).all())
