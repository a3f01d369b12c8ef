"""Secrets every server process of a deployment shares, created once in the database."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from server.db.engine import Database
from server.db.tables import server_secrets


async def shared_secret(db: Database, name: str) -> bytes:
    async with db.transaction() as conn:
        await conn.execute(
            insert(server_secrets)
            .values(name=name, secret=secrets.token_bytes(32))
            .on_conflict_do_nothing(index_elements=["name"])
        )
        value = await conn.scalar(
            select(server_secrets.c.secret).where(server_secrets.c.name == name)
        )
    assert value is not None
    return bytes(value)
