"""Advisory locks that every process of the stack shares: the way one server or worker
claims a piece of background work (a segment build, an enrichment run) that any of them
could pick up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text

from server.db.engine import Database

_TRY = text("SELECT pg_try_advisory_lock(hashtext(:name))")
_RELEASE = text("SELECT pg_advisory_unlock(hashtext(:name))")


@asynccontextmanager
async def held(db: Database, name: str) -> AsyncIterator[bool]:
    """Try to take the session lock `name` on a connection of its own, held while the block
    runs; yields whether this process got it (False: another one holds it). A process that
    dies releases it with its connection, so another can carry the work on."""
    async with db.engine.connect() as holder:
        taken = bool(await holder.scalar(_TRY, {"name": name}))
        await holder.commit()
        try:
            yield taken
        finally:
            if taken:
                await holder.execute(_RELEASE, {"name": name})
                await holder.commit()
