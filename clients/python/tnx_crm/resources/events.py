"""The events feed, activities and scores.
Each resource twice: `X` for `Client`, `AsyncX` for `AsyncClient`."""

# `timeout` is the gRPC deadline sent with the call, not a local asyncio timeout.
# ruff: noqa: ASYNC109

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from tnx.crm.v1 import (
    event_service_pb2,
    event_service_pb2_grpc,
    scoring_pb2,
    scoring_service_pb2,
    scoring_service_pb2_grpc,
)

from tnx_crm._common import build, mask, paged
from tnx_crm._requests import HEARTBEAT

if TYPE_CHECKING:
    from tnx_crm.aio import AsyncClient
    from tnx_crm.client import Client

Timeout = float | None
Watch = grpc.aio.UnaryStreamCall[event_service_pb2.WatchEventsRequest, event_service_pb2.Event]


class Events:
    def __init__(self, client: Client) -> None:
        self._c = client
        self.stub = event_service_pb2_grpc.EventServiceStub(client.channel)

    def list(
        self,
        after: str = "",
        *,
        page_size: int | None = None,
        timeout: Timeout = None,
        **filters: Any,
    ) -> Iterator[event_service_pb2.Event]:
        """Events after a cursor (`types`, `subject_id`, `segment_id`) up to the newest."""
        request = build(event_service_pb2.ListEventsRequest, paged(filters, page_size, after=after))
        return self._c.paginate(
            self.stub.ListEvents, request, "events", cursor_field="after", timeout=timeout
        )

    def watch(
        self,
        after: str = "",
        *,
        heartbeats: bool = False,
        reconnect_for: float = 60.0,
        **filters: Any,
    ) -> Generator[event_service_pb2.Event, None, None]:
        """Events as they commit, for as long as the caller iterates. After a dropped
        connection or a server restart the watch resumes after the last event (or heartbeat)
        it received: nothing is repeated or skipped. Heartbeats are yielded only when asked.
        Leaving the loop or closing the generator ends the call."""
        request = build(event_service_pb2.WatchEventsRequest, {**filters, "after": after})

        def open_stream() -> grpc.CallIterator[event_service_pb2.Event]:
            return self.stub.WatchEvents(request, metadata=self._c.metadata)

        for event in self._c.follow(open_stream, reconnect_for=reconnect_for, resume_on_end=True):
            request.after = event.cursor
            if heartbeats or event.type != HEARTBEAT:
                yield event


class AsyncEvents:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client
        self.stub = event_service_pb2_grpc.EventServiceStub(client.channel)

    def list(
        self,
        after: str = "",
        *,
        page_size: int | None = None,
        timeout: Timeout = None,
        **filters: Any,
    ) -> AsyncIterator[event_service_pb2.Event]:
        """Events after a cursor (`types`, `subject_id`, `segment_id`) up to the newest."""
        request = build(event_service_pb2.ListEventsRequest, paged(filters, page_size, after=after))
        return self._c.paginate(
            self.stub.ListEvents, request, "events", cursor_field="after", timeout=timeout
        )

    async def watch(
        self,
        after: str = "",
        *,
        heartbeats: bool = False,
        reconnect_for: float = 60.0,
        **filters: Any,
    ) -> AsyncGenerator[event_service_pb2.Event, None]:
        """Events as they commit, for as long as the caller iterates. After a dropped
        connection or a server restart the watch resumes after the last event (or heartbeat)
        it received: nothing is repeated or skipped. Heartbeats are yielded only when asked.
        Leaving the loop or closing the generator ends the call."""
        request = build(event_service_pb2.WatchEventsRequest, {**filters, "after": after})

        def open_stream() -> Watch:
            return self.stub.WatchEvents(request, metadata=self._c.metadata)

        async for event in self._c.follow(
            open_stream, reconnect_for=reconnect_for, resume_on_end=True
        ):
            request.after = event.cursor
            if heartbeats or event.type != HEARTBEAT:
                yield event


class Activities:
    def __init__(self, client: Client) -> None:
        self._c = client
        self.stub = scoring_service_pb2_grpc.ScoringServiceStub(client.channel)

    def record(
        self, lead_id: str, type: str, *, timeout: Timeout = None, **fields: Any
    ) -> scoring_pb2.Activity:
        """One activity (`occurred_at`, `properties`, `source`, `idempotency_key`)."""
        activity = build(scoring_pb2.Activity, {**fields, "type": type})
        request = scoring_service_pb2.CreateActivityRequest(lead_id=lead_id, activity=activity)
        return self._c.call(self.stub.CreateActivity, request, timeout=timeout)

    def batch(
        self,
        activities: Iterable[scoring_pb2.Activity | Mapping[str, Any]],
        *,
        timeout: Timeout = None,
    ) -> scoring_service_pb2.BatchCreateActivitiesResponse:
        """Up to 1,000 activities (each names `lead_id` or `email`); a result per item."""
        items = [
            a if isinstance(a, scoring_pb2.Activity) else build(scoring_pb2.Activity, a)
            for a in activities
        ]
        request = scoring_service_pb2.BatchCreateActivitiesRequest(activities=items)
        return self._c.call(self.stub.BatchCreateActivities, request, timeout=timeout)

    def list(
        self, lead_id: str, *, page_size: int | None = None, timeout: Timeout = None, **filters: Any
    ) -> Iterator[scoring_pb2.Activity]:
        request = build(
            scoring_service_pb2.ListActivitiesRequest,
            paged(filters, page_size, lead_id=lead_id),
        )
        return self._c.paginate(self.stub.ListActivities, request, "activities", timeout=timeout)


