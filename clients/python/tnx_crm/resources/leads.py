"""Leads and companies.
Each resource twice: `X` for `Client`, `AsyncX` for `AsyncClient`."""

# `timeout` is the gRPC deadline sent with the call, not a local asyncio timeout.
# ruff: noqa: ASYNC109

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from tnx.crm.v1 import (
    company_pb2,
    company_service_pb2,
    company_service_pb2_grpc,
    lead_pb2,
    lead_service_pb2,
    lead_service_pb2_grpc,
)

from tnx_crm._common import build, mask, paged

if TYPE_CHECKING:
    from tnx_crm.aio import AsyncClient
    from tnx_crm.client import Client

Timeout = float | None


class Leads:
    def __init__(self, client: Client) -> None:
        self._c = client
        self.stub = lead_service_pb2_grpc.LeadServiceStub(client.channel)

    def create(
        self, lead: lead_pb2.Lead | None = None, /, *, timeout: Timeout = None, **fields: Any
    ) -> lead_pb2.Lead:
        request = lead_service_pb2.CreateLeadRequest(lead=build(lead_pb2.Lead, fields, lead))
        return self._c.call(self.stub.CreateLead, request, timeout=timeout)

    def get(self, id: str, *, timeout: Timeout = None) -> lead_pb2.Lead:
        request = lead_service_pb2.GetLeadRequest(id=id)
        return self._c.call(self.stub.GetLead, request, timeout=timeout)

    def update(
        self,
        id: str,
        lead: lead_pb2.Lead | None = None,
        /,
        *,
        update_mask: Iterable[str] | None = None,
        timeout: Timeout = None,
        **fields: Any,
    ) -> lead_pb2.Lead:
        body = build(lead_pb2.Lead, {**fields, "id": id}, lead)
        request = lead_service_pb2.UpdateLeadRequest(lead=body, update_mask=mask(update_mask))
        return self._c.call(self.stub.UpdateLead, request, timeout=timeout)

    def archive(self, id: str, *, timeout: Timeout = None) -> lead_pb2.Lead:
        request = lead_service_pb2.ArchiveLeadRequest(id=id)
        return self._c.call(self.stub.ArchiveLead, request, timeout=timeout)

    def unarchive(self, id: str, *, timeout: Timeout = None) -> lead_pb2.Lead:
        request = lead_service_pb2.UnarchiveLeadRequest(id=id)
        return self._c.call(self.stub.UnarchiveLead, request, timeout=timeout)

    def list(
        self, *, page_size: int | None = None, timeout: Timeout = None, **filters: Any
    ) -> Iterator[lead_pb2.Lead]:
        """Every matching lead (`filter`, `source`, `segment_id`, `score_min`, …), page by page."""
        request = build(lead_service_pb2.ListLeadsRequest, paged(filters, page_size))
        return self._c.paginate(self.stub.ListLeads, request, "leads", timeout=timeout)

    def search(
        self, query: str, *, page_size: int | None = None, timeout: Timeout = None, **fields: Any
    ) -> Iterator[lead_pb2.Lead]:
        request = build(lead_service_pb2.SearchLeadsRequest, paged(fields, page_size, query=query))
        return self._c.paginate(self.stub.SearchLeads, request, "leads", timeout=timeout)


class AsyncLeads:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client
        self.stub = lead_service_pb2_grpc.LeadServiceStub(client.channel)

    async def create(
        self, lead: lead_pb2.Lead | None = None, /, *, timeout: Timeout = None, **fields: Any
    ) -> lead_pb2.Lead:
        request = lead_service_pb2.CreateLeadRequest(lead=build(lead_pb2.Lead, fields, lead))
        return await self._c.call(self.stub.CreateLead, request, timeout=timeout)

    async def get(self, id: str, *, timeout: Timeout = None) -> lead_pb2.Lead:
        request = lead_service_pb2.GetLeadRequest(id=id)
        return await self._c.call(self.stub.GetLead, request, timeout=timeout)

    async def update(
        self,
        id: str,
        lead: lead_pb2.Lead | None = None,
        /,
        *,
        update_mask: Iterable[str] | None = None,
        timeout: Timeout = None,
        **fields: Any,
    ) -> lead_pb2.Lead:
        body = build(lead_pb2.Lead, {**fields, "id": id}, lead)
        request = lead_service_pb2.UpdateLeadRequest(lead=body, update_mask=mask(update_mask))
        return await self._c.call(self.stub.UpdateLead, request, timeout=timeout)

    async def archive(self, id: str, *, timeout: Timeout = None) -> lead_pb2.Lead:
        request = lead_service_pb2.ArchiveLeadRequest(id=id)
        return await self._c.call(self.stub.ArchiveLead, request, timeout=timeout)

    async def unarchive(self, id: str, *, timeout: Timeout = None) -> lead_pb2.Lead:
        request = lead_service_pb2.UnarchiveLeadRequest(id=id)
        return await self._c.call(self.stub.UnarchiveLead, request, timeout=timeout)

    def list(
        self, *, page_size: int | None = None, timeout: Timeout = None, **filters: Any
    ) -> AsyncIterator[lead_pb2.Lead]:
        """Every matching lead (`filter`, `source`, `segment_id`, `score_min`, …), page by page."""
        request = build(lead_service_pb2.ListLeadsRequest, paged(filters, page_size))
        return self._c.paginate(self.stub.ListLeads, request, "leads", timeout=timeout)

    def search(
        self, query: str, *, page_size: int | None = None, timeout: Timeout = None, **fields: Any
    ) -> AsyncIterator[lead_pb2.Lead]:
        request = build(lead_service_pb2.SearchLeadsRequest, paged(fields, page_size, query=query))
        return self._c.paginate(self.stub.SearchLeads, request, "leads", timeout=timeout)


