"""Segments (the REST API's `lists`): CRUD, members and exports.
Each resource twice: `X` for `Client`, `AsyncX` for `AsyncClient`."""

# `timeout` is the gRPC deadline sent with the call, not a local asyncio timeout.
# ruff: noqa: ASYNC109

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from tnx.crm.v1 import (
    lead_pb2,
    segment_pb2,
    segment_service_pb2,
    segment_service_pb2_grpc,
)

from tnx_crm import _common
from tnx_crm._common import FileArg, build, mask
from tnx_crm._requests import export_request

if TYPE_CHECKING:
    from tnx_crm.aio import AsyncClient
    from tnx_crm.client import Client

Timeout = float | None


class Lists:
    """Segments (the REST API's `lists`)."""

    def __init__(self, client: Client) -> None:
        self._c = client
        self.stub = segment_service_pb2_grpc.SegmentServiceStub(client.channel)

    def create(
        self,
        segment: segment_pb2.Segment | None = None,
        /,
        *,
        timeout: Timeout = None,
        **fields: Any,
    ) -> segment_pb2.Segment:
        """`name`, `description`, `membership` ("STATIC" or "RULE"), `rules` (a RuleGroup or
        a dict such as `{"combinator": "AND", "rules": [{"condition": {…}}]}`)."""
        body = build(segment_pb2.Segment, fields, segment)
        request = segment_service_pb2.CreateSegmentRequest(segment=body)
        return self._c.call(self.stub.CreateSegment, request, timeout=timeout)

    def get(self, id: str, *, timeout: Timeout = None) -> segment_pb2.Segment:
        request = segment_service_pb2.GetSegmentRequest(id=id)
        return self._c.call(self.stub.GetSegment, request, timeout=timeout)

    def update(
        self,
        id: str,
        segment: segment_pb2.Segment | None = None,
        /,
        *,
        update_mask: Iterable[str] | None = None,
        timeout: Timeout = None,
        **fields: Any,
    ) -> segment_pb2.Segment:
        body = build(segment_pb2.Segment, {**fields, "id": id}, segment)
        request = segment_service_pb2.UpdateSegmentRequest(
            segment=body, update_mask=mask(update_mask)
        )
        return self._c.call(self.stub.UpdateSegment, request, timeout=timeout)

    def delete(self, id: str, *, timeout: Timeout = None) -> None:
        request = segment_service_pb2.DeleteSegmentRequest(id=id)
        self._c.call(self.stub.DeleteSegment, request, timeout=timeout)

    def list(
        self, *, page_size: int | None = None, timeout: Timeout = None
    ) -> Iterator[segment_pb2.Segment]:
        request = segment_service_pb2.ListSegmentsRequest(limit=page_size or 0)
        return self._c.paginate(self.stub.ListSegments, request, "segments", timeout=timeout)

    def members(
        self, id: str, *, page_size: int | None = None, timeout: Timeout = None
    ) -> Iterator[lead_pb2.Lead]:
        request = segment_service_pb2.ListSegmentMembersRequest(id=id, limit=page_size or 0)
        return self._c.paginate(self.stub.ListSegmentMembers, request, "leads", timeout=timeout)

    def add(
        self, id: str, lead_ids: Iterable[str], *, timeout: Timeout = None
    ) -> segment_service_pb2.ChangeSegmentMembersResponse:
        request = segment_service_pb2.AddSegmentMembersRequest(id=id, lead_ids=lead_ids)
        return self._c.call(self.stub.AddSegmentMembers, request, timeout=timeout)

    def remove(
        self, id: str, lead_ids: Iterable[str], *, timeout: Timeout = None
    ) -> segment_service_pb2.ChangeSegmentMembersResponse:
        request = segment_service_pb2.RemoveSegmentMembersRequest(id=id, lead_ids=lead_ids)
        return self._c.call(self.stub.RemoveSegmentMembers, request, timeout=timeout)

    def export(
        self,
        id: str,
        file: FileArg,
        *,
        format: str | int = "CSV",
        fields: Iterable[str] = (),
        timeout: Timeout = None,
    ) -> int:
        """Writes the export (CSV, GOOGLE_ADS, META or LINKEDIN) to a path or a binary file
        object and returns the bytes written. A path is removed again if the export fails."""
        request = export_request(id, format, fields)
        sink = _common.ExportSink(file)
        ok = False
        try:
            for body in self._c.stream(self.stub.ExportSegment, request, timeout=timeout):
                sink.write(body.data)
            ok = True
        finally:
            sink.finish(ok)
        return sink.written


