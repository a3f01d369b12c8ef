"""ImportService over gRPC: proto ↔ domain translation only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.api import httpbody_pb2
from tnx.crm.v1 import import_pb2, import_service_pb2, import_service_pb2_grpc

from server.db.engine import Database
from server.errors import InvalidArgument
from server.imports import download, service, upload
from server.imports.enums import FileFormat, JobStatus, Mode
from server.imports.settings import ImportSettings
from server.pagination import CursorCodec
from server.rpc.context import workspace_id
from server.rpc.convert import timestamp

Context = grpc.aio.ServicerContext[Any, Any]
Job = import_pb2.ImportJob

_FORMATS = {Job.CSV: FileFormat.CSV, Job.JSON: FileFormat.JSON, Job.NDJSON: FileFormat.NDJSON}
_MODES = {
    Job.UPSERT: Mode.UPSERT,
    Job.CREATE_ONLY: Mode.CREATE_ONLY,
    Job.UPDATE_ONLY: Mode.UPDATE_ONLY,
}
_STATUSES = {
    JobStatus.UPLOADING: Job.UPLOADING,
    JobStatus.QUEUED: Job.QUEUED,
    JobStatus.RUNNING: Job.RUNNING,
    JobStatus.SUCCEEDED: Job.SUCCEEDED,
    JobStatus.FAILED: Job.FAILED,
    JobStatus.CANCELLED: Job.CANCELLED,
}
_FORMAT_TO_PROTO = {v: k for k, v in _FORMATS.items()}
_MODE_TO_PROTO = {v: k for k, v in _MODES.items()}


def to_proto(job: service.Job) -> import_pb2.ImportJob:
    return import_pb2.ImportJob(
        id=job.id,
        # service.Job holds the row's text: read as the enums so these lookups are typed.
        format=_FORMAT_TO_PROTO[FileFormat(job.format)],
        mode=_MODE_TO_PROTO[Mode(job.mode)],
        status=_STATUSES[JobStatus(job.status)],
        mapping=[f"{header}={target}" for header, target in job.mapping],
        segment_ids=job.segment_ids,
        default_source=job.default_source,
        request_id=job.request_id or "",
        size_bytes=job.size_bytes,
        rows_total=job.rows_total or 0,
        rows_processed=job.checkpoint,
        rows_created=job.rows_created,
        rows_updated=job.rows_updated,
        rows_skipped=job.rows_skipped,
        rows_failed=job.rows_failed,
        error=job.error,
        cancel_requested=job.cancel_requested,
        encoding=job.encoding,
        created_at=timestamp(job.created_at),
        uploaded_at=timestamp(job.uploaded_at),
        started_at=timestamp(job.started_at),
        finished_at=timestamp(job.finished_at),
        updated_at=timestamp(job.updated_at),
    )


def _header(first: import_service_pb2.UploadImportRequest) -> upload.UploadHeader:
    if first.format and first.format not in _FORMATS:
        raise InvalidArgument.on("format", "CSV, JSON or NDJSON", reason="IMPORT_INVALID")
    if first.mode and first.mode not in _MODES:
        raise InvalidArgument.on(
            "mode", "UPSERT, CREATE_ONLY or UPDATE_ONLY", reason="IMPORT_INVALID"
        )
    return upload.UploadHeader(
        format=_FORMATS.get(first.format, ""),
        mapping=list(first.mapping),
        mode=_MODES.get(first.mode, ""),
        segment_ids=list(first.segment_ids),
        default_source=first.default_source,
        request_id=first.request_id,
        declared_size=first.declared_size,
        encoding=first.encoding,
        content_type=first.file.content_type,
    )


class ImportServicer(import_service_pb2_grpc.ImportServiceServicer):
    def __init__(
        self,
        db: Database,
        cursors: CursorCodec,
        limits: ImportSettings,
        enqueue: Callable[[str], None],
    ) -> None:
        self.db = db
        self.cursors = cursors
        self.limits = limits
        self.enqueue = enqueue

    async def UploadImport(  # type: ignore[override]
        self,
        request_iterator: AsyncIterator[import_service_pb2.UploadImportRequest],
        context: Context,
    ) -> import_pb2.ImportJob:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            raise InvalidArgument.on("file", "the stream carried no message", reason="IMPORT_EMPTY")
        header = _header(first)

        async def data() -> AsyncIterator[bytes]:
            if first.file.data:
                yield first.file.data
            async for message in request_iterator:
                if message.file.data:
                    yield message.file.data

        job = await upload.receive(
            self.db,
            workspace_id=workspace_id(),
            header=header,
            data=data(),
            limits=self.limits,
            enqueue=self.enqueue,
        )
        return to_proto(job)

    async def GetImport(
        self, request: import_service_pb2.GetImportRequest, context: Context
    ) -> import_pb2.ImportJob:
        job = await service.get_job(self.db, workspace_id=workspace_id(), job_id=request.id)
        return to_proto(job)

    async def ListImports(
        self, request: import_service_pb2.ListImportsRequest, context: Context
    ) -> import_service_pb2.ListImportsResponse:
        page = await service.list_jobs(
            self.db,
            self.cursors,
            workspace_id=workspace_id(),
            limit=request.limit,
            cursor=request.cursor,
        )
        return import_service_pb2.ListImportsResponse(
            imports=[to_proto(j) for j in page.jobs], next_cursor=page.next_cursor
        )

    async def WatchImport(  # type: ignore[override]
        self, request: import_service_pb2.WatchImportRequest, context: Context
    ) -> AsyncIterator[import_pb2.ImportJob]:
        async for job in service.watch_job(self.db, workspace_id=workspace_id(), job_id=request.id):
            yield to_proto(job)

    async def ListImportErrors(
        self, request: import_service_pb2.ListImportErrorsRequest, context: Context
    ) -> import_service_pb2.ListImportErrorsResponse:
        page = await service.list_errors(
            self.db,
            self.cursors,
            workspace_id=workspace_id(),
            job_id=request.id,
            limit=request.limit,
            cursor=request.cursor,
        )
        return import_service_pb2.ListImportErrorsResponse(
            errors=[
                import_pb2.ImportRowError(
                    row=e.row, column=e.column, value=e.value, reason=e.reason
                )
                for e in page.errors
            ],
            next_cursor=page.next_cursor,
        )

    async def DownloadImportErrors(  # type: ignore[override]
        self, request: import_service_pb2.DownloadImportErrorsRequest, context: Context
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        first = True
        chunks = download.failed_rows_csv(self.db, workspace_id=workspace_id(), job_id=request.id)
        async for chunk in chunks:
            yield httpbody_pb2.HttpBody(
                content_type="text/csv; charset=utf-8" if first else "", data=chunk
            )
            first = False

    async def CancelImport(
        self, request: import_service_pb2.CancelImportRequest, context: Context
    ) -> import_pb2.ImportJob:
        job = await service.cancel_job(self.db, workspace_id=workspace_id(), job_id=request.id)
        return to_proto(job)
