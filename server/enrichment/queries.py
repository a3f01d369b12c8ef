"""SQL for enrichment: connectors, the shared cache, the shared rate limiter and budget,
runs, and provenance."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
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


async def cached(conn: AsyncConnection, *, connector_id: str, key: str) -> AnyRow | None:
    query = select(enrichment_cache.c.found, enrichment_cache.c.answer).where(
        enrichment_cache.c.connector_id == connector_id,
        enrichment_cache.c.lookup_key == key,
        enrichment_cache.c.expires_at > func.now(),
    )
    return (await conn.execute(query)).first()


async def remember(
    conn: AsyncConnection,
    *,
    connector_id: str,
    key: str,
    found: bool,
    answer: dict[str, Any],
    expires_at: datetime,
) -> None:
    statement = pg_insert(enrichment_cache).values(
        connector_id=connector_id, lookup_key=key, found=found, answer=answer, expires_at=expires_at
    )
    statement = statement.on_conflict_do_update(
        index_elements=["connector_id", "lookup_key"],
        set_={"found": found, "answer": answer, "expires_at": expires_at},
    )
    await conn.execute(statement)


# Takes one call from the connector's allowance, under the row's lock: a token from the
# bucket (refilled at rate_limit_per_minute, holding at most a minute's worth) and one call
# of the month's budget (the count starts again each calendar month, UTC). Returns the
# seconds to wait for a token (0: granted), or -1 when the budget is spent.
_TAKE_CALL = text(
    """
    WITH c AS (
        SELECT id, rate_limit_per_minute AS rate, monthly_budget AS budget,
               CASE WHEN budget_month = date_trunc('month', now() AT TIME ZONE 'UTC')::date
                    THEN calls_this_month ELSE 0 END AS calls,
               CASE WHEN rate_limit_per_minute = 0 THEN 1
                    ELSE least(rate_limit_per_minute::float8,
                               tokens + extract(epoch FROM now() - coalesce(tokens_at, now()))
                                        * rate_limit_per_minute / 60.0
                               + CASE WHEN tokens_at IS NULL THEN rate_limit_per_minute ELSE 0 END)
               END AS available
        FROM connectors WHERE id = :id FOR UPDATE
    ), decided AS (
        SELECT id, rate, CASE WHEN budget > 0 AND calls >= budget THEN -1
                              WHEN available >= 1 THEN 0
                              ELSE (1 - available) * 60.0 / rate END AS wait,
               available, calls FROM c
    ), taken AS (
        UPDATE connectors k SET
            tokens = CASE WHEN d.wait = 0 THEN d.available - 1 ELSE d.available END,
            tokens_at = now(),
            budget_month = date_trunc('month', now() AT TIME ZONE 'UTC')::date,
            calls_this_month = d.calls + CASE WHEN d.wait = 0 THEN 1 ELSE 0 END
        FROM decided d WHERE k.id = d.id
        RETURNING d.wait
    )
    SELECT wait FROM taken
    """
)


async def take_call(conn: AsyncConnection, *, connector_id: str) -> float:
    found = await conn.scalar(_TAKE_CALL, {"id": connector_id})
    return -1.0 if found is None else float(found)


async def give_back_call(conn: AsyncConnection, *, connector_id: str) -> None:
    """A call that never reached the provider (refused address, connection refused)."""
    await conn.execute(
        text(
            "UPDATE connectors SET calls_this_month = greatest(calls_this_month - 1, 0) "
            "WHERE id = :id"
        ),
        {"id": connector_id},
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
