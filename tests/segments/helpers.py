"""Building rule trees and calling SegmentService in tests."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from tnx.crm.v1 import (
    lead_pb2,
    lead_service_pb2,
    lead_service_pb2_grpc,
    segment_pb2,
    segment_service_pb2_grpc,
)
from tnx.crm.v1 import segment_service_pb2 as sps

from tests.conftest import Workspace

Segments = segment_service_pb2_grpc.SegmentServiceStub
Leads = lead_service_pb2_grpc.LeadServiceStub


def cond(field: str, op: str, value: Any = None) -> segment_pb2.Rule:
    condition = segment_pb2.RuleCondition(field=field, op=op)
    if value is not None:
        json_format.ParseDict(value, condition.value)
    return segment_pb2.Rule(condition=condition)


def all_of(*rules: segment_pb2.Rule) -> segment_pb2.RuleGroup:
    return segment_pb2.RuleGroup(combinator=segment_pb2.RuleGroup.AND, rules=list(rules))


def any_of(*rules: segment_pb2.Rule) -> segment_pb2.Rule:
    return segment_pb2.Rule(
        group=segment_pb2.RuleGroup(combinator=segment_pb2.RuleGroup.OR, rules=list(rules))
    )


def rule_segment(
    stub: Segments, ws: Workspace, name: str, rules: segment_pb2.RuleGroup
) -> segment_pb2.Segment:
    segment = segment_pb2.Segment(name=name, membership=segment_pb2.Segment.RULE, rules=rules)
    reply: segment_pb2.Segment = stub.CreateSegment(
        sps.CreateSegmentRequest(segment=segment), metadata=ws.metadata
    )
    return reply


def static_segment(stub: Segments, ws: Workspace, name: str = "hand-picked") -> segment_pb2.Segment:
    segment = segment_pb2.Segment(name=name, membership=segment_pb2.Segment.STATIC)
    reply: segment_pb2.Segment = stub.CreateSegment(
        sps.CreateSegmentRequest(segment=segment), metadata=ws.metadata
    )
    return reply


def add_lead(stub: Leads, ws: Workspace, email: str, **fields: Any) -> lead_pb2.Lead:
    custom = fields.pop("custom", None)
    lead = lead_pb2.Lead(email=email, **fields)
    if custom:
        lead.custom_fields.update(custom)
    reply: lead_pb2.Lead = stub.CreateLead(
        lead_service_pb2.CreateLeadRequest(lead=lead), metadata=ws.metadata
    )
    return reply


def update_lead(stub: Leads, ws: Workspace, lead_id: str, **fields: Any) -> lead_pb2.Lead:
    """An update without a mask: every field given is set (custom fields merge)."""
    custom = fields.pop("custom", None)
    lead = lead_pb2.Lead(id=lead_id, **fields)
    if custom:
        lead.custom_fields.update(custom)
    reply: lead_pb2.Lead = stub.UpdateLead(
        lead_service_pb2.UpdateLeadRequest(lead=lead), metadata=ws.metadata
    )
    return reply


def member_ids(stub: Segments, ws: Workspace, segment_id: str) -> list[str]:
    found: list[str] = []
    cursor = ""
    while True:
        page = stub.ListSegmentMembers(
            sps.ListSegmentMembersRequest(id=segment_id, limit=1000, cursor=cursor),
            metadata=ws.metadata,
        )
        found.extend(lead.id for lead in page.leads)
        cursor = page.next_cursor
        if not cursor:
            return found


def get(stub: Segments, ws: Workspace, segment_id: str) -> segment_pb2.Segment:
    reply: segment_pb2.Segment = stub.GetSegment(
        sps.GetSegmentRequest(id=segment_id), metadata=ws.metadata
    )
    return reply
