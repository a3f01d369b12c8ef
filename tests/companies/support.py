"""Small helpers the company tests share: create companies and leads, read what came back."""

from __future__ import annotations

from typing import Any

import psycopg
from google.protobuf import field_mask_pb2
from tnx.crm.v1 import (
    company_pb2,
    company_service_pb2,
    company_service_pb2_grpc,
    lead_pb2,
    lead_service_pb2,
    lead_service_pb2_grpc,
)

from server.db.url import libpq_url
from tests.conftest import Workspace

CompanyStub = company_service_pb2_grpc.CompanyServiceStub
LeadStub = lead_service_pb2_grpc.LeadServiceStub


def create(stub: CompanyStub, ws: Workspace, **fields: Any) -> company_pb2.Company:
    request = company_service_pb2.CreateCompanyRequest(company=company_pb2.Company(**fields))
    reply: company_pb2.Company = stub.CreateCompany(request, metadata=ws.metadata)
    return reply


def update(
    stub: CompanyStub, ws: Workspace, company_id: str, paths: list[str], **fields: Any
) -> company_pb2.Company:
    request = company_service_pb2.UpdateCompanyRequest(
        company=company_pb2.Company(id=company_id, **fields),
        update_mask=field_mask_pb2.FieldMask(paths=paths),
    )
    reply: company_pb2.Company = stub.UpdateCompany(request, metadata=ws.metadata)
    return reply


def set_parent(
    stub: CompanyStub, ws: Workspace, company_id: str, parent_id: str
) -> company_pb2.Company:
    return update(stub, ws, company_id, ["parent_company_id"], parent_company_id=parent_id)


def chain(stub: CompanyStub, ws: Workspace, *names: str) -> list[company_pb2.Company]:
    """Companies each the parent of the next: chain("A", "B") makes B a subsidiary of A."""
    made: list[company_pb2.Company] = []
    for name in names:
        parent = made[-1].id if made else ""
        made.append(create(stub, ws, name=name, parent_company_id=parent))
    return made


def tree(
    stub: CompanyStub, ws: Workspace, company_id: str, **options: Any
) -> company_service_pb2.GetCompanyTreeResponse:
    request = company_service_pb2.GetCompanyTreeRequest(id=company_id, **options)
    reply: company_service_pb2.GetCompanyTreeResponse = stub.GetCompanyTree(
        request, metadata=ws.metadata
    )
    return reply


def list_names(stub: CompanyStub, ws: Workspace, **filters: Any) -> list[str]:
    request = company_service_pb2.ListCompaniesRequest(**filters)
    reply = stub.ListCompanies(request, metadata=ws.metadata)
    return [c.name for c in reply.companies]


def create_lead(stub: LeadStub, ws: Workspace, **fields: Any) -> lead_pb2.Lead:
    request = lead_service_pb2.CreateLeadRequest(lead=lead_pb2.Lead(**fields))
    reply: lead_pb2.Lead = stub.CreateLead(request, metadata=ws.metadata)
    return reply


def lead_emails(stub: LeadStub, ws: Workspace, **filters: Any) -> list[str]:
    reply = stub.ListLeads(lead_service_pb2.ListLeadsRequest(**filters), metadata=ws.metadata)
    return [lead.email for lead in reply.leads]


def insert_rows(database_url: str, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """Seed many rows straight into the database (faster than one RPC each)."""
    with psycopg.connect(libpq_url(database_url)) as conn, conn.cursor() as cursor:
        cursor.executemany(sql, rows)
