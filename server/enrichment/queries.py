"""SQL for enrichment: connectors, the shared cache, the shared rate limiter and budget,
runs, and provenance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.db.engine import AnyRow
from server.db.tables import connectors, enrichment_cache, enrichment_runs, lead_enrichment

CONNECTOR_COLUMNS = [c for c in connectors.c if c.name not in ("tokens", "tokens_at")]


def _scoped(workspace_id: str, connector_id: str) -> Any:
    return (connectors.c.workspace_id == workspace_id) & (connectors.c.id == connector_id)


async def insert_connector(conn: AsyncConnection, *, values: dict[str, Any]) -> AnyRow:
    statement = insert(connectors).values(**values).returning(*CONNECTOR_COLUMNS)
    return (await conn.execute(statement)).one()


async def get_connector(
    conn: AsyncConnection, *, workspace_id: str, connector_id: str, lock: bool = False
) -> AnyRow | None:
    query = select(*CONNECTOR_COLUMNS).where(_scoped(workspace_id, connector_id))
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def get_connectors(
    conn: AsyncConnection, *, workspace_id: str, connector_ids: Sequence[str]
) -> list[AnyRow]:
    query = select(*CONNECTOR_COLUMNS).where(
        connectors.c.workspace_id == workspace_id, connectors.c.id.in_(list(connector_ids))
    )
    return list((await conn.execute(query)).all())


async def update_connector(
    conn: AsyncConnection, *, workspace_id: str, connector_id: str, values: dict[str, Any]
) -> AnyRow:
    statement = (
        update(connectors)
        .where(_scoped(workspace_id, connector_id))
        .values(**values, updated_at=func.now())
        .returning(*CONNECTOR_COLUMNS)
    )
    return (await conn.execute(statement)).one()


async def delete_connector(conn: AsyncConnection, *, workspace_id: str, connector_id: str) -> bool:
    result = await conn.execute(delete(connectors).where(_scoped(workspace_id, connector_id)))
    await conn.execute(
        delete(enrichment_cache).where(enrichment_cache.c.connector_id == connector_id)
    )
    return result.rowcount > 0


async def list_connectors(
    conn: AsyncConnection, *, workspace_id: str, after_id: str | None, limit: int
) -> list[AnyRow]:
    query = select(*CONNECTOR_COLUMNS).where(connectors.c.workspace_id == workspace_id)
    if after_id is not None:
        query = query.where(connectors.c.id > after_id)
    return list((await conn.execute(query.order_by(connectors.c.id).limit(limit + 1))).all())


async def forget_answers(conn: AsyncConnection, *, connector_id: str) -> None:
    """A connector whose request or mapping changed must not reuse old answers."""
    await conn.execute(
        delete(enrichment_cache).where(enrichment_cache.c.connector_id == connector_id)
    )


# -- the cache, the rate limiter and the budget: shared by every worker process -------------


async def cached(
    conn: AsyncConnection, *, connector_id: str, keys: Sequence[str]
) -> dict[str, AnyRow]:
    """The live answers among these lookups, by key."""
    query = select(
        enrichment_cache.c.lookup_key, enrichment_cache.c.found, enrichment_cache.c.answer
    ).where(
        enrichment_cache.c.connector_id == connector_id,
        enrichment_cache.c.lookup_key.in_(list(keys)),
        enrichment_cache.c.expires_at > func.now(),
    )
    return {row.lookup_key: row for row in await conn.execute(query)}


async def remember(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Answers (connector_id, lookup_key, found, answer, expires_at), in one statement."""
    if not rows:
        return
    statement = pg_insert(enrichment_cache).values(list(rows))
    statement = statement.on_conflict_do_update(
        index_elements=["connector_id", "lookup_key"],
        set_={
            "found": statement.excluded.found,
            "answer": statement.excluded.answer,
            "expires_at": statement.excluded.expires_at,
        },
    )
    await conn.execute(statement)