class AsyncActivities:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client
        self.stub = scoring_service_pb2_grpc.ScoringServiceStub(client.channel)

    async def record(
        self, lead_id: str, type: str, *, timeout: Timeout = None, **fields: Any
    ) -> scoring_pb2.Activity:
        """One activity (`occurred_at`, `properties`, `source`, `idempotency_key`)."""
        activity = build(scoring_pb2.Activity, {**fields, "type": type})
        request = scoring_service_pb2.CreateActivityRequest(lead_id=lead_id, activity=activity)
        return await self._c.call(self.stub.CreateActivity, request, timeout=timeout)

    async def batch(
        self,
        activities: Iterable[scoring_pb2.Activity | Mapping[str, Any]],
        *,
        timeout: Timeout = None,
    ) -> scoring_service_pb2.BatchCreateActivitiesResponse:
        """Up to 1,000 activities (each names `lead_id` or `email`); a result per item."""
        items = [
            a if isinstance(a, scoring_pb2.Activity) else build(scoring_pb2.Activity, a)
            for a in activities
        ]
        request = scoring_service_pb2.BatchCreateActivitiesRequest(activities=items)
        return await self._c.call(self.stub.BatchCreateActivities, request, timeout=timeout)

    def list(
        self, lead_id: str, *, page_size: int | None = None, timeout: Timeout = None, **filters: Any
    ) -> AsyncIterator[scoring_pb2.Activity]:
        request = build(
            scoring_service_pb2.ListActivitiesRequest,
            paged(filters, page_size, lead_id=lead_id),
        )
        return self._c.paginate(self.stub.ListActivities, request, "activities", timeout=timeout)


class Scoring:
    def __init__(self, client: Client) -> None:
        self._c = client
        self.stub = scoring_service_pb2_grpc.ScoringServiceStub(client.channel)

    def get_score(self, lead_id: str, *, timeout: Timeout = None) -> scoring_pb2.LeadScore:
        request = scoring_service_pb2.GetLeadScoreRequest(lead_id=lead_id)
        return self._c.call(self.stub.GetLeadScore, request, timeout=timeout)

    def get_model(self, *, timeout: Timeout = None) -> scoring_pb2.ScoringModel:
        request = scoring_service_pb2.GetScoringModelRequest()
        return self._c.call(self.stub.GetScoringModel, request, timeout=timeout)

    def update_model(
        self,
        model: scoring_pb2.ScoringModel | None = None,
        /,
        *,
        update_mask: Iterable[str] | None = None,
        timeout: Timeout = None,
        **fields: Any,
    ) -> scoring_pb2.ScoringModel:
        body = build(scoring_pb2.ScoringModel, fields, model)
        request = scoring_service_pb2.UpdateScoringModelRequest(
            model=body, update_mask=mask(update_mask)
        )
        return self._c.call(self.stub.UpdateScoringModel, request, timeout=timeout)


class AsyncScoring:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client
        self.stub = scoring_service_pb2_grpc.ScoringServiceStub(client.channel)

    async def get_score(self, lead_id: str, *, timeout: Timeout = None) -> scoring_pb2.LeadScore:
        request = scoring_service_pb2.GetLeadScoreRequest(lead_id=lead_id)
        return await self._c.call(self.stub.GetLeadScore, request, timeout=timeout)

    async def get_model(self, *, timeout: Timeout = None) -> scoring_pb2.ScoringModel:
        request = scoring_service_pb2.GetScoringModelRequest()
        return await self._c.call(self.stub.GetScoringModel, request, timeout=timeout)

    async def update_model(
        self,
        model: scoring_pb2.ScoringModel | None = None,
        /,
        *,
        update_mask: Iterable[str] | None = None,
        timeout: Timeout = None,
        **fields: Any,
    ) -> scoring_pb2.ScoringModel:
        body = build(scoring_pb2.ScoringModel, fields, model)
        request = scoring_service_pb2.UpdateScoringModelRequest(
            model=body, update_mask=mask(update_mask)
        )
        return await self._c.call(self.stub.UpdateScoringModel, request, timeout=timeout)
