"""The async engine and the one-transaction-per-request unit of work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeAlias, TypeVar

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

# A result row of any width (SQLAlchemy types rows by their column tuple).
AnyRow: TypeAlias = Row[*tuple[Any, ...]]
T = TypeVar("T")


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # Errors and their logs never carry the statement's values: emails, webhook secrets.
        hide_parameters=True,
        pool_pre_ping=True,
        # A server restart must not leave the pool holding dead connections for long.
        pool_recycle=1800,
        # A database that does not answer fails the request in seconds, not at TCP's timeout.
        connect_args={"connect_timeout": 5},
    )


class Database:
    """Owns the engine; `transaction()` is the unit of work a request runs in."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """For work that is one statement at a time (a single read): autocommit, which saves
        the BEGIN and COMMIT round trips. Each statement commits alone and sees its own
        snapshot, so statements that must agree or commit together use `transaction()`."""
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    async def close(self) -> None:
        await self.engine.dispose()


def run_with_database(
    url: str, action: Callable[[Database], Awaitable[T]], *, pool_size: int = 1
) -> T:
    """Run one async action on a database of its own, from synchronous code (a worker task,
    a CLI command, a test), and close it."""

    async def run() -> T:
        db = Database(make_engine(url, pool_size=pool_size))
        try:
            return await action(db)
        finally:
            await db.close()

    return asyncio.run(run())
