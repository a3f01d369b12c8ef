"""Running an enrichment run on a worker: a batch of leads at a time, in lead id order; the
lookups of a batch run concurrently, then the batch's writes, counters and checkpoint
commit together, so a run killed anywhere resumes after its last committed lead and
enriches every lead once (lookups already paid come back from the cache)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.db.engine import AnyRow, Database
from server.db.tables import leads, segment_members
from server.enrichment import apply, lookups, queries
from server.enrichment.model import (
    Answer,
    Connector,
    LeadView,
    ProviderError,
    RunError,
    RunState,
)
from server.enrichment.service import to_connector
from server.errors import DomainError
from server.filtering.compiler import compile_predicate
from server.filtering.expression import parse
from server.leads import writes
from server.outbound import OutboundClient

log = logging.getLogger("tnx.enrichment")

BATCH = 100  # leads per committed batch
CONCURRENCY = 32  # lookups in flight per worker process
MAX_ERRORS_KEPT = 100


def _selection(run: AnyRow) -> Any:
    """The run's leads as a WHERE clause on leads."""
    scoped = (leads.c.workspace_id == run.workspace_id) & leads.c.archived_at.is_(None)
    if run.lead_id:
        return (leads.c.workspace_id == run.workspace_id) & (leads.c.id == run.lead_id)
    if run.segment_id:
        members = select(segment_members.c.lead_id).where(
            segment_members.c.segment_id == run.segment_id
        )
        return scoped & leads.c.id.in_(members)
    return scoped & compile_predicate(parse(run.filter))


async def _start(conn: AsyncConnection, run: AnyRow) -> int:
    total = await conn.scalar(select(func.count()).select_from(leads).where(_selection(run)))
    await queries.update_run(conn, run_id=run.id, values={"state": "running", "total": total})
    return int(total or 0)


async def _next_leads(db: Database, run: AnyRow, after: str) -> list[AnyRow]:
    query = (
        select(leads).where(_selection(run), leads.c.id > after).order_by(leads.c.id).limit(BATCH)
    )
    async with db.read() as conn:
        return list((await conn.execute(query)).all())


def _view(row: AnyRow) -> LeadView:
    return LeadView(
        id=row.id,
        email=row.email,
        first_name=row.first_name,
        last_name=row.last_name,
        title=row.title,
        phone=row.phone,
        company=row.company,
        company_id=row.company_id,
        custom_fields=dict(row.custom_fields or {}),
    )


