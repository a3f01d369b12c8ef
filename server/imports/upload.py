"""Receiving an upload: the job first, then the bytes as chunks committed one by one, then
QUEUED and enqueued. The reply comes as soon as the last byte is stored.

Each chunk commits on its own (a long transaction would hold back the events feed) with
synchronous_commit off: the commit that makes the job QUEUED is synchronous and flushes the
WAL of every chunk before it, so a QUEUED job always has all its bytes, and a crash before
that leaves an UPLOADING job a retry replaces.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from server import ids
from server.db.engine import Database
from server.errors import FailedPrecondition, FieldViolation, InvalidArgument
from server.fields import MAX_TEXT
from server.imports import mapping, queries
from server.imports.enums import FileFormat, JobStatus, Mode
from server.imports.service import Job, to_job
from server.imports.settings import ImportSettings
from server.segments import service as segments

log = logging.getLogger("tnx.imports")

CHUNK_BYTES = 1024 * 1024
# Past the size limit the rest of the body is read and dropped (up to this much more) so
# an HTTP client that sends its whole body before reading hears the error.
DRAIN_LIMIT = 256 * 1024 * 1024
MAX_SEGMENTS = 20
MAX_REQUEST_ID = 200
DEFAULT_SOURCE = "import"
# Sets of the members: a header's plain string is found in them by value.
FORMATS = frozenset(FileFormat)
MODES = frozenset(Mode)
_CONTENT_TYPES = {
    "text/csv": FileFormat.CSV,
    "application/csv": FileFormat.CSV,
    "text/tab-separated-values": FileFormat.CSV,
    "text/plain": FileFormat.CSV,
    "application/json": FileFormat.JSON,
    "application/x-ndjson": FileFormat.NDJSON,
    "application/ndjson": FileFormat.NDJSON,
    "application/jsonl": FileFormat.NDJSON,
    "application/x-jsonlines": FileFormat.NDJSON,
}

Enqueue = Callable[[str], None]


@dataclass(frozen=True)
class UploadHeader:
    format: str = ""  # "" = from the content type
    mapping: list[str] = field(default_factory=list)
    mode: str = ""
    segment_ids: list[str] = field(default_factory=list)
    default_source: str = ""
    request_id: str = ""
    declared_size: int = 0
    encoding: str = ""
    content_type: str = ""


@dataclass(frozen=True)
class _Checked:
    format: FileFormat
    mode: Mode
    mapping: list[tuple[str, str]]
    segment_ids: list[str]
    default_source: str
    request_id: str | None
    encoding: str


def _media(content_type: str) -> tuple[str, str]:
    """(media type, charset) of a Content-Type value."""
    media, *params = (part.strip() for part in content_type.split(";"))
    charset = ""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"')
    return media.lower(), charset


def check_header(header: UploadHeader, limits: ImportSettings) -> _Checked:
    violations: list[FieldViolation] = []
    media, charset = _media(header.content_type)
    file_format = header.format or _CONTENT_TYPES.get(media, "")
    if file_format not in FORMATS:
        violations.append(
            FieldViolation(
                "format",
                "CSV, JSON or NDJSON (or a text/csv, application/json or "
                "application/x-ndjson body)",
            )
        )
    mode = header.mode or Mode.UPSERT
    if mode not in MODES:
        violations.append(FieldViolation("mode", "UPSERT, CREATE_ONLY or UPDATE_ONLY"))
    segment_ids = list(dict.fromkeys(s.strip() for s in header.segment_ids if s.strip()))
    if len(segment_ids) > MAX_SEGMENTS:
        violations.append(FieldViolation("segment_ids", f"at most {MAX_SEGMENTS}"))
    source = header.default_source.strip()
    if len(source) > MAX_TEXT:
        violations.append(FieldViolation("default_source", f"longer than {MAX_TEXT}"))
    if len(header.request_id) > MAX_REQUEST_ID:
        violations.append(FieldViolation("request_id", f"longer than {MAX_REQUEST_ID}"))
    if header.declared_size < 0:
        violations.append(FieldViolation("declared_size", "must not be negative"))
    encoding = header.encoding.strip() or charset
    if encoding:
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError:
            violations.append(FieldViolation("encoding", f"unknown encoding {encoding!r}"))
    if violations:
        raise InvalidArgument(
            message="; ".join(f"{v.field}: {v.description}" for v in violations),
            reason="IMPORT_INVALID",
            violations=violations,
        )
    if header.declared_size > limits.max_bytes:
        raise too_large(limits, "declared_size")
    return _Checked(
        format=FileFormat(file_format),
        mode=Mode(mode),
        mapping=mapping.parse_pairs(header.mapping),
        segment_ids=segment_ids,
        default_source=source,
        request_id=header.request_id or None,
        encoding=encoding,
    )


def too_large(limits: ImportSettings, field_name: str = "file") -> InvalidArgument:
    return InvalidArgument.on(
        field_name,
        f"the file is larger than the import limit of {limits.max_bytes} bytes "
        "(CRM_IMPORT_MAX_BYTES)",
        reason="IMPORT_TOO_LARGE",
    )


async def _check_segments(db: Database, workspace_id: str, segment_ids: list[str]) -> None:
    async with db.transaction() as conn:
        await segments.require_static_segments(
            conn, workspace_id=workspace_id, segment_ids=segment_ids, field_name="segment_ids"
        )


async def _open_job(
    db: Database, workspace_id: str, checked: _Checked, session: str
) -> tuple[Job | None, str]:
    """(an earlier job of the same request_id, or None) and the id of the job to fill."""
    values = {
        "id": ids.new_id("imp"),
        "workspace_id": workspace_id,
        "status": JobStatus.UPLOADING,
        "format": checked.format,
        "mode": checked.mode,
        "mapping": [list(pair) for pair in checked.mapping],
        "segment_ids": checked.segment_ids,
        "default_source": checked.default_source,
        "request_id": checked.request_id,
        "encoding": checked.encoding,
        "upload_session": session,
    }
    for _ in range(2):
        try:
            async with db.transaction() as conn:
                if checked.request_id:
                    earlier = await queries.job_by_request_id(
                        conn, workspace_id=workspace_id, request_id=checked.request_id
                    )
                    if earlier is not None and earlier.status != JobStatus.UPLOADING:
                        return to_job(earlier), earlier.id
                    if earlier is not None:
                        await queries.take_over_upload(conn, job_id=earlier.id, session=session)
                        return None, earlier.id
                row = await queries.insert_job(conn, values=values)
                return None, row.id
        except IntegrityError:
            continue  # a concurrent upload of the same request_id created it first
    raise FailedPrecondition(
        message="another upload with this request_id is starting; retry",
        reason="IMPORT_UPLOAD_CONFLICT",
    )


async def _store(db: Database, job_id: str, session: str, seq: int, data: bytes) -> None:
    async with db.transaction() as conn:
        await conn.execute(text("SET LOCAL synchronous_commit = off"))
        stored = await queries.store_chunk(conn, job_id=job_id, session=session, seq=seq, data=data)
    if not stored:
        raise _Superseded


class _Superseded(Exception):
    """The job stopped being this upload's: cancelled, or taken over by a retry."""


