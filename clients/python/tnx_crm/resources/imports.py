"""Bulk imports: streamed uploads, progress, row errors.
Each resource twice: `X` for `Client`, `AsyncX` for `AsyncClient`."""

# `timeout` is the gRPC deadline sent with the call, not a local asyncio timeout.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from typing import TYPE_CHECKING

from google.api import httpbody_pb2
from tnx.crm.v1 import (
    import_pb2,
    import_service_pb2,
    import_service_pb2_grpc,
)

from tnx_crm import _common
from tnx_crm._common import FileArg
from tnx_crm._requests import TERMINAL, upload_header

if TYPE_CHECKING:
    from tnx_crm.aio import AsyncClient
    from tnx_crm.client import Client

Timeout = float | None


class Imports:
    def __init__(self, client: Client) -> None:
        self._c = client
        self.stub = import_service_pb2_grpc.ImportServiceStub(client.channel)

    def upload(
        self,
        file: FileArg,
        *,
        format: str | int | None = None,
        mapping: Mapping[str, str] | Iterable[str] | None = None,
        mode: str | int = "UPSERT",
        segment_ids: Iterable[str] = (),
        default_source: str = "",
        request_id: str | None = None,
        encoding: str = "",
        progress: Callable[[int, int], object] | None = None,
        chunk_size: int = _common.CHUNK_BYTES,
        timeout: Timeout = None,
    ) -> import_pb2.ImportJob:
        """Streams a CSV, JSON or NDJSON file (a path or a binary file object) and returns the
        job as soon as the server has stored it. `progress(sent, total)` is called after each
        chunk (from gRPC's sending thread). `request_id` (default: a new one) makes a retried
        upload return the first job instead of importing twice."""
        source = _common.UploadSource(file, chunk_size)
        try:
            header = upload_header(
                source,
                format=format,
                mapping=mapping,
                mode=mode,
                segment_ids=segment_ids,
                default_source=default_source,
                request_id=request_id or uuid.uuid4().hex,
                encoding=encoding,
            )
        except Exception:
            source.close()
            raise

        def requests() -> Iterator[import_service_pb2.UploadImportRequest]:
            yield header
            for block in source.blocks():
                yield import_service_pb2.UploadImportRequest(file=httpbody_pb2.HttpBody(data=block))
                source.sent += len(block)
                if progress is not None:
                    progress(source.sent, source.total)

        try:
            return self._c.call_streaming(self.stub.UploadImport, requests(), timeout=timeout)
        except Exception:
            if source.error is not None:  # the file failed, not the server
                raise source.error from None
            raise
        finally:
            source.close()

    def get(self, id: str, *, timeout: Timeout = None) -> import_pb2.ImportJob:
        request = import_service_pb2.GetImportRequest(id=id)
        return self._c.call(self.stub.GetImport, request, timeout=timeout)

    def list(
        self, *, page_size: int | None = None, timeout: Timeout = None
    ) -> Iterator[import_pb2.ImportJob]:
        request = import_service_pb2.ListImportsRequest(limit=page_size or 0)
        return self._c.paginate(self.stub.ListImports, request, "imports", timeout=timeout)

    def errors(
        self, id: str, *, page_size: int | None = None, timeout: Timeout = None
    ) -> Iterator[import_pb2.ImportRowError]:
        request = import_service_pb2.ListImportErrorsRequest(id=id, limit=page_size or 0)
        return self._c.paginate(self.stub.ListImportErrors, request, "errors", timeout=timeout)

    def download_errors(self, id: str, file: FileArg, *, timeout: Timeout = None) -> int:
        """Writes the failed rows as uploaded, plus `import_error`, as CSV; returns the bytes."""
        request = import_service_pb2.DownloadImportErrorsRequest(id=id)
        sink = _common.ExportSink(file)
        ok = False
        try:
            for body in self._c.stream(self.stub.DownloadImportErrors, request, timeout=timeout):
                sink.write(body.data)
            ok = True
        finally:
            sink.finish(ok)
        return sink.written

    def cancel(self, id: str, *, timeout: Timeout = None) -> import_pb2.ImportJob:
        request = import_service_pb2.CancelImportRequest(id=id)
        return self._c.call(self.stub.CancelImport, request, timeout=timeout)

    def watch(
        self, id: str, *, reconnect_for: float = 60.0
    ) -> Generator[import_pb2.ImportJob, None, None]:
        """The job at each change until it ends (SUCCEEDED, FAILED or CANCELLED); the watch is
        opened again after a dropped connection."""
        request = import_service_pb2.WatchImportRequest(id=id)
        for job in self._c.follow(
            lambda: self.stub.WatchImport(request, metadata=self._c.metadata),
            reconnect_for=reconnect_for,
            resume_on_end=True,
        ):
            yield job
            if job.status in TERMINAL:
                return

    def wait(self, id: str) -> import_pb2.ImportJob:
        """The job once it has ended."""
        last = self.get(id)
        for job in self.watch(id):
            last = job
        return last


