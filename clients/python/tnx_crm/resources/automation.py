"""Capture forms and triggers (webhooks, Slack, enrichment).
Each resource twice: `X` for `Client`, `AsyncX` for `AsyncClient`."""

# `timeout` is the gRPC deadline sent with the call, not a local asyncio timeout.
# ruff: noqa: ASYNC109

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from tnx.crm.v1 import (
    form_pb2,
    form_service_pb2,
    form_service_pb2_grpc,
    trigger_pb2,
    trigger_service_pb2,
    trigger_service_pb2_grpc,
)

from tnx_crm._common import build, mask, paged

if TYPE_CHECKING:
    from tnx_crm.aio import AsyncClient
    from tnx_crm.client import Client

Timeout = float | None


class Forms:
    def __init__(self, client: Client) -> None:
        self._c = client
        self.stub = form_service_pb2_grpc.FormServiceStub(client.channel)

    def create(
        self, form: form_pb2.Form | None = None, /, *, timeout: Timeout = None, **fields: Any
    ) -> form_pb2.Form:
        request = form_service_pb2.CreateFormRequest(form=build(form_pb2.Form, fields, form))
        return self._c.call(self.stub.CreateForm, request, timeout=timeout)

    def get(self, id: str, *, timeout: Timeout = None) -> form_pb2.Form:
        return self._c.call(
            self.stub.GetForm, form_service_pb2.GetFormRequest(id=id), timeout=timeout
        )

    def update(
        self,
        id: str,
        form: form_pb2.Form | None = None,
        /,
        *,
        update_mask: Iterable[str] | None = None,
        timeout: Timeout = None,
        **fields: Any,
    ) -> form_pb2.Form:
        body = build(form_pb2.Form, {**fields, "id": id}, form)
        request = form_service_pb2.UpdateFormRequest(form=body, update_mask=mask(update_mask))
        return self._c.call(self.stub.UpdateForm, request, timeout=timeout)

    def delete(self, id: str, *, timeout: Timeout = None) -> None:
        self._c.call(
            self.stub.DeleteForm, form_service_pb2.DeleteFormRequest(id=id), timeout=timeout
        )

    def list(
        self, *, page_size: int | None = None, timeout: Timeout = None
    ) -> Iterator[form_pb2.Form]:
        request = form_service_pb2.ListFormsRequest(limit=page_size or 0)
        return self._c.paginate(self.stub.ListForms, request, "forms", timeout=timeout)

    def embed(
        self, id: str, origin: str, *, ttl_days: int = 0, timeout: Timeout = None
    ) -> form_service_pb2.FormEmbed:
        request = form_service_pb2.GetFormEmbedRequest(id=id, origin=origin, ttl_days=ttl_days)
        return self._c.call(self.stub.GetFormEmbed, request, timeout=timeout)

    def submissions(
        self, id: str, *, page_size: int | None = None, timeout: Timeout = None
    ) -> Iterator[form_pb2.FormSubmission]:
        request = form_service_pb2.ListFormSubmissionsRequest(id=id, limit=page_size or 0)
        return self._c.paginate(
            self.stub.ListFormSubmissions, request, "submissions", timeout=timeout
        )


class AsyncForms:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client
        self.stub = form_service_pb2_grpc.FormServiceStub(client.channel)

    async def create(
        self, form: form_pb2.Form | None = None, /, *, timeout: Timeout = None, **fields: Any
    ) -> form_pb2.Form:
        request = form_service_pb2.CreateFormRequest(form=build(form_pb2.Form, fields, form))
        return await self._c.call(self.stub.CreateForm, request, timeout=timeout)

    async def get(self, id: str, *, timeout: Timeout = None) -> form_pb2.Form:
        return await self._c.call(
            self.stub.GetForm, form_service_pb2.GetFormRequest(id=id), timeout=timeout
        )

    async def update(
        self,
        id: str,
        form: form_pb2.Form | None = None,
        /,
        *,
        update_mask: Iterable[str] | None = None,
        timeout: Timeout = None,
        **fields: Any,
    ) -> form_pb2.Form:
        body = build(form_pb2.Form, {**fields, "id": id}, form)
        request = form_service_pb2.UpdateFormRequest(form=body, update_mask=mask(update_mask))
        return await self._c.call(self.stub.UpdateForm, request, timeout=timeout)

    async def delete(self, id: str, *, timeout: Timeout = None) -> None:
        await self._c.call(
            self.stub.DeleteForm, form_service_pb2.DeleteFormRequest(id=id), timeout=timeout
        )

    def list(
        self, *, page_size: int | None = None, timeout: Timeout = None
    ) -> AsyncIterator[form_pb2.Form]:
        request = form_service_pb2.ListFormsRequest(limit=page_size or 0)
        return self._c.paginate(self.stub.ListForms, request, "forms", timeout=timeout)

    async def embed(
        self, id: str, origin: str, *, ttl_days: int = 0, timeout: Timeout = None
    ) -> form_service_pb2.FormEmbed:
        request = form_service_pb2.GetFormEmbedRequest(id=id, origin=origin, ttl_days=ttl_days)
        return await self._c.call(self.stub.GetFormEmbed, request, timeout=timeout)

    def submissions(
        self, id: str, *, page_size: int | None = None, timeout: Timeout = None
    ) -> AsyncIterator[form_pb2.FormSubmission]:
        request = form_service_pb2.ListFormSubmissionsRequest(id=id, limit=page_size or 0)
        return self._c.paginate(
            self.stub.ListFormSubmissions, request, "submissions", timeout=timeout
        )