# Takes up to :n calls from the connector's allowance, under the row's lock: tokens from the
# bucket (refilled at rate_limit_per_minute, holding at most a minute's worth; no limit when
# the rate is 0) and calls of the month's budget (counted again from 0 each calendar month,
# UTC). Returns how many were granted, how many the budget still allows after them, and
# when none were granted, the seconds until the next token.
_TAKE_CALLS = text(
    """
    WITH c AS (
        SELECT id, rate_limit_per_minute AS rate, monthly_budget AS budget,
               CASE WHEN budget_month = date_trunc('month', now() AT TIME ZONE 'UTC')::date
                    THEN calls_this_month ELSE 0 END AS calls,
               least(rate_limit_per_minute::float8,
                     tokens + extract(epoch FROM now() - coalesce(tokens_at, now()))
                              * rate_limit_per_minute / 60.0
                     + CASE WHEN tokens_at IS NULL THEN rate_limit_per_minute ELSE 0 END)
                   AS available
        FROM connectors WHERE id = :id FOR UPDATE
    ), granted AS (
        SELECT id, rate, calls, available,
               CASE WHEN budget > 0 THEN greatest(budget - calls, 0) ELSE :n END AS allowance,
               least(:n, CASE WHEN budget > 0 THEN greatest(budget - calls, 0) ELSE :n END,
                     CASE WHEN rate = 0 THEN :n ELSE floor(available)::int END) AS n
        FROM c
    ), taken AS (
        UPDATE connectors k SET
            tokens = CASE WHEN g.rate = 0 THEN 0 ELSE g.available - g.n END,
            tokens_at = now(),
            budget_month = date_trunc('month', now() AT TIME ZONE 'UTC')::date,
            calls_this_month = g.calls + g.n
        FROM granted g WHERE k.id = g.id
        RETURNING g.n, g.allowance - g.n AS left_after,
                  CASE WHEN g.n = 0 AND g.rate > 0 THEN (1 - g.available) * 60.0 / g.rate
                       ELSE 0 END AS wait
    )
    SELECT n, left_after, wait FROM taken
    """
)


async def take_calls(conn: AsyncConnection, *, connector_id: str, n: int) -> tuple[int, float]:
    """(calls granted, seconds to wait for a token); (0, -1) when the budget is spent."""
    row = (await conn.execute(_TAKE_CALLS, {"id": connector_id, "n": n})).first()
    if row is None or (row.n == 0 and row.wait == 0):
        return 0, -1.0
    return int(row.n), float(row.wait)


async def give_back_calls(conn: AsyncConnection, *, connector_id: str, n: int) -> None:
    """Calls that never reached the provider (a refused address)."""
    await conn.execute(
        text(
            "UPDATE connectors SET calls_this_month = greatest(calls_this_month - :n, 0) "
            "WHERE id = :id"
        ),
        {"id": connector_id, "n": n},
    )


# -- runs ---------------------------------------------------------------------------------

RUN_COLUMNS = [c for c in enrichment_runs.c if c.name not in ("workspace_id", "after_lead")]


async def insert_run(conn: AsyncConnection, *, values: dict[str, Any]) -> AnyRow:
    statement = insert(enrichment_runs).values(**values).returning(*RUN_COLUMNS)
    return (await conn.execute(statement)).one()


async def get_run(conn: AsyncConnection, *, workspace_id: str, run_id: str) -> AnyRow | None:
    query = select(*RUN_COLUMNS).where(
        enrichment_runs.c.workspace_id == workspace_id, enrichment_runs.c.id == run_id
    )
    return (await conn.execute(query)).first()


async def run_for_work(conn: AsyncConnection, *, run_id: str) -> AnyRow | None:
    query = select(enrichment_runs).where(enrichment_runs.c.id == run_id).with_for_update()
    return (await conn.execute(query)).first()


async def update_run(conn: AsyncConnection, *, run_id: str, values: dict[str, Any]) -> None:
    await conn.execute(
        update(enrichment_runs).where(enrichment_runs.c.id == run_id).values(**values)
    )


async def unfinished_runs(conn: AsyncConnection, *, older_than_seconds: float) -> list[str]:
    query = text(
        "SELECT id FROM enrichment_runs WHERE state IN ('queued', 'running') "
        "AND created_at < now() - make_interval(secs => :age) ORDER BY created_at LIMIT 100"
    )
    return list((await conn.scalars(query, {"age": older_than_seconds})).all())


# -- provenance ------------------------------------------------------------------------------


async def provenance(conn: AsyncConnection, *, lead_ids: Sequence[str]) -> list[AnyRow]:
    query = (
        select(lead_enrichment)
        .where(lead_enrichment.c.lead_id.in_(list(lead_ids)))
        .order_by(lead_enrichment.c.lead_id, lead_enrichment.c.field)
    )
    return list((await conn.execute(query)).all())


async def record_provenance(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    statement = pg_insert(lead_enrichment).values(list(rows))
    statement = statement.on_conflict_do_update(
        index_elements=["lead_id", "field"],
        set_={
            "value": statement.excluded.value,
            "connector_id": statement.excluded.connector_id,
            "enriched_at": statement.excluded.enriched_at,
        },
    )
    await conn.execute(statement)