class AsyncLists:
    """Segments (the REST API's `lists`)."""

    def __init__(self, client: AsyncClient) -> None:
        self._c = client
        self.stub = segment_service_pb2_grpc.SegmentServiceStub(client.channel)

    async def create(
        self,
        segment: segment_pb2.Segment | None = None,
        /,
        *,
        timeout: Timeout = None,
        **fields: Any,
    ) -> segment_pb2.Segment:
        """`name`, `description`, `membership` ("STATIC" or "RULE"), `rules` (a RuleGroup or
        a dict such as `{"combinator": "AND", "rules": [{"condition": {…}}]}`)."""
        body = build(segment_pb2.Segment, fields, segment)
        request = segment_service_pb2.CreateSegmentRequest(segment=body)
        return await self._c.call(self.stub.CreateSegment, request, timeout=timeout)

    async def get(self, id: str, *, timeout: Timeout = None) -> segment_pb2.Segment:
        request = segment_service_pb2.GetSegmentRequest(id=id)
        return await self._c.call(self.stub.GetSegment, request, timeout=timeout)

    async def update(
        self,
        id: str,
        segment: segment_pb2.Segment | None = None,
        /,
        *,
        update_mask: Iterable[str] | None = None,
        timeout: Timeout = None,
        **fields: Any,
    ) -> segment_pb2.Segment:
        body = build(segment_pb2.Segment, {**fields, "id": id}, segment)
        request = segment_service_pb2.UpdateSegmentRequest(
            segment=body, update_mask=mask(update_mask)
        )
        return await self._c.call(self.stub.UpdateSegment, request, timeout=timeout)

    async def delete(self, id: str, *, timeout: Timeout = None) -> None:
        request = segment_service_pb2.DeleteSegmentRequest(id=id)
        await self._c.call(self.stub.DeleteSegment, request, timeout=timeout)

    def list(
        self, *, page_size: int | None = None, timeout: Timeout = None
    ) -> AsyncIterator[segment_pb2.Segment]:
        request = segment_service_pb2.ListSegmentsRequest(limit=page_size or 0)
        return self._c.paginate(self.stub.ListSegments, request, "segments", timeout=timeout)

    def members(
        self, id: str, *, page_size: int | None = None, timeout: Timeout = None
    ) -> AsyncIterator[lead_pb2.Lead]:
        request = segment_service_pb2.ListSegmentMembersRequest(id=id, limit=page_size or 0)
        return self._c.paginate(self.stub.ListSegmentMembers, request, "leads", timeout=timeout)

    async def add(
        self, id: str, lead_ids: Iterable[str], *, timeout: Timeout = None
    ) -> segment_service_pb2.ChangeSegmentMembersResponse:
        request = segment_service_pb2.AddSegmentMembersRequest(id=id, lead_ids=lead_ids)
        return await self._c.call(self.stub.AddSegmentMembers, request, timeout=timeout)

    async def remove(
        self, id: str, lead_ids: Iterable[str], *, timeout: Timeout = None
    ) -> segment_service_pb2.ChangeSegmentMembersResponse:
        request = segment_service_pb2.RemoveSegmentMembersRequest(id=id, lead_ids=lead_ids)
        return await self._c.call(self.stub.RemoveSegmentMembers, request, timeout=timeout)

    async def export(
        self,
        id: str,
        file: FileArg,
        *,
        format: str | int = "CSV",
        fields: Iterable[str] = (),
        timeout: Timeout = None,
    ) -> int:
        """Writes the export (CSV, GOOGLE_ADS, META or LINKEDIN) to a path or a binary file
        object and returns the bytes written. A path is removed again if the export fails."""
        request = export_request(id, format, fields)
        sink = _common.ExportSink(file)
        ok = False
        try:
            async for body in self._c.stream(self.stub.ExportSegment, request, timeout=timeout):
                sink.write(body.data)
            ok = True
        finally:
            sink.finish(ok)
        return sink.written
