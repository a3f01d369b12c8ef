"""The segment tools: create (with a dry run first), list, add members."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from tnx.crm.v1 import segment_service_pb2, segment_service_pb2_grpc

from tests.conftest import Workspace
from tests.mcp.helpers import call, fail, over_http, run
from tests.segments.helpers import Leads, add_lead

Segments = segment_service_pb2_grpc.SegmentServiceStub

ICP = {
    "combinator": "AND",
    "rules": [
        {"condition": {"field": "title", "op": "contains", "value": "growth"}},
        {"condition": {"field": "custom.employees", "op": "between", "value": [50, 500]}},
    ],
}


@pytest.fixture
def segments(channel: grpc.Channel) -> Segments:
    return segment_service_pb2_grpc.SegmentServiceStub(channel)


def test_a_dry_run_previews_the_rules_and_creates_nothing_then_the_segment_is_created(
    mcp_url: str, workspace: Workspace, leads: Leads, segments: Segments
) -> None:
    fits = [
        add_lead(leads, workspace, f"vp{i}@x.io", title="VP Growth", custom={"employees": 100})
        for i in range(3)
    ]
    add_lead(leads, workspace, "small@x.io", title="VP Growth", custom={"employees": 5})
    add_lead(leads, workspace, "cto@x.io", title="CTO", custom={"employees": 100})

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with over_http(mcp_url, workspace.key) as mcp:
            preview = await call(mcp, "create_segment", name="ICP", rules=ICP, dry_run=True)
            listed_before = await call(mcp, "list_segments")
            assert listed_before["segments"] == []
            created = await call(mcp, "create_segment", name="ICP", rules=ICP)
            listed = await call(mcp, "list_segments")
        return preview, created, listed

    preview, created, listed = run(scenario())
    assert preview["dry_run"] is True and preview["segment"] is None
    assert preview["estimated_size"] == 3
    assert [lead["id"] for lead in preview["sample_leads"]] == [lead.id for lead in fits[::-1]]
    segment = created["segment"]
    assert segment["membership"] == "RULE" and segment["member_count"] == 3
    assert segment["state"] == "READY" and segment["rules"] == ICP
    assert [s["id"] for s in listed["segments"]] == [segment["id"]]
    stored = segments.GetSegment(
        segment_service_pb2.GetSegmentRequest(id=segment["id"]), metadata=workspace.metadata
    )
    assert stored.member_count == 3


@pytest.mark.parametrize("dry_run", [True, False])
def test_bad_rules_are_tool_errors_naming_the_node(
    mcp_url: str, workspace: Workspace, dry_run: bool
) -> None:
    rules = {
        "rules": [
            {"condition": {"field": "title", "op": "eq", "value": "CTO"}},
            {
                "group": {
                    "combinator": "OR",
                    "rules": [{"condition": {"field": "score", "op": "gte", "value": "high"}}],
                }
            },
        ]
    }

    async def scenario() -> str:
        async with over_http(mcp_url, workspace.key) as mcp:
            return await fail(mcp, "create_segment", name="bad", rules=rules, dry_run=dry_run)

    message = run(scenario())
    assert "INVALID_ARGUMENT FILTER_INVALID" in message
    assert "\n- rules.rules[1].rules[0].condition: " in message


def test_an_unknown_field_is_refused_by_the_input_schema(
    mcp_url: str, workspace: Workspace
) -> None:
    rules = {"rules": [{"condition": {"field": "titel", "op": "eq", "value": "CTO"}}]}

    async def scenario() -> str:
        async with over_http(mcp_url, workspace.key) as mcp:
            return await fail(mcp, "create_segment", name="typo", rules=rules, dry_run=True)

    message = run(scenario())
    assert "rules.rules.0.condition.field" in message


def test_add_to_segment_adds_once_and_reports_unknown_ids(
    mcp_url: str, workspace: Workspace, leads: Leads
) -> None:
    first = add_lead(leads, workspace, "a@x.io")
    second = add_lead(leads, workspace, "b@x.io")

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], str]:
        async with over_http(mcp_url, workspace.key) as mcp:
            created = await call(mcp, "create_segment", name="hand-picked")
            segment_id = created["segment"]["id"]
            added = await call(
                mcp, "add_to_segment", segment_id=segment_id, lead_ids=[first.id, "lead_nope"]
            )
            again = await call(
                mcp, "add_to_segment", segment_id=segment_id, lead_ids=[first.id, second.id]
            )
            rule = await call(mcp, "create_segment", name="rule", rules=ICP)
            refused = await fail(
                mcp, "add_to_segment", segment_id=rule["segment"]["id"], lead_ids=[first.id]
            )
            members = await call(mcp, "search_leads", segment_id=segment_id)
        assert created["segment"]["membership"] == "STATIC"
        assert [lead["id"] for lead in members["leads"]] == [first.id, second.id]
        return added, again, refused

    added, again, refused = run(scenario())
    assert (added["added"], added["not_found"], added["member_count"]) == (
        [first.id],
        ["lead_nope"],
        1,
    )
    assert (again["added"], again["already_members"], again["member_count"]) == (
        [second.id],
        [first.id],
        2,
    )
    assert "FAILED_PRECONDITION SEGMENT_IS_RULE_BASED" in refused