async def _discard(db: Database, job_id: str, session: str) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            text(
                "DELETE FROM import_jobs WHERE id = :id AND upload_session = :session "
                "AND status = 'UPLOADING'"
            ),
            {"id": job_id, "session": session},
        )


async def receive(
    db: Database,
    *,
    workspace_id: str,
    header: UploadHeader,
    data: AsyncIterator[bytes],
    limits: ImportSettings,
    enqueue: Enqueue,
) -> Job:
    """Store an upload and enqueue its job; returns the job (QUEUED), or the earlier job
    of the same request_id (the stream is then read and dropped)."""
    checked = check_header(header, limits)
    await _check_segments(db, workspace_id, checked.segment_ids)
    session = uuid.uuid4().hex
    earlier, job_id = await _open_job(db, workspace_id, checked, session)
    if earlier is not None:
        async for _ in data:
            pass
        return earlier
    try:
        size, chunks = await _receive_chunks(db, job_id, session, data, limits)
    except _Superseded:
        return await _after_superseded(db, workspace_id, job_id, data)
    except BaseException:
        await asyncio.shield(_discard(db, job_id, session))
        raise
    async with db.transaction() as conn:
        row = await queries.finish_upload(
            conn, job_id=job_id, session=session, size=size, chunks=chunks
        )
    if row is None:
        return await _after_superseded(db, workspace_id, job_id, data)
    try:
        await asyncio.to_thread(enqueue, job_id)
    except Exception:
        # The job is QUEUED in PostgreSQL; a worker's sweeper enqueues it again.
        log.warning("could not enqueue import %s; the sweeper will", job_id, exc_info=True)
    return to_job(row)


async def _after_superseded(
    db: Database, workspace_id: str, job_id: str, data: AsyncIterator[bytes]
) -> Job:
    async for _ in data:
        pass
    async with db.transaction() as conn:
        row = await queries.get_job(conn, workspace_id=workspace_id, job_id=job_id)
    if row is not None and row.status == JobStatus.CANCELLED:
        return to_job(row)
    raise FailedPrecondition(
        message="another upload with the same request_id took this one over",
        reason="IMPORT_UPLOAD_SUPERSEDED",
        metadata={"id": job_id},
    )


async def _receive_chunks(
    db: Database, job_id: str, session: str, data: AsyncIterator[bytes], limits: ImportSettings
) -> tuple[int, int]:
    """(bytes, chunks) stored. One chunk is written while the next is received."""
    size, seq = 0, 0
    buffer = bytearray()
    pending: asyncio.Task[None] | None = None

    async def flush(piece: bytes) -> None:
        nonlocal pending, seq
        if pending is not None:
            await pending
        pending = asyncio.create_task(_store(db, job_id, session, seq, piece))
        seq += 1

    try:
        async for piece in data:
            size += len(piece)
            if size > limits.max_bytes:
                await _drain(data, size, limits)
                raise too_large(limits)
            buffer += piece
            while len(buffer) >= CHUNK_BYTES:
                await flush(bytes(buffer[:CHUNK_BYTES]))
                del buffer[:CHUNK_BYTES]
        if buffer:
            await flush(bytes(buffer))
        if pending is not None:
            await pending
            pending = None
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
    if size == 0:
        raise InvalidArgument.on("file", "the file is empty", reason="IMPORT_EMPTY")
    return size, seq


async def _drain(data: AsyncIterator[bytes], size: int, limits: ImportSettings) -> None:
    async for piece in data:
        size += len(piece)
        if size > limits.max_bytes + DRAIN_LIMIT:
            return
