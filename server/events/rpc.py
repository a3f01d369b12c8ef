"""EventService over gRPC: proto ↔ domain translation only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import struct_pb2
from tnx.crm.v1 import event_service_pb2, event_service_pb2_grpc

from server.auth.service import Principal
from server.db.engine import Database
from server.events import service
from server.events import settings as watch_settings
from server.pagination import CursorCodec
from server.rpc.context import principal, workspace_id
from server.rpc.convert import timestamp

Context = grpc.aio.ServicerContext[Any, Any]
# Whether a caller's key still holds (server.auth.service.Authenticator.still_valid).
KeyCheck = Callable[[Principal], Awaitable[bool]]


def to_proto(event: service.Event | service.Heartbeat) -> event_service_pb2.Event:
    if isinstance(event, service.Heartbeat):
        return event_service_pb2.Event(type=service.HEARTBEAT_TYPE, cursor=event.cursor)
    payload = struct_pb2.Struct()
    payload.update(event.payload)
    return event_service_pb2.Event(
        id=event.id,
        cursor=event.cursor,
        type=event.type,
        subject_id=event.subject_id,
        payload=payload,
        created_at=timestamp(event.created_at),
    )


class EventServicer(event_service_pb2_grpc.EventServiceServicer):
    def __init__(
        self,
        db: Database,
        cursors: CursorCodec,
        *,
        key_check: KeyCheck,
        watch: watch_settings.WatchSettings | None = None,
    ) -> None:
        self.db, self.cursors, self.key_check = db, cursors, key_check
        self.watch = watch or watch_settings.load()

    async def ListEvents(
        self, request: event_service_pb2.ListEventsRequest, context: Context
    ) -> event_service_pb2.ListEventsResponse:
        page = await service.list_events(
            self.db,
            self.cursors,
            workspace_id=workspace_id(),
            after=request.after,
            types=list(request.types),
            subject_id=request.subject_id,
            segment_id=request.segment_id,
            limit=request.limit,
        )
        return event_service_pb2.ListEventsResponse(
            events=[to_proto(e) for e in page.events], next_cursor=page.next_cursor
        )

    async def WatchEvents(
        self, request: event_service_pb2.WatchEventsRequest, context: Context
    ) -> AsyncIterator[event_service_pb2.Event]:
        caller = principal()

        async def still_authorized() -> bool:
            return await self.key_check(caller)

        events = service.watch_events(
            self.db,
            self.cursors,
            workspace_id=caller.workspace_id,
            after=request.after,
            types=list(request.types),
            subject_id=request.subject_id,
            segment_id=request.segment_id,
            still_authorized=still_authorized,
            settings=self.watch,
        )
        async for event in events:
            yield to_proto(event)
