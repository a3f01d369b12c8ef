"""LeadService over gRPC: proto ↔ domain translation only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from tnx.crm.v1 import lead_pb2, lead_service_pb2, lead_service_pb2_grpc

from server.companies import rpc as companies_rpc
from server.db.engine import Database
from server.leads import service
from server.pagination import CursorCodec
from server.rpc.context import workspace_id
from server.rpc.convert import (
    has_field,
    optional_datetime,
    struct_to_dict,
    timestamp,
    update_paths,
)

Context = grpc.aio.ServicerContext[Any, Any]

_STATUS_TO_PROTO = {
    "new": lead_pb2.LEAD_STATUS_NEW,
    "contacted": lead_pb2.LEAD_STATUS_CONTACTED,
    "qualified": lead_pb2.LEAD_STATUS_QUALIFIED,
    "customer": lead_pb2.LEAD_STATUS_CUSTOMER,
    "disqualified": lead_pb2.LEAD_STATUS_DISQUALIFIED,
}
_STATUS_FROM_PROTO = {v: k for k, v in _STATUS_TO_PROTO.items()}


def to_json(lead: service.Lead) -> dict[str, Any]:
    """The lead as REST shows it (what a webhook's `data.lead` carries)."""
    return json_format.MessageToDict(
        to_proto(lead),
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )


def to_proto(lead: service.Lead) -> lead_pb2.Lead:
    custom = struct_pb2.Struct()
    custom.update(lead.custom_fields)
    return lead_pb2.Lead(
        id=lead.id,
        email=lead.email,
        first_name=lead.first_name,
        last_name=lead.last_name,
        title=lead.title,
        phone=lead.phone,
        company=lead.company,
        company_id=lead.company_id or "",
        source=lead.source,
        score=lead.score,
        status=_STATUS_TO_PROTO.get(lead.status, lead_pb2.LEAD_STATUS_UNSPECIFIED),
        custom_fields=custom,
        segment_ids=lead.segment_ids,
        last_activity_at=timestamp(lead.last_activity_at),
        created_at=timestamp(lead.created_at),
        updated_at=timestamp(lead.updated_at),
        archived_at=timestamp(lead.archived_at),
        linked_company=(
            companies_rpc.to_proto(lead.linked_company) if lead.linked_company else None
        ),
    )


def from_proto(message: lead_pb2.Lead) -> service.LeadInput:
    return service.LeadInput(
        email=message.email,
        first_name=message.first_name,
        last_name=message.last_name,
        title=message.title,
        phone=message.phone,
        company=message.company,
        company_id=message.company_id,
        source=message.source,
        score=message.score,
        status=_STATUS_FROM_PROTO.get(message.status, ""),
        custom_fields=struct_to_dict(message.custom_fields),
        last_activity_at=optional_datetime(message, "last_activity_at"),
    )


def filters_from(request: Any) -> service.LeadFilters:
    """ListLeads and SearchLeads share the filter fields; search has a subset of them."""

    def optional(name: str) -> Any:
        return getattr(request, name) if has_field(request, name) else None

    def when(name: str) -> datetime | None:
        return optional_datetime(request, name)

    return service.LeadFilters(
        segment_id=request.segment_id,
        source=getattr(request, "source", ""),
        score_min=optional("score_min"),
        score_max=optional("score_max"),
        last_activity_after=when("last_activity_after"),
        last_activity_before=when("last_activity_before"),
        created_after=when("created_after"),
        created_before=when("created_before"),
        filter=request.filter,
        include_archived=request.include_archived,
        company_group_id=getattr(request, "company_group_id", ""),
    )


class LeadServicer(lead_service_pb2_grpc.LeadServiceServicer):
    def __init__(self, db: Database, cursors: CursorCodec) -> None:
        self.db = db
        self.cursors = cursors

    async def CreateLead(
        self, request: lead_service_pb2.CreateLeadRequest, context: Context
    ) -> lead_pb2.Lead:
        lead = await service.create_lead(
            self.db, workspace_id=workspace_id(), data=from_proto(request.lead)
        )
        return to_proto(lead)

    async def GetLead(
        self, request: lead_service_pb2.GetLeadRequest, context: Context
    ) -> lead_pb2.Lead:
        return to_proto(
            await service.get_lead(self.db, workspace_id=workspace_id(), lead_id=request.id)
        )

    async def UpdateLead(
        self, request: lead_service_pb2.UpdateLeadRequest, context: Context
    ) -> lead_pb2.Lead:
        paths, has_mask = update_paths(request.lead, request.update_mask)
        lead = await service.update_lead(
            self.db,
            workspace_id=workspace_id(),
            lead_id=request.lead.id,
            data=from_proto(request.lead),
            paths=paths,
            merge_custom=not has_mask,
        )
        return to_proto(lead)

    async def ArchiveLead(
        self, request: lead_service_pb2.ArchiveLeadRequest, context: Context
    ) -> lead_pb2.Lead:
        lead = await service.set_archived(
            self.db, workspace_id=workspace_id(), lead_id=request.id, archived=True
        )
        return to_proto(lead)

    async def UnarchiveLead(
        self, request: lead_service_pb2.UnarchiveLeadRequest, context: Context
    ) -> lead_pb2.Lead:
        lead = await service.set_archived(
            self.db, workspace_id=workspace_id(), lead_id=request.id, archived=False
        )
        return to_proto(lead)

    async def ListLeads(
        self, request: lead_service_pb2.ListLeadsRequest, context: Context
    ) -> lead_service_pb2.ListLeadsResponse:
        page = await service.list_leads(
            self.db,
            self.cursors,
            workspace_id=workspace_id(),
            filters=filters_from(request),
            limit=request.limit,
            cursor=request.cursor,
        )
        return lead_service_pb2.ListLeadsResponse(
            leads=[to_proto(lead) for lead in page.leads], next_cursor=page.next_cursor
        )

    async def SearchLeads(
        self, request: lead_service_pb2.SearchLeadsRequest, context: Context
    ) -> lead_service_pb2.SearchLeadsResponse:
        page = await service.search_leads(
            self.db,
            self.cursors,
            workspace_id=workspace_id(),
            query=request.query,
            filters=filters_from(request),
            limit=request.limit,
            cursor=request.cursor,
        )
        return lead_service_pb2.SearchLeadsResponse(
            leads=[to_proto(lead) for lead in page.leads], next_cursor=page.next_cursor
        )
