"""Running an enrichment run on a worker: a batch of leads at a time, in lead id order; the
lookups of a batch run concurrently, then the batch's writes, counters and checkpoint
commit together, so a run killed anywhere resumes after its last committed lead and
enriches every lead once (lookups already paid come back from the cache)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.db import locks
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
CONCURRENCY = lookups.ROUND  # lookups in flight per worker process
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
        async with locks.held(self.db, f"enrichment:{run_id}") as mine:
            if mine:
                await self._carry_on(run_id)

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
        # The next batch's lookups overlap this batch's writes; writes stay in lead order,
        # each batch's with its checkpoint.
        writing: asyncio.Task[None] | None = None
        batch = await _next_leads(self.db, run, run.after_lead)
        while batch:
            looked = await self._lookups(batch, chosen)
            if writing is not None:
                await writing
            writing = asyncio.ensure_future(self._write(run, chosen, batch, looked))
            batch = await _next_leads(self.db, run, batch[-1].id)
        if writing is not None:
            await writing
        async with self.db.transaction() as conn:
            await _finish(conn, run.id, RunState.SUCCEEDED)

    async def _lookups(self, batch: list[AnyRow], chosen: Sequence[Connector]) -> Looked:
        """Each connector in order over the whole batch (a later one sees what an earlier
        one found)."""
        tally = lookups.Tally()
        views = [_view(row) for row in batch]
        answers: list[list[tuple[Connector, Answer]]] = [[] for _ in batch]
        problems: list[RunError] = []
        for connector in chosen:
            results = await lookups.answers(
                self.db, self.client, self.slots, connector, views, tally
            )
            for index, result in enumerate(results):
                if isinstance(result, ProviderError):
                    lead_id = batch[index].id
                    problems.append(RunError(lead_id, connector.id, result.reason, result.message))
                    continue
                answers[index].append((connector, result))
                views[index] = _with(views[index], result)
        return Looked(answers, problems, tally)

    async def _write(
        self, run: AnyRow, chosen: Sequence[Connector], batch: list[AnyRow], looked: Looked
    ) -> None:
        origin = writes.Origin(run_id=run.id, connector_ids=tuple(c.id for c in chosen))
        changed, errors = 0, list(looked.problems)
        async with self.db.transaction() as conn:
            # The batch's leads locked first (in id order), so the provenance read for
            # them all at once stays theirs until this commits.
            await conn.execute(_LOCK_LEADS, {"ids": [row.id for row in batch]})
            stored: dict[str, dict[str, Any]] = {row.id: {} for row in batch}
            for found in await queries.provenance(conn, lead_ids=list(stored)):
                stored[found.lead_id][found.field] = found.value
            for row, answers in zip(batch, looked.answers, strict=True):
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
                            stored=stored[row.id],
                        )
                except (DomainError, DBAPIError) as failed:
                    log.warning("enrichment run %s: lead %s not written", run.id, row.id)
                    errors.append(RunError(row.id, "", "WRITE_FAILED", _short(failed)))
                    continue
                changed += bool(paths)
            last = batch[-1].id
            await _progress(conn, run.id, last, len(batch), changed, looked.tally, errors)


@dataclass
class Looked:
    """A batch's lookups: per lead the connectors' answers, and the failed lookups."""

    answers: list[list[tuple[Connector, Answer]]]
    problems: list[RunError]
    tally: lookups.Tally


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


_LOCK_LEADS = text("SELECT id FROM leads WHERE id = ANY(:ids) ORDER BY id FOR UPDATE")
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
