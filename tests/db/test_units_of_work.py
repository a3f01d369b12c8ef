"""Database.read() (autocommit, one statement at a time) and Database.transaction() share
one pool: a read must never hand a connection back in autocommit mode."""

from __future__ import annotations

from sqlalchemy import text

from server.db.engine import Database
from tests.support import db


def test_transaction_after_a_read_on_the_same_pooled_connection_is_atomic(
    database_url: str,
) -> None:
    async def scenario(database: Database) -> tuple[bool, int]:
        async with database.read() as conn:
            in_read = await conn.scalar(text("SELECT now() = statement_timestamp()"))
        try:
            async with database.transaction() as conn:
                await conn.execute(text("CREATE TEMP TABLE probe (n int)"))
                await conn.execute(text("INSERT INTO probe VALUES (1)"))
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        async with database.transaction() as conn:
            exists = await conn.scalar(
                text("SELECT count(*) FROM pg_tables WHERE tablename = 'probe'")
            )
        return bool(in_read), int(exists or 0)

    # pool_size=1 (run_with_db): both units of work get the very same connection.
    in_read, probe_tables = db.run_with_db(database_url, scenario)
    assert in_read, "a read runs outside a transaction: its statement starts its own"
    assert probe_tables == 0, "the failed transaction's table survived: it ran in autocommit"
