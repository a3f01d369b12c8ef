"""CompanyService over gRPC: proto ↔ domain translation only."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import struct_pb2
from tnx.crm.v1 import company_pb2, company_service_pb2, company_service_pb2_grpc

from server.companies import listing, service
from server.companies.validation import CompanyInput
from server.db.engine import Database
from server.pagination import CursorCodec
from server.rpc.context import workspace_id
from server.rpc.convert import struct_to_dict, timestamp, update_paths

Context = grpc.aio.ServicerContext[Any, Any]


def to_proto(company: service.Company) -> company_pb2.Company:
    custom = struct_pb2.Struct()
    custom.update(company.custom_fields)
    return company_pb2.Company(
        id=company.id,
        name=company.name,
        domain=company.domain or "",
        industry=company.industry,
        employee_count=company.employee_count,
        annual_revenue=company.annual_revenue,
        annual_revenue_currency=company.annual_revenue_currency,
        country=company.country,
        city=company.city,
        founded_year=company.founded_year,
        website=company.website,
        linkedin_url=company.linkedin_url,
        custom_fields=custom,
        parent_company_id=company.parent_company_id or "",
        created_at=timestamp(company.created_at),
        updated_at=timestamp(company.updated_at),
        archived_at=timestamp(company.archived_at),
    )


def from_proto(message: company_pb2.Company) -> CompanyInput:
    return CompanyInput(
        name=message.name,
        domain=message.domain,
        industry=message.industry,
        employee_count=_optional(message, "employee_count"),
        annual_revenue=_optional(message, "annual_revenue"),
        annual_revenue_currency=message.annual_revenue_currency,
        country=message.country,
        city=message.city,
        founded_year=_optional(message, "founded_year"),
        website=message.website,
        linkedin_url=message.linkedin_url,
        custom_fields=struct_to_dict(message.custom_fields),
        parent_company_id=message.parent_company_id,
    )


def _optional(request: Any, name: str) -> int | None:
    return int(getattr(request, name)) if request.HasField(name) else None


class CompanyServicer(company_service_pb2_grpc.CompanyServiceServicer):
    def __init__(self, db: Database, cursors: CursorCodec) -> None:
        self.db = db
        self.cursors = cursors

    async def CreateCompany(
        self, request: company_service_pb2.CreateCompanyRequest, context: Context
    ) -> company_pb2.Company:
        company = await service.create_company(
            self.db, workspace_id=workspace_id(), data=from_proto(request.company)
        )
        return to_proto(company)

    async def GetCompany(
        self, request: company_service_pb2.GetCompanyRequest, context: Context
    ) -> company_pb2.Company:
        company = await service.get_company(
            self.db, workspace_id=workspace_id(), company_id=request.id
        )
        return to_proto(company)

    async def UpdateCompany(
        self, request: company_service_pb2.UpdateCompanyRequest, context: Context
    ) -> company_pb2.Company:
        paths, has_mask = update_paths(request.company, request.update_mask)
        company = await service.update_company(
            self.db,
            workspace_id=workspace_id(),
            company_id=request.company.id,
            data=from_proto(request.company),
            paths=paths,
            merge_custom=not has_mask,
        )
        return to_proto(company)

    async def ArchiveCompany(
        self, request: company_service_pb2.ArchiveCompanyRequest, context: Context
    ) -> company_pb2.Company:
        company = await service.set_archived(
            self.db,
            workspace_id=workspace_id(),
            company_id=request.id,
            archived=True,
            force=request.force,
        )
        return to_proto(company)

    async def UnarchiveCompany(
        self, request: company_service_pb2.UnarchiveCompanyRequest, context: Context
    ) -> company_pb2.Company:
        company = await service.set_archived(
            self.db, workspace_id=workspace_id(), company_id=request.id, archived=False
        )
        return to_proto(company)

    async def ListCompanies(
        self, request: company_service_pb2.ListCompaniesRequest, context: Context
    ) -> company_service_pb2.ListCompaniesResponse:
        filters = listing.CompanyFilters(
            industry=request.industry,
            country=request.country,
            employee_count_min=_optional(request, "employee_count_min"),
            employee_count_max=_optional(request, "employee_count_max"),
            annual_revenue_min=_optional(request, "annual_revenue_min"),
            annual_revenue_max=_optional(request, "annual_revenue_max"),
            parent_company_id=request.parent_company_id,
            query=request.query,
            include_archived=request.include_archived,
        )
        page = await listing.list_companies(
            self.db,
            self.cursors,
            workspace_id=workspace_id(),
            filters=filters,
            limit=request.limit,
            cursor=request.cursor,
        )
        return company_service_pb2.ListCompaniesResponse(
            companies=[to_proto(c) for c in page.companies], next_cursor=page.next_cursor
        )

    async def GetCompanyTree(
        self, request: company_service_pb2.GetCompanyTreeRequest, context: Context
    ) -> company_service_pb2.GetCompanyTreeResponse:
        tree = await listing.company_tree(
            self.db,
            self.cursors,
            workspace_id=workspace_id(),
            company_id=request.id,
            max_depth=request.max_depth,
            limit=request.limit,
            cursor=request.cursor,
            include_archived=request.include_archived,
        )
        return company_service_pb2.GetCompanyTreeResponse(
            company=to_proto(tree.company),
            ancestors=[to_proto(c) for c in tree.ancestors],
            subsidiaries=[
                company_service_pb2.CompanyTreeNode(company=to_proto(n.company), depth=n.depth)
                for n in tree.subsidiaries
            ],
            next_cursor=tree.next_cursor,
        )
