"""PreviewSegment: what a rule segment would hold now, without creating one."""

from __future__ import annotations

import grpc
import pytest
import requests
from tnx.crm.v1 import (
    company_pb2,
    company_service_pb2,
    company_service_pb2_grpc,
    lead_service_pb2,
    segment_pb2,
    segment_service_pb2_grpc,
)
from tnx.crm.v1 import segment_service_pb2 as sps

from tests.conftest import Workspace
from tests.segments.helpers import Leads, Segments, add_lead, all_of, any_of, cond, rule_segment
from tests.support import db
from tests.support.errors import details, json_details
from tests.support.rest import RestClient


@pytest.fixture
def segments(channel: grpc.Channel) -> Segments:
    return segment_service_pb2_grpc.SegmentServiceStub(channel)


def preview(
    segments: Segments, ws: Workspace, rules: segment_pb2.RuleGroup, sample_size: int = 0
) -> sps.PreviewSegmentResponse:
    reply: sps.PreviewSegmentResponse = segments.PreviewSegment(
        sps.PreviewSegmentRequest(rules=rules, sample_size=sample_size), metadata=ws.metadata
    )
    return reply


def test_preview_counts_matching_leads_and_samples_the_newest_without_creating_anything(
    segments: Segments, leads: Leads, workspace: Workspace, database_url: str
) -> None:
    made = [add_lead(leads, workspace, f"hot{i}@x.io", score=60 + i) for i in range(12)]
    add_lead(leads, workspace, "cold@x.io", score=5)
    before = db.snapshot(database_url, workspace.id)

    result = preview(segments, workspace, all_of(cond("score", "gte", 50)))

    assert result.estimated_size == 12
    assert [lead.id for lead in result.sample_leads] == [lead.id for lead in made[::-1][:10]]
    assert result.sample_leads[0].email == "hot11@x.io" and result.sample_leads[0].score == 71
    assert db.snapshot(database_url, workspace.id) == before


def test_preview_size_is_what_a_segment_with_the_same_rules_starts_with(
    segments: Segments, leads: Leads, workspace: Workspace, channel: grpc.Channel
) -> None:
    companies = company_service_pb2_grpc.CompanyServiceStub(channel)
    companies.CreateCompany(
        company_service_pb2.CreateCompanyRequest(
            company=company_pb2.Company(name="Acme", domain="acme.io", employee_count=120)
        ),
        metadata=workspace.metadata,
    )
    add_lead(leads, workspace, "vp@acme.io", title="VP Growth", custom={"country": "US"})
    add_lead(leads, workspace, "vp@tiny.io", title="VP Growth", custom={"country": "US"})
    archived = add_lead(leads, workspace, "gone@acme.io", title="VP Growth")
    leads.ArchiveLead(
        lead_service_pb2.ArchiveLeadRequest(id=archived.id), metadata=workspace.metadata
    )
    rules = all_of(
        cond("title", "contains", "vp growth"),
        any_of(
            cond("company.employee_count", "between", [50, 500]), cond("custom.country", "eq", "DE")
        ),
    )

    result = preview(segments, workspace, rules)
    segment = rule_segment(segments, workspace, "icp", rules)

    assert result.estimated_size == segment.member_count == 1
    assert [lead.email for lead in result.sample_leads] == ["vp@acme.io"]
    assert result.sample_leads[0].linked_company.name == "Acme"


def test_preview_sample_size_is_clamped_to_ten_and_a_negative_one_is_refused(
    segments: Segments, leads: Leads, workspace: Workspace
) -> None:
    for i in range(12):
        add_lead(leads, workspace, f"l{i}@x.io", source="webinar")
    rules = all_of(cond("source", "eq", "webinar"))
    assert len(preview(segments, workspace, rules, sample_size=3).sample_leads) == 3
    assert len(preview(segments, workspace, rules, sample_size=500).sample_leads) == 10
    with pytest.raises(grpc.RpcError) as caught:
        preview(segments, workspace, rules, sample_size=-1)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(caught.value)[1] == ["sample_size"]


def test_preview_sees_only_its_own_workspace(
    segments: Segments, leads: Leads, workspace: Workspace, other_workspace: Workspace
) -> None:
    add_lead(leads, other_workspace, "theirs@x.io", score=99)
    result = preview(segments, workspace, all_of(cond("score", "gte", 0)))
    assert result.estimated_size == 0 and list(result.sample_leads) == []


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        (all_of(cond("shoe_size", "eq", 3)), "rules.rules[0].condition"),
        (all_of(cond("score", "resembles", 3)), "rules.rules[0].condition"),
        (
            all_of(cond("title", "eq", "x"), any_of(cond("score", "gte", "high"))),
            "rules.rules[1].rules[0].condition",
        ),
        (all_of(cond("title", "eq", "x"), any_of()), "rules.rules[1]"),
        (all_of(), "rules"),
    ],
)
def test_bad_rules_are_invalid_naming_the_node(
    segments: Segments, workspace: Workspace, rules: segment_pb2.RuleGroup, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        preview(segments, workspace, rules)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(caught.value)[1] == [field]


def test_preview_over_rest(
    http: requests.Session, gateway_url: str, leads: Leads, workspace: Workspace
) -> None:
    rest = RestClient(http, gateway_url, workspace)
    lead = add_lead(leads, workspace, "cto@acme.io", title="CTO")
    add_lead(leads, workspace, "intern@acme.io", title="Intern")
    body = {"rules": {"rules": [{"condition": {"field": "title", "op": "eq", "value": "cto"}}]}}

    result = rest.ok("POST", "/api/v1/crm/lists:preview", json=body)

    assert result["estimated_size"] == "1"  # int64 travels as a string in JSON
    assert [item["id"] for item in result["sample_leads"]] == [lead.id]
    bad = {"rules": {"combinator": "OR", "rules": [{"condition": {"field": "titel", "op": "eq"}}]}}
    refused = rest.call("POST", "/api/v1/crm/lists:preview", json=bad)
    assert refused.status_code == 400
    assert json_details(refused.json()) == ("FILTER_INVALID", ["rules.rules[0].condition"])
    assert rest.call("GET", "/api/v1/crm/lists").json()["segments"] == []
