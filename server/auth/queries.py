"""SQL for workspaces and API keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Row, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server.db.engine import AnyRow
from server.db.tables import api_keys, workspaces


async def insert_workspace(conn: AsyncConnection, *, workspace_id: str, name: str) -> None:
    await conn.execute(insert(workspaces).values(id=workspace_id, name=name))


async def find_workspace(conn: AsyncConnection, *, ref: str) -> Row[str, str] | None:
    """A workspace by id, or else by name (names are not unique: the oldest wins)."""
    query = (
        select(workspaces.c.id, workspaces.c.name)
        .where((workspaces.c.id == ref) | (workspaces.c.name == ref))
        .order_by((workspaces.c.id == ref).desc(), workspaces.c.created_at)
        .limit(1)
    )
    return (await conn.execute(query)).first()


async def insert_key(
    conn: AsyncConnection,
    *,
    key_id: str,
    workspace_id: str,
    name: str,
    prefix: str,
    secret_hash: bytes,
) -> None:
    await conn.execute(
        insert(api_keys).values(
            id=key_id, workspace_id=workspace_id, name=name, prefix=prefix, secret_hash=secret_hash
        )
    )


async def find_live_key(conn: AsyncConnection, *, prefix: str) -> Row[str, str, bytes] | None:
    query = select(api_keys.c.id, api_keys.c.workspace_id, api_keys.c.secret_hash).where(
        api_keys.c.prefix == prefix, api_keys.c.revoked_at.is_(None)
    )
    return (await conn.execute(query)).first()


async def key_is_live(conn: AsyncConnection, *, key_id: str, workspace_id: str) -> bool:
    """The key exists, is not revoked, and its workspace is still there (primary keys)."""
    query = select(
        select(api_keys.c.id)
        .join(workspaces, workspaces.c.id == api_keys.c.workspace_id)
        .where(
            api_keys.c.id == key_id,
            api_keys.c.workspace_id == workspace_id,
            api_keys.c.revoked_at.is_(None),
        )
        .exists()
    )
    return bool((await conn.execute(query)).scalar())


async def touch_key(conn: AsyncConnection, *, key_id: str, now: datetime) -> None:
    await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=now))


async def list_keys(conn: AsyncConnection, *, workspace_id: str) -> list[AnyRow]:
    query = (
        select(
            api_keys.c.id,
            api_keys.c.name,
            api_keys.c.prefix,
            api_keys.c.created_at,
            api_keys.c.revoked_at,
            api_keys.c.last_used_at,
        )
        .where(api_keys.c.workspace_id == workspace_id)
        .order_by(api_keys.c.created_at)
    )
    return list((await conn.execute(query)).all())


async def revoke_key(conn: AsyncConnection, *, key_ref: str, now: datetime) -> int:
    """Revoke by key id or by its shown prefix; returns how many keys were revoked."""
    result = await conn.execute(
        update(api_keys)
        .where((api_keys.c.id == key_ref) | (api_keys.c.prefix == key_ref))
        .where(api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount
