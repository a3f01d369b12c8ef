"""Import jobs as clients see them: read, list, watch, cancel, and their row errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from datetime import datetime

from server.db.engine import AnyRow, Database
from server.errors import FailedPrecondition, InvalidArgument, NotFound
from server.imports import queries
from server.imports.enums import JobStatus
from server.pagination import CursorCodec, Keyset, page_size

WATCH_POLL_SECONDS = 0.25
# A watcher hears from the server at least this often, so proxies keep the stream open.
WATCH_KEEPALIVE_SECONDS = 15.0


@dataclass(frozen=True)
class Job:
    id: str
    workspace_id: str
    status: str
    format: str
    mode: str
    mapping: list[list[str]]
    segment_ids: list[str]
    default_source: str
    request_id: str | None
    encoding: str
    size_bytes: int
    rows_total: int | None
    checkpoint: int
    rows_created: int
    rows_updated: int
    rows_skipped: int
    rows_failed: int
    cancel_requested: bool
    error: str
    created_at: datetime
    uploaded_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @property
    def finished(self) -> bool:
        return self.status in queries.TERMINAL


def to_job(row: AnyRow) -> Job:
    values = row._mapping
    return Job(**{f.name: values[f.name] for f in fields(Job)})


@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    value: str
    reason: str


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str


@dataclass(frozen=True)
class ErrorPage:
    errors: list[RowError]
    next_cursor: str


def _check_id(job_id: str) -> None:
    if not job_id:
        raise InvalidArgument.on("id", "is required", reason="IMPORT_ID_REQUIRED")


async def get_job(db: Database, *, workspace_id: str, job_id: str) -> Job:
    _check_id(job_id)
    async with db.transaction() as conn:
        row = await queries.get_job(conn, workspace_id=workspace_id, job_id=job_id)
    if row is None:
        raise NotFound.resource("import", job_id)
    return to_job(row)


async def list_jobs(
    db: Database, codec: CursorCodec, *, workspace_id: str, limit: int, cursor: str
) -> JobPage:
    size = page_size(limit)
    keyset = Keyset(codec, workspace_id, "imports")
    before = keyset.after_id(cursor)  # newest first, so the next page is below this id
    async with db.transaction() as conn:
        rows = await queries.list_page(
            conn, workspace_id=workspace_id, before_id=before, limit=size
        )
    rows, next_cursor = keyset.page(rows, size, lambda r: [r.id])
    return JobPage(jobs=[to_job(r) for r in rows], next_cursor=next_cursor)


async def watch_job(
    db: Database,
    *,
    workspace_id: str,
    job_id: str,
    poll_seconds: float = WATCH_POLL_SECONDS,
    keepalive_seconds: float = WATCH_KEEPALIVE_SECONDS,
) -> AsyncIterator[Job]:
    """The job now, then again on every change (and as a keepalive), until it finishes."""
    job = await get_job(db, workspace_id=workspace_id, job_id=job_id)
    loop = asyncio.get_running_loop()
    last_sent = loop.time()
    yield job
    while not job.finished:
        await asyncio.sleep(poll_seconds)
        fresh = await get_job(db, workspace_id=workspace_id, job_id=job_id)
        if fresh != job or loop.time() - last_sent >= keepalive_seconds:
            job, last_sent = fresh, loop.time()
            yield job


async def cancel_job(db: Database, *, workspace_id: str, job_id: str) -> Job:
    _check_id(job_id)
    async with db.transaction() as conn:
        row = await queries.request_cancel(conn, workspace_id=workspace_id, job_id=job_id)
        if row is not None:
            if row.status == JobStatus.CANCELLED:
                await queries.delete_chunks(conn, job_id=job_id)
            return to_job(row)
        current = await queries.get_job(conn, workspace_id=workspace_id, job_id=job_id)
    if current is None:
        raise NotFound.resource("import", job_id)
    if current.status == JobStatus.CANCELLED:
        return to_job(current)
    raise FailedPrecondition(
        message=f"import {job_id!r} already finished ({current.status}); nothing to cancel",
        reason="IMPORT_FINISHED",
        metadata={"id": job_id, "status": current.status},
    )


async def list_errors(
    db: Database, codec: CursorCodec, *, workspace_id: str, job_id: str, limit: int, cursor: str
) -> ErrorPage:
    size = page_size(limit)
    await get_job(db, workspace_id=workspace_id, job_id=job_id)
    keyset = Keyset(codec, workspace_id, f"import-errors:{job_id}")
    position = keyset.position(cursor, int, int)
    after = (position[0], position[1]) if position else None
    async with db.transaction() as conn:
        rows = await queries.errors_page(conn, job_id=job_id, after=after, limit=size)
    rows, next_cursor = keyset.page(rows, size, lambda r: [r.row_number, r.position])
    found = [
        RowError(row=r.row_number, column=r.column_name, value=r.value, reason=r.reason)
        for r in rows
    ]
    return ErrorPage(errors=found, next_cursor=next_cursor)
