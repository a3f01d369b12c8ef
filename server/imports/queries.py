"""SQL for import jobs, their chunks and row errors. Every job statement is scoped by
workspace_id where a client names the job."""

from __future__ import annotations

from typing import Any

from sqlalchemy import LargeBinary, and_, bindparam, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server.db.engine import AnyRow
from server.db.tables import import_chunks, import_jobs, import_row_errors
from server.imports.enums import JobStatus

UNFINISHED = (JobStatus.UPLOADING, JobStatus.QUEUED, JobStatus.RUNNING)
TERMINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


async def insert_job(conn: AsyncConnection, *, values: dict[str, Any]) -> AnyRow:
    return (
        await conn.execute(insert(import_jobs).values(**values).returning(*import_jobs.c))
    ).one()


async def get_job(conn: AsyncConnection, *, workspace_id: str, job_id: str) -> AnyRow | None:
    query = select(import_jobs).where(
        import_jobs.c.workspace_id == workspace_id, import_jobs.c.id == job_id
    )
    return (await conn.execute(query)).first()


async def job_by_request_id(
    conn: AsyncConnection, *, workspace_id: str, request_id: str
) -> AnyRow | None:
    query = select(import_jobs).where(
        import_jobs.c.workspace_id == workspace_id, import_jobs.c.request_id == request_id
    )
    return (await conn.execute(query.with_for_update())).first()


async def take_over_upload(conn: AsyncConnection, *, job_id: str, session: str) -> None:
    """A retried upload replaces an interrupted one: its chunks go, its session ends."""
    await conn.execute(delete(import_chunks).where(import_chunks.c.job_id == job_id))
    await conn.execute(
        update(import_jobs)
        .where(import_jobs.c.id == job_id)
        .values(upload_session=session, size_bytes=0, chunk_count=0, updated_at=func.now())
    )


_STORE_CHUNK = text(
    """
    WITH owner AS (
        UPDATE import_jobs SET updated_at = now()
        WHERE id = :job_id AND upload_session = :session AND status = 'UPLOADING'
        RETURNING id
    )
    INSERT INTO import_chunks (job_id, seq, data) SELECT id, :seq, :data FROM owner
    """
).bindparams(bindparam("data", type_=LargeBinary))


async def store_chunk(
    conn: AsyncConnection, *, job_id: str, session: str, seq: int, data: bytes
) -> bool:
    """Store one chunk if this upload still owns the job; False when it does not (the job
    was cancelled, or a retry with the same request_id took it over)."""
    stored = await conn.execute(
        _STORE_CHUNK, {"job_id": job_id, "session": session, "seq": seq, "data": data}
    )
    return stored.rowcount == 1


async def finish_upload(
    conn: AsyncConnection, *, job_id: str, session: str, size: int, chunks: int
) -> AnyRow | None:
    statement = (
        update(import_jobs)
        .where(
            import_jobs.c.id == job_id,
            import_jobs.c.upload_session == session,
            import_jobs.c.status == JobStatus.UPLOADING,
        )
        .values(
            status=JobStatus.QUEUED,
            size_bytes=size,
            chunk_count=chunks,
            uploaded_at=func.now(),
            enqueued_at=func.now(),
            updated_at=func.now(),
        )
        .returning(*import_jobs.c)
    )
    return (await conn.execute(statement)).first()


async def list_page(
    conn: AsyncConnection, *, workspace_id: str, before_id: str | None, limit: int
) -> list[AnyRow]:
    conditions = [import_jobs.c.workspace_id == workspace_id]
    if before_id is not None:
        conditions.append(import_jobs.c.id < before_id)
    query = (select(import_jobs).where(and_(*conditions)).order_by(import_jobs.c.id.desc())).limit(
        limit + 1
    )
    return list((await conn.execute(query)).all())


async def request_cancel(conn: AsyncConnection, *, workspace_id: str, job_id: str) -> AnyRow | None:
    """Ask a job to stop. One that no worker holds (uploading or queued) stops here and now;
    a running one stops at its next batch boundary."""
    statement = (
        update(import_jobs)
        .where(
            import_jobs.c.workspace_id == workspace_id,
            import_jobs.c.id == job_id,
            import_jobs.c.status.in_(UNFINISHED),
        )
        .values(
            cancel_requested=True,
            status=text("CASE WHEN status = 'RUNNING' THEN status ELSE 'CANCELLED' END"),
            finished_at=text("CASE WHEN status = 'RUNNING' THEN NULL ELSE now() END"),
            updated_at=func.now(),
        )
        .returning(*import_jobs.c)
    )
    return (await conn.execute(statement)).first()


async def delete_chunks(conn: AsyncConnection, *, job_id: str) -> None:
    await conn.execute(delete(import_chunks).where(import_chunks.c.job_id == job_id))


async def errors_page(
    conn: AsyncConnection, *, job_id: str, after: tuple[int, int] | None, limit: int
) -> list[AnyRow]:
    columns = [
        import_row_errors.c.row_number,
        import_row_errors.c.position,
        import_row_errors.c.column_name,
        import_row_errors.c.value,
        import_row_errors.c.reason,
    ]
    query = select(*columns).where(import_row_errors.c.job_id == job_id)
    if after is not None:
        query = query.where(
            text("(row_number, position) > (:after_row, :after_position)").bindparams(
                after_row=after[0], after_position=after[1]
            )
        )
    query = query.order_by(import_row_errors.c.row_number, import_row_errors.c.position)
    return list((await conn.execute(query.limit(limit + 1))).all())


FAILED_ROWS_SQL = text(
    """
    SELECT row_number, (array_agg(raw ORDER BY position))[1] AS raw,
           string_agg(CASE WHEN column_name = '' THEN reason
                           ELSE column_name || ': ' || reason END, '; ' ORDER BY position)
               AS reasons
    FROM import_row_errors WHERE job_id = :job_id
    GROUP BY row_number ORDER BY row_number
    """
)
