"""Running one import job, exactly once however often its task is delivered.

- A PostgreSQL session advisory lock per job, held on the connection that writes the
  batches for as long as the job runs: a duplicate or redelivered task finds it taken and
  leaves; a worker that dies (kill -9, lost machine) loses its connection and so the lock.
- Every batch commits with the job's checkpoint (data rows done), and only if the
  checkpoint is still the one this run started the batch from, so no two runs can both
  commit the same rows even if a lock were lost mid-batch.
- A resumed job parses the file again from its stored chunks and skips `checkpoint` rows.
- Whole-file problems fail the job before a row is written; the database going away is
  waited out and the job resumes; anything else fails the job with its reason; a job that
  keeps killing its worker fails after a bounded number of starts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
import zlib
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from server.db.url import libpq_url
from server.imports import parsing
from server.imports.batches import Options, Plan, batches
from server.imports.enums import FileFormat, JobStatus, Mode
from server.imports.settings import ImportSettings
from server.imports.writer import Batch, JobSpec, LostOwnership, Writer
from server.observability import metrics

log = logging.getLogger("tnx.imports.worker")

LOCK_NAMESPACE = 0x1_4D90  # high half of every import job's advisory lock key
RECONNECT_SECONDS = 120.0
DEADLOCK_RETRIES = 3
TRANSIENT_SQLSTATES = {"40P01", "40001"}  # deadlock, serialization failure


def lock_key(job_id: str) -> tuple[int, int]:
    """(classid, objid) as pg_locks shows them for this job's lock."""
    return LOCK_NAMESPACE, zlib.crc32(job_id.encode())


def _lock_value(job_id: str) -> int:
    high, low = lock_key(job_id)
    return (high << 32) | low


class ChunkSource:
    """The upload's chunks, read in order on a connection of their own (the parser thread's)."""

    def __init__(self, url: str, job_id: str, count: int) -> None:
        self.url = libpq_url(url)
        self.job_id = job_id
        self.count = count
        self._conn: psycopg.Connection[Any] | None = None

    def open(self) -> Iterator[bytes]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True)
        conn = self._conn
        for seq in range(self.count):
            row = conn.execute(
                "SELECT data FROM import_chunks WHERE job_id = %s AND seq = %s",
                (self.job_id, seq),
                binary=True,
            ).fetchone()
            if row is None:
                raise parsing.ImportFailure(f"the upload's chunk {seq} is missing")
            yield bytes(row[0])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def is_transient(exc: BaseException) -> bool:
    """The database (or the way to it) is away for now: wait and resume."""
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated) or isinstance(exc.orig, psycopg.OperationalError)
    return isinstance(exc, psycopg.OperationalError | ConnectionError)


@dataclass
class _Finish:
    status: JobStatus
    error: str = ""


async def _set_final(conn: AsyncConnection, job_id: str, finish: _Finish) -> None:
    async with conn.begin():
        await conn.execute(
            text(
                "UPDATE import_jobs SET status = :status, error = :error, finished_at = now(), "
                "updated_at = now() WHERE id = :id AND status IN ('QUEUED', 'RUNNING')"
            ),
            {"status": finish.status, "error": finish.error[:2000], "id": job_id},
        )
        await conn.execute(text("DELETE FROM import_chunks WHERE job_id = :id"), {"id": job_id})


async def _start(conn: AsyncConnection, job_id: str) -> Any:
    async with conn.begin():
        return (
            await conn.execute(
                text(
                    "UPDATE import_jobs SET status = 'RUNNING', attempts = attempts + 1, "
                    "started_at = coalesce(started_at, now()), updated_at = now() "
                    "WHERE id = :id AND status IN ('QUEUED', 'RUNNING') RETURNING *"
                ),
                {"id": job_id},
            )
        ).first()