class Runner:
    def __init__(self, db: Database, client: OutboundClient) -> None:
        self.db, self.client = db, client
        self.slots = asyncio.Semaphore(CONCURRENCY)

    async def run(self, run_id: str) -> None:
        """Carry the run on; nothing happens when another worker holds it or it is done."""
        async with self.db.engine.connect() as holder:
            lock = text("SELECT pg_try_advisory_lock(hashtext('enrichment:' || :id))")
            if not await holder.scalar(lock, {"id": run_id}):
                return
            try:
                await self._carry_on(run_id)
            finally:
                unlock = text("SELECT pg_advisory_unlock(hashtext('enrichment:' || :id))")
                await holder.execute(unlock, {"id": run_id})
                await holder.commit()

    async def _carry_on(self, run_id: str) -> None:
        async with self.db.transaction() as conn:
            run = await queries.run_for_work(conn, run_id=run_id)
            if run is None or run.state in (RunState.SUCCEEDED, RunState.FAILED):
                return
            rows = await queries.get_connectors(
                conn, workspace_id=run.workspace_id, connector_ids=run.connector_ids
            )
            found = {row.id: to_connector(row, secrets=True) for row in rows}
            chosen = [found[i] for i in run.connector_ids if i in found and found[i].enabled]
            if not chosen:
                await _finish(conn, run.id, RunState.FAILED)
                return
            if run.state == RunState.QUEUED:
                await _start(conn, run)
        after = run.after_lead
        while True:
            batch = await _next_leads(self.db, run, after)
            if not batch:
                async with self.db.transaction() as conn:
                    await _finish(conn, run.id, RunState.SUCCEEDED)
                return
            await self._batch(run, chosen, batch)
            after = batch[-1].id

    async def _batch(self, run: AnyRow, chosen: Sequence[Connector], batch: list[AnyRow]) -> None:
        tally = lookups.Tally()
        results = await asyncio.gather(*(self._lookups(row, chosen, tally) for row in batch))
        origin = writes.Origin(run_id=run.id, connector_ids=tuple(c.id for c in chosen))
        changed, errors = 0, []
        async with self.db.transaction() as conn:
            for row, (answers, problems) in zip(batch, results, strict=True):
                errors += problems
                try:
                    # One lead's failure must not sink its batch (and leave the run
                    # retried for ever): it is an error on the run, the lead unchanged.
                    async with conn.begin_nested():
                        paths = await apply.enrich_lead(
                            conn,
                            workspace_id=run.workspace_id,
                            lead_id=row.id,
                            answers=answers,
                            origin=origin,
                            at=datetime.now(UTC),
                        )
                except (DomainError, DBAPIError) as failed:
                    log.warning("enrichment run %s: lead %s not written", run.id, row.id)
                    errors.append(RunError(row.id, "", "WRITE_FAILED", _short(failed)))
                    continue
                changed += bool(paths)
            await _progress(conn, run.id, batch[-1].id, len(batch), changed, tally, errors)

    async def _lookups(
        self, row: AnyRow, chosen: Sequence[Connector], tally: lookups.Tally
    ) -> tuple[list[tuple[Connector, Answer]], list[RunError]]:
        """Each connector in order (a later one sees what an earlier one found)."""
        lead = _view(row)
        answers: list[tuple[Connector, Answer]] = []
        problems: list[RunError] = []
        for connector in chosen:
            try:
                async with self.slots:
                    found = await lookups.answer(self.db, self.client, connector, lead, tally)
            except ProviderError as error:
                problems.append(RunError(row.id, connector.id, error.reason, error.message))
                continue
            answers.append((connector, found))
            lead = _with(lead, found)
        return answers, problems


def _short(failed: Exception) -> str:
    """What a failed write says, without SQL or values (the engine hides parameters)."""
    if isinstance(failed, DomainError):
        return failed.message
    return type(getattr(failed, "orig", failed)).__name__


def _with(lead: LeadView, found: Answer) -> LeadView:
    """The lead as the next connector sees it: empty fields filled from this answer."""
    if not found.found:
        return lead
    values = {k: v for k, v in found.values.items() if k in ("first_name", "last_name", "title")}
    current = asdict(lead)
    current.update({k: v for k, v in values.items() if not current.get(k)})
    return LeadView(**current)


_PROGRESS = text(
    """
    UPDATE enrichment_runs SET processed = processed + :done, changed = changed + :changed,
        provider_calls = provider_calls + :calls, cache_hits = cache_hits + :hits,
        error_count = error_count + :error_count, after_lead = :after,
        errors = CASE WHEN jsonb_array_length(errors) >= :kept THEN errors
                      ELSE errors || CAST(:errors AS jsonb) END
    WHERE id = :id
    """
)


async def _progress(
    conn: AsyncConnection,
    run_id: str,
    after: str,
    done: int,
    changed: int,
    tally: lookups.Tally,
    errors: list[RunError],
) -> None:
    params = {
        "id": run_id,
        "after": after,
        "done": done,
        "changed": changed,
        "calls": tally.provider_calls,
        "hits": tally.cache_hits,
        "error_count": len(errors),
        "errors": json.dumps([asdict(e) for e in errors[:MAX_ERRORS_KEPT]]),
        "kept": MAX_ERRORS_KEPT,
    }
    await conn.execute(_PROGRESS, params)


async def _finish(conn: AsyncConnection, run_id: str, state: RunState) -> None:
    await queries.update_run(
        conn, run_id=run_id, values={"state": str(state), "finished_at": func.now()}
    )
