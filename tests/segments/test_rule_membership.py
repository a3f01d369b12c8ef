"""Rule segments stay current on every write, with an event for every entry and exit."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from tnx.crm.v1 import (
    company_service_pb2,
    company_service_pb2_grpc,
    lead_pb2,
    lead_service_pb2,
    segment_pb2,
    segment_service_pb2_grpc,
)
from tnx.crm.v1 import segment_service_pb2 as sps

from tests.companies import support as company_support
from tests.conftest import Workspace
from tests.segments.helpers import (
    Leads,
    Segments,
    add_lead,
    all_of,
    any_of,
    cond,
    get,
    member_ids,
    rule_segment,
    static_segment,
    update_lead,
)
from tests.support import db
from tests.support.errors import details


@pytest.fixture
def segments(channel: grpc.Channel) -> Segments:
    return segment_service_pb2_grpc.SegmentServiceStub(channel)


def test_rule_segment_gains_lead_when_score_crosses_50(
    segments: Segments, leads: Leads, workspace: Workspace
) -> None:
    hot = rule_segment(segments, workspace, "hot", all_of(cond("score", "gte", 50)))
    lead = add_lead(leads, workspace, "warm@example.com", score=40)
    assert member_ids(segments, workspace, hot.id) == []
    updated = update_lead(leads, workspace, lead.id, score=55)
    assert updated.segment_ids == [hot.id]
    assert member_ids(segments, workspace, hot.id) == [lead.id]
    assert get(segments, workspace, hot.id).member_count == 1


def test_lead_leaves_rule_segment_when_it_stops_matching_and_when_archived(
    segments: Segments, leads: Leads, workspace: Workspace
) -> None:
    saas = rule_segment(segments, workspace, "saas", all_of(cond("custom.industry", "eq", "SaaS")))
    first = add_lead(leads, workspace, "a@saas.io", custom={"industry": "SaaS"})
    second = add_lead(leads, workspace, "b@saas.io", custom={"industry": "saas"})
    assert sorted(member_ids(segments, workspace, saas.id)) == sorted([first.id, second.id])
    update_lead(leads, workspace, first.id, custom={"industry": "Retail"})
    leads.ArchiveLead(
        lead_service_pb2.ArchiveLeadRequest(id=second.id), metadata=workspace.metadata
    )
    assert member_ids(segments, workspace, saas.id) == []
    assert get(segments, workspace, saas.id).member_count == 0
    leads.UnarchiveLead(
        lead_service_pb2.UnarchiveLeadRequest(id=second.id), metadata=workspace.metadata
    )
    assert member_ids(segments, workspace, saas.id) == [second.id]


def test_new_rule_segment_includes_existing_leads_and_is_ready(
    segments: Segments, leads: Leads, workspace: Workspace
) -> None:
    vp = add_lead(
        leads,
        workspace,
        "vp@growth.io",
        title="VP Growth",
        custom={"country": "US", "employees": 120},
    )
    add_lead(
        leads, workspace, "cto@growth.io", title="CTO", custom={"country": "US", "employees": 120}
    )
    add_lead(
        leads, workspace, "vp@tiny.io", title="VP Growth", custom={"country": "US", "employees": 5}
    )
    icp = rule_segment(
        segments,
        workspace,
        "ICP - VP Growth, US, 50-500 FTE",
        all_of(
            cond("title", "contains", "vp growth"),
            cond("custom.country", "eq", "US"),
            cond("custom.employees", "between", [50, 500]),
        ),
    )
    assert icp.state == segment_pb2.Segment.READY
    assert icp.member_count == 1
    assert member_ids(segments, workspace, icp.id) == [vp.id]


def test_nested_groups_and_negative_operators(
    segments: Segments, leads: Leads, workspace: Workspace
) -> None:
    a = add_lead(leads, workspace, "a@x.io", source="webinar", score=10)
    b = add_lead(leads, workspace, "b@y.io", source="import", score=90)
    add_lead(leads, workspace, "c@z.io", source="import", score=10, custom={"optout": True})
    segment = rule_segment(
        segments,
        workspace,
        "mix",
        all_of(
            any_of(cond("source", "eq", "webinar"), cond("score", "gt", 50)),
            cond("custom.optout", "not_exists"),
            cond("email_domain", "not_in", ["spam.io"]),
        ),
    )
    assert sorted(member_ids(segments, workspace, segment.id)) == sorted([a.id, b.id])


def test_editing_the_rule_rebuilds_membership(
    segments: Segments, leads: Leads, workspace: Workspace
) -> None:
    low = add_lead(leads, workspace, "low@x.io", score=10)
    high = add_lead(leads, workspace, "high@x.io", score=90)
    segment = rule_segment(segments, workspace, "s", all_of(cond("score", "lt", 50)))
    assert member_ids(segments, workspace, segment.id) == [low.id]
    changed = segments.UpdateSegment(
        sps.UpdateSegmentRequest(
            segment=segment_pb2.Segment(id=segment.id, rules=all_of(cond("score", "gte", 50)))
        ),
        metadata=workspace.metadata,
    )
    assert changed.state == segment_pb2.Segment.READY and changed.member_count == 1
    assert member_ids(segments, workspace, segment.id) == [high.id]


def test_writes_after_a_rule_edit_follow_the_new_rule(
    segments: Segments, leads: Leads, workspace: Workspace
) -> None:
    segment = rule_segment(segments, workspace, "s", all_of(cond("score", "lt", 50)))
    first = add_lead(leads, workspace, "first@x.io", score=10)  # the old rule, now compiled
    assert first.segment_ids == [segment.id]
    segments.UpdateSegment(
        sps.UpdateSegmentRequest(
            segment=segment_pb2.Segment(id=segment.id, rules=all_of(cond("score", "gte", 50)))
        ),
        metadata=workspace.metadata,
    )
    assert add_lead(leads, workspace, "low@x.io", score=20).segment_ids == []
    assert add_lead(leads, workspace, "high@x.io", score=70).segment_ids == [segment.id]
    assert update_lead(leads, workspace, first.id, score=60).segment_ids == [segment.id]
    segments.DeleteSegment(sps.DeleteSegmentRequest(id=segment.id), metadata=workspace.metadata)
    assert add_lead(leads, workspace, "after@x.io", score=90).segment_ids == []


def test_each_entry_and_exit_writes_an_event_with_its_cause(
    segments: Segments, leads: Leads, workspace: Workspace, database_url: str
) -> None:
    hot = rule_segment(segments, workspace, "hot", all_of(cond("score", "gte", 50)))
    lead = add_lead(leads, workspace, "ev@x.io", score=60)
    update_lead(leads, workspace, lead.id, score=1)  # 0 would mean "not given" without a mask
    rows = db.query(
        database_url,
        "SELECT type, payload->>'segment_id', payload->>'cause' FROM events "
        "WHERE workspace_id = %s AND type LIKE 'segment.lead_%%' ORDER BY id",
        workspace.id,
    )
    assert rows == [
        ("segment.lead_entered", hot.id, "lead.created"),
        ("segment.lead_exited", hot.id, "lead.updated"),
    ]


def test_list_leads_by_segment_for_rule_and_static_segments(
    segments: Segments, leads: Leads, workspace: Workspace
) -> None:
    lead = add_lead(leads, workspace, "member@x.io", score=70)
    add_lead(leads, workspace, "other@x.io", score=1)
    hot = rule_segment(segments, workspace, "hot", all_of(cond("score", "gte", 50)))
    listed = leads.ListLeads(
        lead_service_pb2.ListLeadsRequest(segment_id=hot.id), metadata=workspace.metadata
    )
    assert [item.id for item in listed.leads] == [lead.id]


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        (all_of(cond("shoe_size", "eq", 3)), "segment.rules.rules[0].condition"),
        (all_of(cond("score", "resembles", 3)), "segment.rules.rules[0].condition"),
        (all_of(cond("score", "gte", "high")), "segment.rules.rules[0].condition"),
        (all_of(cond("created_at", "within_last", "a while")), "segment.rules.rules[0].condition"),
        (all_of(cond("title", "eq", "x"), any_of()), "segment.rules.rules[1]"),
        (all_of(), "segment.rules"),
    ],
)
def test_bad_rules_are_invalid_naming_the_node_and_create_nothing(
    segments: Segments,
    workspace: Workspace,
    database_url: str,
    rules: segment_pb2.RuleGroup,
    field: str,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        rule_segment(segments, workspace, "bad", rules)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(caught.value)[1] == [field]
    assert db.query(
        database_url, "SELECT count(*) FROM segments WHERE workspace_id = %s", workspace.id
    ) == [(0,)]


def test_rule_nested_too_deep_is_invalid(segments: Segments, workspace: Workspace) -> None:
    group = all_of(cond("score", "gt", 1))
    for _ in range(12):
        group = all_of(segment_pb2.Rule(group=group))
    with pytest.raises(grpc.RpcError) as caught:
        rule_segment(segments, workspace, "deep", group)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_rule_segment_of_a_large_workspace_builds_in_the_background_without_blocking_writes(
    segments: Segments, leads: Leads, workspace: Workspace, database_url: str
) -> None:
    # The test server builds inline below 100 leads; this workspace has 3,000.
    db.execute(
        database_url,
        "INSERT INTO leads (id, workspace_id, email, score) "
        "SELECT 'lead_B' || lpad(g::text, 25, '0'), %s, 'big' || g || '@example.com', g %% 100 "
        "FROM generate_series(1, 3000) g",
        workspace.id,
    )
    segment = rule_segment(segments, workspace, "top", all_of(cond("score", "gte", 90)))
    assert segment.state == segment_pb2.Segment.BUILDING
    late = add_lead(leads, workspace, "late@x.io", score=95)  # a write while it builds
    deadline = time.monotonic() + 30
    while get(segments, workspace, segment.id).state != segment_pb2.Segment.READY:
        assert time.monotonic() < deadline, "the segment never became READY"
        time.sleep(0.1)
    members = member_ids(segments, workspace, segment.id)
    assert len(members) == 301 and late.id in members
    assert get(segments, workspace, segment.id).member_count == 301


def test_company_change_moves_its_leads_in_and_out_of_rule_segments(
    segments: Segments, leads: Leads, channel: grpc.Channel, workspace: Workspace
) -> None:
    companies = company_service_pb2_grpc.CompanyServiceStub(channel)
    acme = company_support.create(
        companies, workspace, name="Acme", domain="acme.io", employee_count=40
    )
    lead = add_lead(leads, workspace, "ann@acme.io")
    assert lead.company_id == acme.id
    mid_market = rule_segment(
        segments,
        workspace,
        "50-500 FTE",
        all_of(cond("company.employee_count", "between", [50, 500])),
    )
    assert member_ids(segments, workspace, mid_market.id) == []
    company_support.update(companies, workspace, acme.id, ["employee_count"], employee_count=120)
    assert member_ids(segments, workspace, mid_market.id) == [lead.id]
    companies.ArchiveCompany(
        company_service_pb2.ArchiveCompanyRequest(id=acme.id), metadata=workspace.metadata
    )
    archived_only = rule_segment(
        segments, workspace, "live companies", all_of(cond("company.archived_at", "not_exists"))
    )
    assert lead.id not in member_ids(segments, workspace, archived_only.id)


def test_concurrent_writers_moving_leads_across_segments_keep_member_counts_exact(
    segments: Segments, leads: Leads, workspace: Workspace
) -> None:
    # Every move from 10 to 90 (or back) enters two segments and leaves two, so concurrent
    # writers all update the same four member counts: the test for lock order (a deadlock
    # fails a call) and for lost count updates.
    bands = {
        "lt50": cond("score", "lt", 50),
        "gte50": cond("score", "gte", 50),
        "gte25": cond("score", "gte", 25),
        "lt75": cond("score", "lt", 75),
    }
    made = {name: rule_segment(segments, workspace, name, all_of(c)) for name, c in bands.items()}
    people = [add_lead(leads, workspace, f"mover{i}@bands.io", score=10) for i in range(24)]

    def move_back_and_forth(lead_id: str) -> int:
        scores = [update_lead(leads, workspace, lead_id, score=s).score for s in (90, 10, 90)]
        return scores[-1]

    with ThreadPoolExecutor(max_workers=8) as pool:
        final_scores = list(pool.map(move_back_and_forth, [lead.id for lead in people]))
    assert final_scores == [90] * len(people)  # every call succeeded: no deadlock, no error
    final_high = {lead.id for lead in people}
    expected = {"lt50": set(), "gte50": final_high, "gte25": final_high, "lt75": set()}
    for name, segment in made.items():
        assert set(member_ids(segments, workspace, segment.id)) == expected[name], name
        assert get(segments, workspace, segment.id).member_count == len(expected[name]), name


def test_write_replies_name_the_same_segments_as_a_fresh_read(
    segments: Segments, leads: Leads, workspace: Workspace
) -> None:
    hot = rule_segment(segments, workspace, "hot", all_of(cond("score", "gte", 50)))
    warm = rule_segment(segments, workspace, "warm", all_of(cond("score", "between", [30, 60])))
    picked = static_segment(segments, workspace)
    lead = add_lead(leads, workspace, "replies@x.io", score=40)
    assert lead.segment_ids == [warm.id]
    segments.AddSegmentMembers(
        sps.AddSegmentMembersRequest(id=picked.id, lead_ids=[lead.id]), metadata=workspace.metadata
    )

    def fresh() -> list[str]:
        request = lead_service_pb2.GetLeadRequest(id=lead.id)
        return list(leads.GetLead(request, metadata=workspace.metadata).segment_ids)

    def archive(archived: bool) -> lead_pb2.Lead:
        if archived:
            request = lead_service_pb2.ArchiveLeadRequest(id=lead.id)
            return leads.ArchiveLead(request, metadata=workspace.metadata)
        again = lead_service_pb2.UnarchiveLeadRequest(id=lead.id)
        return leads.UnarchiveLead(again, metadata=workspace.metadata)

    steps: list[tuple[Callable[[], lead_pb2.Lead], list[str]]] = [
        (lambda: update_lead(leads, workspace, lead.id, score=55), [hot.id, warm.id, picked.id]),
        (lambda: update_lead(leads, workspace, lead.id, score=70), [hot.id, picked.id]),
        # An archived lead leaves rule segments, not hand-picked ones.
        (lambda: archive(True), [picked.id]),
        (lambda: archive(False), [hot.id, picked.id]),
    ]
    for write, expected in steps:
        assert list(write().segment_ids) == sorted(expected)
        assert fresh() == sorted(expected)