class Run:
    """One attempt at a job, on one connection that holds its lock."""

    def __init__(self, url: str, job_id: str, limits: ImportSettings) -> None:
        self.url = url
        self.job_id = job_id
        self.limits = limits

    async def __call__(self) -> None:
        engine = create_async_engine(self.url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                got = (
                    await conn.execute(
                        text("SELECT pg_try_advisory_lock(:key)"), {"key": _lock_value(self.job_id)}
                    )
                ).scalar()
                await conn.commit()
                if not got:
                    log.info("import %s is running elsewhere", self.job_id)
                    return
                await self._locked(conn)
        finally:
            await engine.dispose()

    async def _locked(self, conn: AsyncConnection) -> None:
        job = await _start(conn, self.job_id)
        if job is None:
            return  # finished, cancelled, or not in this database
        if job.cancel_requested:
            await _set_final(conn, self.job_id, _Finish(JobStatus.CANCELLED))
            return
        if job.attempts > self.limits.max_attempts:
            await _set_final(
                conn,
                self.job_id,
                _Finish(
                    JobStatus.FAILED,
                    f"gave up after {job.attempts - 1} starts: the worker "
                    "stopped each time (killed, or out of memory?)",
                ),
            )
            return
        source = ChunkSource(self.url, self.job_id, job.chunk_count)
        try:
            await self._process(conn, job, source)
        except parsing.ImportFailure as failure:
            log.info("import %s failed: %s", self.job_id, failure)
            await _set_final(conn, self.job_id, _Finish(JobStatus.FAILED, str(failure)))
        except LostOwnership:
            log.warning("import %s moved on without this worker; stopping", self.job_id)
        finally:
            source.close()

    async def _layout(self, conn: AsyncConnection, job: Any, source: ChunkSource) -> parsing.Layout:
        if job.rows_total is not None:
            return parsing.Layout(
                encoding=job.encoding,
                delimiter=job.delimiter,
                columns=list(job.source_columns),
                rows=job.rows_total,
            )
        layout = await asyncio.to_thread(parsing.survey, source.open, job.format, job.encoding)
        async with conn.begin():
            await conn.execute(
                text(
                    "UPDATE import_jobs SET rows_total = :rows, encoding = :encoding, "
                    "delimiter = :delimiter, source_columns = CAST(:columns AS jsonb), "
                    "updated_at = now() WHERE id = :id"
                ),
                {
                    "rows": layout.rows,
                    "encoding": layout.encoding,
                    "delimiter": layout.delimiter,
                    "columns": _json(layout.columns),
                    "id": self.job_id,
                },
            )
        return layout

    async def _process(self, conn: AsyncConnection, job: Any, source: ChunkSource) -> None:
        layout = await self._layout(conn, job, source)
        if layout.rows > self.limits.max_rows:
            raise parsing.ImportFailure(
                f"the file has {layout.rows} data rows; the import limit is "
                f"{self.limits.max_rows} (CRM_IMPORT_MAX_ROWS)"
            )
        # Typed from here on (migration 0004's CHECKs admit no other values).
        file_format, mode = FileFormat(job.format), Mode(job.mode)
        plan = Plan(file_format, [(h, f) for h, f in job.mapping], layout.columns)
        spec = JobSpec(
            job_id=self.job_id,
            workspace_id=job.workspace_id,
            mode=mode,
            segment_ids=list(job.segment_ids),
            default_source=job.default_source or "import",
            mapped=plan.mapped,
        )
        writer = Writer(conn, spec)
        await writer.prepare()
        options = Options(
            default_source=spec.default_source,
            batch_rows=self.limits.batch_rows,
            create_only=mode == Mode.CREATE_ONLY,
        )
        checkpoint = resume_from = job.checkpoint

        def records() -> Iterator[Batch]:
            rows = parsing.rows(source.open, file_format, layout)
            return batches(rows, plan, options, skip=resume_from)

        async with aclosing(_threaded(records)) as stream:
            async for batch in stream:
                status = await self._write(writer, batch, checkpoint)
                checkpoint += batch.data_rows
                if status == JobStatus.CANCELLED:
                    async with conn.begin():
                        await conn.execute(
                            text("DELETE FROM import_chunks WHERE job_id = :id"),
                            {"id": self.job_id},
                        )
                    return
        async with conn.begin():
            done = await conn.execute(
                text(
                    "UPDATE import_jobs SET status = 'SUCCEEDED', finished_at = now(), "
                    "updated_at = now() WHERE id = :id AND status = 'RUNNING' "
                    "AND checkpoint = :checkpoint"
                ),
                {"id": self.job_id, "checkpoint": checkpoint},
            )
            if done.rowcount != 1:
                raise LostOwnership
            await conn.execute(
                text("DELETE FROM import_chunks WHERE job_id = :id"), {"id": self.job_id}
            )

    async def _write(self, writer: Writer, batch: Batch, checkpoint: int) -> str:
        for attempt in range(DEADLOCK_RETRIES + 1):
            try:
                async with writer.conn.begin():
                    outcome = await writer.write(batch, expected=checkpoint)
                metrics.IMPORT_ROWS.labels("imported").inc(outcome.created + outcome.updated)
                metrics.IMPORT_ROWS.labels("skipped").inc(outcome.skipped)
                metrics.IMPORT_ROWS.labels("failed").inc(outcome.failed)
                return outcome.status
            except DBAPIError as exc:
                state = getattr(exc.orig, "sqlstate", None)
                if state not in TRANSIENT_SQLSTATES or attempt == DEADLOCK_RETRIES:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")


def _json(value: Any) -> str:
    return json.dumps(value)


def _take(out: queue.Queue[tuple[str, Any]], stop: threading.Event) -> tuple[str, Any]:
    while not stop.is_set():
        try:
            return out.get(timeout=0.5)
        except queue.Empty:
            continue
    return ("done", None)


async def _threaded(make: Callable[[], Iterator[Batch]]) -> AsyncGenerator[Batch, None]:
    """Run a batch generator in a thread (parsing overlaps the database's work on the
    previous batch) with at most two batches in flight, so memory stays flat."""
    out: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in make():
                while not stop.is_set():
                    try:
                        out.put(("batch", item), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            out.put(("done", None))
        except BaseException as exc:  # handed to the consumer, raised there
            out.put(("error", exc))

    thread = threading.Thread(target=produce, name="import-parser", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = await asyncio.to_thread(_take, out, stop)
            if kind == "batch":
                yield item
            elif kind == "error":
                raise item
            else:
                return
    finally:
        stop.set()
        deadline = time.monotonic() + 30
        while thread.is_alive() and time.monotonic() < deadline:
            try:
                out.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.01)


def run(url: str, job_id: str, limits: ImportSettings) -> None:
    """A task's whole work on one job: attempts until it ends, waiting out database outages
    for up to RECONNECT_SECONDS (the sweeper takes over after that)."""
    deadline = time.monotonic() + RECONNECT_SECONDS
    delay = 0.5
    while True:
        try:
            asyncio.run(Run(url, job_id, limits)())
            return
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() > deadline:
                if is_transient(exc):
                    raise
                log.exception("import %s failed unexpectedly", job_id)
                _fail_unexpected(url, job_id)
                return
            log.warning(
                "import %s: database unavailable (%s); retrying in %.1fs", job_id, exc, delay
            )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _fail_unexpected(url: str, job_id: str) -> None:
    # The job's error is shown to API clients: never the exception's text, which can hold
    # SQL and row values. The worker's log has it, under the job id.
    reason = f"internal error: the import stopped unexpectedly (see the worker log for {job_id})"
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(
            "UPDATE import_jobs SET status = 'FAILED', error = %s, finished_at = now(), "
            "updated_at = now() WHERE id = %s AND status IN ('QUEUED', 'RUNNING')",
            (reason, job_id),
        )
