"""SegmentService over gRPC: proto ↔ domain translation only."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import grpc
from google.api import httpbody_pb2
from google.protobuf import empty_pb2, json_format, struct_pb2
from tnx.crm.v1 import segment_pb2, segment_service_pb2, segment_service_pb2_grpc

from server.db.engine import Database
from server.filtering.ast import Condition, Group, Node, Value
from server.leads import rpc as lead_rpc
from server.leads import service as lead_service
from server.pagination import CursorCodec
from server.rpc.context import workspace_id
from server.rpc.convert import plain_json, timestamp
from server.segments import export, preview, service
from server.segments.enums import Membership, State

Context = grpc.aio.ServicerContext[Any, Any]
RuleGroup = segment_pb2.RuleGroup

_MEMBERSHIP_TO_PROTO = {
    Membership.STATIC: segment_pb2.Segment.STATIC,
    Membership.RULE: segment_pb2.Segment.RULE,
}
_MEMBERSHIP_FROM_PROTO = {v: k for k, v in _MEMBERSHIP_TO_PROTO.items()}
_STATE_TO_PROTO = {
    State.BUILDING: segment_pb2.Segment.BUILDING,
    State.READY: segment_pb2.Segment.READY,
}
_FORMATS = {
    segment_service_pb2.ExportSegmentRequest.CSV: "csv",
    segment_service_pb2.ExportSegmentRequest.GOOGLE_ADS: "google_ads",
    segment_service_pb2.ExportSegmentRequest.META: "meta",
    segment_service_pb2.ExportSegmentRequest.LINKEDIN: "linkedin",
}


def rules_from_proto(group: segment_pb2.RuleGroup) -> Group:
    kind: Literal["AND", "OR"] = "OR" if group.combinator == RuleGroup.OR else "AND"
    return Group(kind, tuple(_rule_from_proto(rule) for rule in group.rules))


def _rule_from_proto(rule: segment_pb2.Rule) -> Node:
    which = rule.WhichOneof("node")
    if which == "group":
        return rules_from_proto(rule.group)
    if which == "condition":
        condition = rule.condition
        value = json_format.MessageToDict(condition.value) if condition.HasField("value") else None
        return Condition(field=condition.field, op=condition.op, value=plain_json(value))
    return Group("AND", ())  # an empty node: reported as an empty group


def rules_to_proto(node: Node) -> segment_pb2.RuleGroup:
    group = node if isinstance(node, Group) else Group("AND", (node,))
    message = segment_pb2.RuleGroup(
        combinator=RuleGroup.OR if group.kind == "OR" else RuleGroup.AND
    )
    for child in group.children:
        if isinstance(child, Group):
            message.rules.add(group=rules_to_proto(child))
        elif isinstance(child, Condition):
            condition = segment_pb2.RuleCondition(field=child.field, op=child.op)
            if child.value is not None:
                condition.value.CopyFrom(_to_value(child.value))
            message.rules.add(condition=condition)
    return message


def _to_value(value: Value) -> struct_pb2.Value:
    message = struct_pb2.Value()
    json_format.Parse(json.dumps(value), message)
    return message


def to_proto(segment: service.Segment) -> segment_pb2.Segment:
    message = segment_pb2.Segment(
        id=segment.id,
        name=segment.name,
        description=segment.description,
        membership=_MEMBERSHIP_TO_PROTO[segment.membership],
        member_count=segment.member_count,
        state=_STATE_TO_PROTO[segment.state],
        created_at=timestamp(segment.created_at),
        updated_at=timestamp(segment.updated_at),
    )
    if segment.rules is not None:
        message.rules.CopyFrom(rules_to_proto(segment.rules))
    return message


def from_proto(message: segment_pb2.Segment) -> service.SegmentInput:
    return service.SegmentInput(
        name=message.name,
        description=message.description,
        membership=_MEMBERSHIP_FROM_PROTO.get(message.membership),
        rules=rules_from_proto(message.rules) if message.HasField("rules") else None,
    )


class SegmentServicer(segment_service_pb2_grpc.SegmentServiceServicer):
    def __init__(self, db: Database, cursors: CursorCodec, builder: service.SegmentBuilder) -> None:
        self.db, self.cursors, self.builder = db, cursors, builder

    async def CreateSegment(
        self, request: segment_service_pb2.CreateSegmentRequest, context: Context
    ) -> segment_pb2.Segment:
        segment = await service.create_segment(
            self.db, self.builder, workspace_id=workspace_id(), data=from_proto(request.segment)
        )
        return to_proto(segment)

    async def GetSegment(
        self, request: segment_service_pb2.GetSegmentRequest, context: Context
    ) -> segment_pb2.Segment:
        return to_proto(
            await service.get_segment(self.db, workspace_id=workspace_id(), segment_id=request.id)
        )

    async def UpdateSegment(
        self, request: segment_service_pb2.UpdateSegmentRequest, context: Context
    ) -> segment_pb2.Segment:
        paths = list(request.update_mask.paths) or [
            field.name
            for field, _ in request.segment.ListFields()
            if field.name in service.UPDATABLE
        ]
        segment = await service.update_segment(
            self.db,
            self.builder,
            workspace_id=workspace_id(),
            segment_id=request.segment.id,
            data=from_proto(request.segment),
            paths=paths,
        )
        return to_proto(segment)

    async def DeleteSegment(
        self, request: segment_service_pb2.DeleteSegmentRequest, context: Context
    ) -> empty_pb2.Empty:
        await service.delete_segment(self.db, workspace_id=workspace_id(), segment_id=request.id)
        return empty_pb2.Empty()

    async def ListSegments(
        self, request: segment_service_pb2.ListSegmentsRequest, context: Context
    ) -> segment_service_pb2.ListSegmentsResponse:
        page = await service.list_segments(
            self.db,
            self.cursors,
            workspace_id=workspace_id(),
            limit=request.limit,
            cursor=request.cursor,
        )
        return segment_service_pb2.ListSegmentsResponse(
            segments=[to_proto(s) for s in page.segments], next_cursor=page.next_cursor
        )

    async def _change(self, segment_id: str, lead_ids: list[str], add: bool) -> Any:
        result = await service.change_members(
            self.db, workspace_id=workspace_id(), segment_id=segment_id, lead_ids=lead_ids, add=add
        )
        return segment_service_pb2.ChangeSegmentMembersResponse(
            changed_lead_ids=result.changed,
            unchanged_lead_ids=result.unchanged,
            not_found_lead_ids=result.not_found,
            member_count=result.member_count,
        )

    async def AddSegmentMembers(
        self, request: segment_service_pb2.AddSegmentMembersRequest, context: Context
    ) -> segment_service_pb2.ChangeSegmentMembersResponse:
        response: segment_service_pb2.ChangeSegmentMembersResponse = await self._change(
            request.id, list(request.lead_ids), add=True
        )
        return response

    async def RemoveSegmentMembers(
        self, request: segment_service_pb2.RemoveSegmentMembersRequest, context: Context
    ) -> segment_service_pb2.ChangeSegmentMembersResponse:
        response: segment_service_pb2.ChangeSegmentMembersResponse = await self._change(
            request.id, list(request.lead_ids), add=False
        )
        return response

    async def ListSegmentMembers(
        self, request: segment_service_pb2.ListSegmentMembersRequest, context: Context
    ) -> segment_service_pb2.ListSegmentMembersResponse:
        filters = lead_service.LeadFilters(segment_id=request.id, include_archived=True)
        page = await lead_service.list_leads(
            self.db,
            self.cursors,
            workspace_id=workspace_id(),
            filters=filters,
            limit=request.limit,
            cursor=request.cursor,
        )
        return segment_service_pb2.ListSegmentMembersResponse(
            leads=[lead_rpc.to_proto(lead) for lead in page.leads], next_cursor=page.next_cursor
        )

    async def ExportSegment(
        self, request: segment_service_pb2.ExportSegmentRequest, context: Context
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        chunks = export.export_segment(
            self.db,
            workspace_id=workspace_id(),
            segment_id=request.id,
            export_format=_FORMATS.get(request.format, ""),
            fields=list(request.fields),
        )
        first = True
        async for chunk in chunks:
            yield httpbody_pb2.HttpBody(
                content_type="text/csv; charset=utf-8" if first else "", data=chunk
            )
            first = False

    async def PreviewSegment(
        self, request: segment_service_pb2.PreviewSegmentRequest, context: Context
    ) -> segment_service_pb2.PreviewSegmentResponse:
        result = await preview.preview_segment(
            self.db,
            workspace_id=workspace_id(),
            tree=rules_from_proto(request.rules),
            requested_sample=request.sample_size,
        )
        return segment_service_pb2.PreviewSegmentResponse(
            estimated_size=result.estimated_size,
            sample_leads=[lead_rpc.to_proto(lead) for lead in result.sample_leads],
        )
