"""SQL for forms and their submissions. Statements are scoped by
workspace, except the public lookup by slug (slugs are global)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server.db.engine import AnyRow
from server.db.tables import (
    form_submissions,
    forms,
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


async def list_submissions(
    conn: AsyncConnection, *, form_id: str, before_id: str | None, limit: int
) -> list[AnyRow]:
    """Newest first (ids sort by time), limit + 1 rows so the caller knows if more follow."""
    query = select(*form_submissions.c).where(form_submissions.c.form_id == form_id)
    if before_id is not None:
        query = query.where(form_submissions.c.id < before_id)
    query = query.order_by(form_submissions.c.id.desc()).limit(limit + 1)
    return list((await conn.execute(query)).all())


# -- the public submission's own rows (the lead goes through server.leads.writes) ------


async def insert_submission(conn: AsyncConnection, *, values: dict[str, Any]) -> None:
    await conn.execute(insert(form_submissions).values(**values))