class AsyncImports:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client
        self.stub = import_service_pb2_grpc.ImportServiceStub(client.channel)

    async def upload(
        self,
        file: FileArg,
        *,
        format: str | int | None = None,
        mapping: Mapping[str, str] | Iterable[str] | None = None,
        mode: str | int = "UPSERT",
        segment_ids: Iterable[str] = (),
        default_source: str = "",
        request_id: str | None = None,
        encoding: str = "",
        progress: Callable[[int, int], object] | None = None,
        chunk_size: int = _common.CHUNK_BYTES,
        timeout: Timeout = None,
    ) -> import_pb2.ImportJob:
        """Streams a CSV, JSON or NDJSON file (a path or a binary file object) and returns the
        job as soon as the server has stored it. `progress(sent, total)` is called after each
        chunk (in the event loop). `request_id` (default: a new one) makes a retried
        upload return the first job instead of importing twice."""
        source = _common.UploadSource(file, chunk_size)
        try:
            header = upload_header(
                source,
                format=format,
                mapping=mapping,
                mode=mode,
                segment_ids=segment_ids,
                default_source=default_source,
                request_id=request_id or uuid.uuid4().hex,
                encoding=encoding,
            )
        except Exception:
            source.close()
            raise

        async def requests() -> AsyncIterator[import_service_pb2.UploadImportRequest]:
            yield header
            # File reads in a thread: the event loop keeps serving other calls meanwhile.
            while block := await asyncio.to_thread(source.read):
                yield import_service_pb2.UploadImportRequest(file=httpbody_pb2.HttpBody(data=block))
                source.sent += len(block)
                if progress is not None:
                    progress(source.sent, source.total)

        try:
            return await self._c.call_streaming(self.stub.UploadImport, requests(), timeout=timeout)
        except Exception:
            if source.error is not None:  # the file failed, not the server
                raise source.error from None
            raise
        finally:
            source.close()

    async def get(self, id: str, *, timeout: Timeout = None) -> import_pb2.ImportJob:
        request = import_service_pb2.GetImportRequest(id=id)
        return await self._c.call(self.stub.GetImport, request, timeout=timeout)

    def list(
        self, *, page_size: int | None = None, timeout: Timeout = None
    ) -> AsyncIterator[import_pb2.ImportJob]:
        request = import_service_pb2.ListImportsRequest(limit=page_size or 0)
        return self._c.paginate(self.stub.ListImports, request, "imports", timeout=timeout)

    def errors(
        self, id: str, *, page_size: int | None = None, timeout: Timeout = None
    ) -> AsyncIterator[import_pb2.ImportRowError]:
        request = import_service_pb2.ListImportErrorsRequest(id=id, limit=page_size or 0)
        return self._c.paginate(self.stub.ListImportErrors, request, "errors", timeout=timeout)

    async def download_errors(self, id: str, file: FileArg, *, timeout: Timeout = None) -> int:
        """Writes the failed rows as uploaded, plus `import_error`, as CSV; returns the bytes."""
        request = import_service_pb2.DownloadImportErrorsRequest(id=id)
        sink = _common.ExportSink(file)
        ok = False
        try:
            async for body in self._c.stream(
                self.stub.DownloadImportErrors, request, timeout=timeout
            ):
                sink.write(body.data)
            ok = True
        finally:
            sink.finish(ok)
        return sink.written

    async def cancel(self, id: str, *, timeout: Timeout = None) -> import_pb2.ImportJob:
        request = import_service_pb2.CancelImportRequest(id=id)
        return await self._c.call(self.stub.CancelImport, request, timeout=timeout)

    async def watch(
        self, id: str, *, reconnect_for: float = 60.0
    ) -> AsyncGenerator[import_pb2.ImportJob, None]:
        """The job at each change until it ends (SUCCEEDED, FAILED or CANCELLED); the watch is
        opened again after a dropped connection."""
        request = import_service_pb2.WatchImportRequest(id=id)
        async for job in self._c.follow(
            lambda: self.stub.WatchImport(request, metadata=self._c.metadata),
            reconnect_for=reconnect_for,
            resume_on_end=True,
        ):
            yield job
            if job.status in TERMINAL:
                return

    async def wait(self, id: str) -> import_pb2.ImportJob:
        """The job once it has ended."""
        last = await self.get(id)
        async for job in self.watch(id):
            last = job
        return last