class Companies:
    def __init__(self, client: Client) -> None:
        self._c = client
        self.stub = company_service_pb2_grpc.CompanyServiceStub(client.channel)

    def create(
        self,
        company: company_pb2.Company | None = None,
        /,
        *,
        timeout: Timeout = None,
        **fields: Any,
    ) -> company_pb2.Company:
        body = build(company_pb2.Company, fields, company)
        request = company_service_pb2.CreateCompanyRequest(company=body)
        return self._c.call(self.stub.CreateCompany, request, timeout=timeout)

    def get(self, id: str, *, timeout: Timeout = None) -> company_pb2.Company:
        request = company_service_pb2.GetCompanyRequest(id=id)
        return self._c.call(self.stub.GetCompany, request, timeout=timeout)

    def update(
        self,
        id: str,
        company: company_pb2.Company | None = None,
        /,
        *,
        update_mask: Iterable[str] | None = None,
        timeout: Timeout = None,
        **fields: Any,
    ) -> company_pb2.Company:
        body = build(company_pb2.Company, {**fields, "id": id}, company)
        request = company_service_pb2.UpdateCompanyRequest(
            company=body, update_mask=mask(update_mask)
        )
        return self._c.call(self.stub.UpdateCompany, request, timeout=timeout)

    def archive(
        self, id: str, *, force: bool = False, timeout: Timeout = None
    ) -> company_pb2.Company:
        request = company_service_pb2.ArchiveCompanyRequest(id=id, force=force)
        return self._c.call(self.stub.ArchiveCompany, request, timeout=timeout)

    def unarchive(self, id: str, *, timeout: Timeout = None) -> company_pb2.Company:
        request = company_service_pb2.UnarchiveCompanyRequest(id=id)
        return self._c.call(self.stub.UnarchiveCompany, request, timeout=timeout)

    def list(
        self, *, page_size: int | None = None, timeout: Timeout = None, **filters: Any
    ) -> Iterator[company_pb2.Company]:
        request = build(company_service_pb2.ListCompaniesRequest, paged(filters, page_size))
        return self._c.paginate(self.stub.ListCompanies, request, "companies", timeout=timeout)

    def tree(
        self, id: str, *, timeout: Timeout = None, **fields: Any
    ) -> company_service_pb2.GetCompanyTreeResponse:
        """One page of the tree (`max_depth`, `limit`, `cursor`, `include_archived`)."""
        request = build(company_service_pb2.GetCompanyTreeRequest, {**fields, "id": id})
        return self._c.call(self.stub.GetCompanyTree, request, timeout=timeout)


class AsyncCompanies:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client
        self.stub = company_service_pb2_grpc.CompanyServiceStub(client.channel)

    async def create(
        self,
        company: company_pb2.Company | None = None,
        /,
        *,
        timeout: Timeout = None,
        **fields: Any,
    ) -> company_pb2.Company:
        body = build(company_pb2.Company, fields, company)
        request = company_service_pb2.CreateCompanyRequest(company=body)
        return await self._c.call(self.stub.CreateCompany, request, timeout=timeout)

    async def get(self, id: str, *, timeout: Timeout = None) -> company_pb2.Company:
        request = company_service_pb2.GetCompanyRequest(id=id)
        return await self._c.call(self.stub.GetCompany, request, timeout=timeout)

    async def update(
        self,
        id: str,
        company: company_pb2.Company | None = None,
        /,
        *,
        update_mask: Iterable[str] | None = None,
        timeout: Timeout = None,
        **fields: Any,
    ) -> company_pb2.Company:
        body = build(company_pb2.Company, {**fields, "id": id}, company)
        request = company_service_pb2.UpdateCompanyRequest(
            company=body, update_mask=mask(update_mask)
        )
        return await self._c.call(self.stub.UpdateCompany, request, timeout=timeout)

    async def archive(
        self, id: str, *, force: bool = False, timeout: Timeout = None
    ) -> company_pb2.Company:
        request = company_service_pb2.ArchiveCompanyRequest(id=id, force=force)
        return await self._c.call(self.stub.ArchiveCompany, request, timeout=timeout)

    async def unarchive(self, id: str, *, timeout: Timeout = None) -> company_pb2.Company:
        request = company_service_pb2.UnarchiveCompanyRequest(id=id)
        return await self._c.call(self.stub.UnarchiveCompany, request, timeout=timeout)

    def list(
        self, *, page_size: int | None = None, timeout: Timeout = None, **filters: Any
    ) -> AsyncIterator[company_pb2.Company]:
        request = build(company_service_pb2.ListCompaniesRequest, paged(filters, page_size))
        return self._c.paginate(self.stub.ListCompanies, request, "companies", timeout=timeout)

    async def tree(
        self, id: str, *, timeout: Timeout = None, **fields: Any
    ) -> company_service_pb2.GetCompanyTreeResponse:
        """One page of the tree (`max_depth`, `limit`, `cursor`, `include_archived`)."""
        request = build(company_service_pb2.GetCompanyTreeRequest, {**fields, "id": id})
        return await self._c.call(self.stub.GetCompanyTree, request, timeout=timeout)