class Triggers:
    def __init__(self, client: Client) -> None:
        self._c = client
        self.stub = trigger_service_pb2_grpc.TriggerServiceStub(client.channel)

    def create(
        self,
        trigger: trigger_pb2.Trigger | None = None,
        /,
        *,
        timeout: Timeout = None,
        **fields: Any,
    ) -> trigger_pb2.Trigger:
        body = build(trigger_pb2.Trigger, fields, trigger)
        request = trigger_service_pb2.CreateTriggerRequest(trigger=body)
        return self._c.call(self.stub.CreateTrigger, request, timeout=timeout)

    def get(self, id: str, *, timeout: Timeout = None) -> trigger_pb2.Trigger:
        request = trigger_service_pb2.GetTriggerRequest(id=id)
        return self._c.call(self.stub.GetTrigger, request, timeout=timeout)

    def update(
        self,
        id: str,
        trigger: trigger_pb2.Trigger | None = None,
        /,
        *,
        update_mask: Iterable[str] | None = None,
        timeout: Timeout = None,
        **fields: Any,
    ) -> trigger_pb2.Trigger:
        body = build(trigger_pb2.Trigger, {**fields, "id": id}, trigger)
        request = trigger_service_pb2.UpdateTriggerRequest(
            trigger=body, update_mask=mask(update_mask)
        )
        return self._c.call(self.stub.UpdateTrigger, request, timeout=timeout)

    def delete(self, id: str, *, timeout: Timeout = None) -> None:
        request = trigger_service_pb2.DeleteTriggerRequest(id=id)
        self._c.call(self.stub.DeleteTrigger, request, timeout=timeout)

    def list(
        self, *, page_size: int | None = None, timeout: Timeout = None
    ) -> Iterator[trigger_pb2.Trigger]:
        request = trigger_service_pb2.ListTriggersRequest(limit=page_size or 0)
        return self._c.paginate(self.stub.ListTriggers, request, "triggers", timeout=timeout)

    def deliveries(
        self, id: str, *, page_size: int | None = None, timeout: Timeout = None, **filters: Any
    ) -> Iterator[trigger_pb2.Delivery]:
        request = build(
            trigger_service_pb2.ListTriggerDeliveriesRequest,
            paged(filters, page_size, id=id),
        )
        return self._c.paginate(
            self.stub.ListTriggerDeliveries, request, "deliveries", timeout=timeout
        )


class AsyncTriggers:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client
        self.stub = trigger_service_pb2_grpc.TriggerServiceStub(client.channel)

    async def create(
        self,
        trigger: trigger_pb2.Trigger | None = None,
        /,
        *,
        timeout: Timeout = None,
        **fields: Any,
    ) -> trigger_pb2.Trigger:
        body = build(trigger_pb2.Trigger, fields, trigger)
        request = trigger_service_pb2.CreateTriggerRequest(trigger=body)
        return await self._c.call(self.stub.CreateTrigger, request, timeout=timeout)

    async def get(self, id: str, *, timeout: Timeout = None) -> trigger_pb2.Trigger:
        request = trigger_service_pb2.GetTriggerRequest(id=id)
        return await self._c.call(self.stub.GetTrigger, request, timeout=timeout)

    async def update(
        self,
        id: str,
        trigger: trigger_pb2.Trigger | None = None,
        /,
        *,
        update_mask: Iterable[str] | None = None,
        timeout: Timeout = None,
        **fields: Any,
    ) -> trigger_pb2.Trigger:
        body = build(trigger_pb2.Trigger, {**fields, "id": id}, trigger)
        request = trigger_service_pb2.UpdateTriggerRequest(
            trigger=body, update_mask=mask(update_mask)
        )
        return await self._c.call(self.stub.UpdateTrigger, request, timeout=timeout)

    async def delete(self, id: str, *, timeout: Timeout = None) -> None:
        request = trigger_service_pb2.DeleteTriggerRequest(id=id)
        await self._c.call(self.stub.DeleteTrigger, request, timeout=timeout)

    def list(
        self, *, page_size: int | None = None, timeout: Timeout = None
    ) -> AsyncIterator[trigger_pb2.Trigger]:
        request = trigger_service_pb2.ListTriggersRequest(limit=page_size or 0)
        return self._c.paginate(self.stub.ListTriggers, request, "triggers", timeout=timeout)

    def deliveries(
        self, id: str, *, page_size: int | None = None, timeout: Timeout = None, **filters: Any
    ) -> AsyncIterator[trigger_pb2.Delivery]:
        request = build(
            trigger_service_pb2.ListTriggerDeliveriesRequest,
            paged(filters, page_size, id=id),
        )
        return self._c.paginate(
            self.stub.ListTriggerDeliveries, request, "deliveries", timeout=timeout
        )
