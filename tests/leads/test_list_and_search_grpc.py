"""Listing leads with filters and cursors, and free-text search, over gRPC."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import json_format, timestamp_pb2
from tnx.crm.v1 import lead_pb2, lead_service_pb2, lead_service_pb2_grpc

from tests.conftest import Workspace
from tests.support import db
from tests.support.errors import details

Stub = lead_service_pb2_grpc.LeadServiceStub


def add(stub: Stub, ws: Workspace, email: str, **fields: object) -> lead_pb2.Lead:
    custom: Any = fields.pop("custom", None)
    lead = lead_pb2.Lead(email=email, **fields)  # type: ignore[arg-type]
    if custom:
        lead.custom_fields.update(custom)
    reply: lead_pb2.Lead = stub.CreateLead(
        lead_service_pb2.CreateLeadRequest(lead=lead), metadata=ws.metadata
    )
    return reply


def list_emails(stub: Stub, ws: Workspace, **request: object) -> list[str]:
    reply = stub.ListLeads(lead_service_pb2.ListLeadsRequest(**request), metadata=ws.metadata)  # type: ignore[arg-type]
    return [lead.email for lead in reply.leads]


def invalid(call: object) -> tuple[str, list[str]]:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return details(caught.value)


@pytest.fixture
def crowd(leads: Stub, workspace: Workspace) -> Workspace:
    add(
        leads,
        workspace,
        "ana@saas.io",
        title="Head of Growth",
        score=80,
        source="webinar",
        custom={"industry": "SaaS", "employees": 120, "beta": True},
    )
    add(
        leads,
        workspace,
        "bob@shop.com",
        title="Growth Marketer",
        score=40,
        source="import",
        custom={"industry": "Retail", "employees": 30},
    )
    add(
        leads,
        workspace,
        "cy@saas.io",
        title="CTO",
        score=55,
        source="webinar",
        custom={"industry": "saas", "employees": "many"},
    )
    add(leads, workspace, "di@bank.com", title="VP Sales", score=10, source="manual")
    return workspace


def test_pages_walk_every_lead_once_in_creation_order(leads: Stub, workspace: Workspace) -> None:
    created = [add(leads, workspace, f"p{i}@example.com").email for i in range(7)]
    seen: list[str] = []
    cursor = ""
    while True:
        reply = leads.ListLeads(
            lead_service_pb2.ListLeadsRequest(limit=3, cursor=cursor), metadata=workspace.metadata
        )
        seen.extend(lead.email for lead in reply.leads)
        assert len(reply.leads) <= 3
        cursor = reply.next_cursor
        if not cursor:
            break
    assert seen == created


def test_leads_created_between_pages_do_not_disturb_the_walk(
    leads: Stub, workspace: Workspace
) -> None:
    first = [add(leads, workspace, f"s{i}@example.com").email for i in range(4)]
    page = leads.ListLeads(lead_service_pb2.ListLeadsRequest(limit=2), metadata=workspace.metadata)
    late = add(leads, workspace, "late@example.com").email
    rest = leads.ListLeads(
        lead_service_pb2.ListLeadsRequest(limit=10, cursor=page.next_cursor),
        metadata=workspace.metadata,
    )
    assert [lead.email for lead in [*page.leads, *rest.leads]] == [*first, late]


def test_limit_defaults_to_50_and_clamps_at_1000(
    leads: Stub, workspace: Workspace, database_url: str
) -> None:
    db.execute(
        database_url,
        "INSERT INTO leads (id, workspace_id, email) SELECT 'lead_' || lpad(g::text, 26, '0'), "
        "%s, 'bulk' || g || '@example.com' FROM generate_series(1, 1005) g",
        workspace.id,
    )
    default = leads.ListLeads(lead_service_pb2.ListLeadsRequest(), metadata=workspace.metadata)
    assert len(default.leads) == 50 and default.next_cursor
    clamped = leads.ListLeads(
        lead_service_pb2.ListLeadsRequest(limit=5000), metadata=workspace.metadata
    )
    assert len(clamped.leads) == 1000 and clamped.next_cursor


def test_explicit_filters_combine(leads: Stub, crowd: Workspace) -> None:
    assert list_emails(leads, crowd, source="webinar") == ["ana@saas.io", "cy@saas.io"]
    assert list_emails(leads, crowd, score_min=40, score_max=55) == ["bob@shop.com", "cy@saas.io"]
    assert list_emails(leads, crowd, source="WEBINAR", score_min=60) == ["ana@saas.io"]


def test_created_window_filters_by_creation_time(leads: Stub, crowd: Workspace) -> None:
    everyone = leads.ListLeads(lead_service_pb2.ListLeadsRequest(), metadata=crowd.metadata).leads
    pivot = everyone[2].created_at
    before = list_emails(leads, crowd, created_before=pivot)
    after = list_emails(leads, crowd, created_after=pivot)
    assert before == [lead.email for lead in everyone[:2]]
    assert after == [lead.email for lead in everyone[2:]]


def test_last_activity_window_excludes_leads_without_activity(
    leads: Stub, workspace: Workspace
) -> None:
    active = lead_pb2.Lead(email="active@example.com")
    active.last_activity_at.FromJsonString("2026-03-01T12:00:00Z")
    leads.CreateLead(lead_service_pb2.CreateLeadRequest(lead=active), metadata=workspace.metadata)
    add(leads, workspace, "idle@example.com")
    since = timestamp_pb2.Timestamp()
    since.FromJsonString("2026-01-01T00:00:00Z")
    assert list_emails(leads, workspace, last_activity_after=since) == ["active@example.com"]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('score >= 50 AND custom.industry = "SaaS"', ["ana@saas.io", "cy@saas.io"]),
        ("custom.employees > 50", ["ana@saas.io"]),
        ('title:"growth"', ["ana@saas.io", "bob@shop.com"]),
        ("custom.beta = true", ["ana@saas.io"]),
        ("custom.beta:*", ["ana@saas.io"]),
        ('NOT source = "webinar"', ["bob@shop.com", "di@bank.com"]),
        ('source = "manual" OR score > 70', ["ana@saas.io", "di@bank.com"]),
        ('email_domain = "saas.io" -title:cto', ["ana@saas.io"]),
        ('custom.industry != "saas"', ["bob@shop.com", "di@bank.com"]),
        ('status = "new"', ["ana@saas.io", "bob@shop.com", "cy@saas.io", "di@bank.com"]),
        ('(score < 20 OR score > 70) AND email:"@"', ["ana@saas.io", "di@bank.com"]),
    ],
)
def test_filter_expression_selects_matching_leads(
    leads: Stub, crowd: Workspace, expression: str, expected: list[str]
) -> None:
    assert list_emails(leads, crowd, filter=expression) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "shoe_size = 3",
        "score >= ",
        "score >= 50 AND",
        'custom.industry = "x" )',
        'score = "high"',
        'created_at > "last tuesday"',
        'status = "sleeping"',
        "(score > 1",
        "score ~ 5",
    ],
)
def test_bad_filter_expression_is_invalid_argument_naming_filter(
    leads: Stub, crowd: Workspace, expression: str
) -> None:
    reason, fields = invalid(
        lambda: leads.ListLeads(
            lead_service_pb2.ListLeadsRequest(filter=expression), metadata=crowd.metadata
        )
    )
    assert (reason, fields) == ("FILTER_INVALID", ["filter"])


def test_negative_limit_is_invalid(leads: Stub, workspace: Workspace) -> None:
    reason, fields = invalid(
        lambda: leads.ListLeads(
            lead_service_pb2.ListLeadsRequest(limit=-1), metadata=workspace.metadata
        )
    )
    assert (reason, fields) == ("LIMIT_NEGATIVE", ["limit"])


def test_forged_cursor_is_invalid(leads: Stub, workspace: Workspace) -> None:
    for forged in ["garbage", "eyJ3IjoieCJ9", "A" * 60]:
        reason, fields = invalid(
            lambda forged=forged: leads.ListLeads(  # type: ignore[misc]
                lead_service_pb2.ListLeadsRequest(cursor=forged), metadata=workspace.metadata
            )
        )
        assert (reason, fields) == ("CURSOR_INVALID", ["cursor"])


def test_cursor_of_another_workspace_or_query_is_invalid(
    leads: Stub, workspace: Workspace, other_workspace: Workspace
) -> None:
    for i in range(3):
        add(leads, workspace, f"c{i}@example.com", source="web")
    cursor = leads.ListLeads(
        lead_service_pb2.ListLeadsRequest(limit=1), metadata=workspace.metadata
    ).next_cursor
    assert cursor
    foreign = lead_service_pb2.ListLeadsRequest(limit=1, cursor=cursor)
    assert invalid(lambda: leads.ListLeads(foreign, metadata=other_workspace.metadata))[1] == [
        "cursor"
    ]
    other_query = lead_service_pb2.ListLeadsRequest(limit=1, cursor=cursor, source="web")
    assert invalid(lambda: leads.ListLeads(other_query, metadata=workspace.metadata))[1] == [
        "cursor"
    ]


def test_lists_never_show_another_workspaces_leads(
    leads: Stub, workspace: Workspace, other_workspace: Workspace
) -> None:
    add(leads, other_workspace, "secret@example.com", title="Head of Growth")
    assert list_emails(leads, workspace) == []
    found = leads.SearchLeads(
        lead_service_pb2.SearchLeadsRequest(query="growth"), metadata=workspace.metadata
    )
    assert list(found.leads) == []


def test_segment_filter_names_an_unknown_segment(leads: Stub, workspace: Workspace) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        leads.ListLeads(
            lead_service_pb2.ListLeadsRequest(segment_id="seg_nope"), metadata=workspace.metadata
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def search(stub: Stub, ws: Workspace, query: str, **extra: object) -> list[str]:
    request = lead_service_pb2.SearchLeadsRequest(query=query, **extra)  # type: ignore[arg-type]
    return [lead.email for lead in stub.SearchLeads(request, metadata=ws.metadata).leads]


def test_search_for_a_title_phrase_ranks_the_best_match_first(
    leads: Stub, workspace: Workspace
) -> None:
    add(
        leads,
        workspace,
        "noise@example.com",
        title="Growth Hacker",
        custom={"note": "head of nothing"},
    )
    add(leads, workspace, "best@example.com", first_name="Grace", title="Head of Growth")
    add(leads, workspace, "none@example.com", title="Accountant")
    found = search(leads, workspace, "head of growth")
    assert found[0] == "best@example.com"
    assert "none@example.com" not in found


def test_search_matches_email_company_and_custom_values(leads: Stub, workspace: Workspace) -> None:
    add(leads, workspace, "zed@initech.com", company="Initech")
    add(leads, workspace, "yan@other.org", custom={"persona": "Economic Buyer"})
    assert search(leads, workspace, "initech") == ["zed@initech.com"]
    assert search(leads, workspace, "zed@initech") == ["zed@initech.com"]
    assert search(leads, workspace, "economic buy") == ["yan@other.org"]


def test_search_pages_with_a_cursor_and_honours_filter(leads: Stub, workspace: Workspace) -> None:
    for i in range(5):
        add(leads, workspace, f"g{i}@example.com", title="Growth Lead", score=i * 10)
    first = leads.SearchLeads(
        lead_service_pb2.SearchLeadsRequest(query="growth", limit=2), metadata=workspace.metadata
    )
    rest = leads.SearchLeads(
        lead_service_pb2.SearchLeadsRequest(query="growth", limit=10, cursor=first.next_cursor),
        metadata=workspace.metadata,
    )
    emails = [lead.email for lead in [*first.leads, *rest.leads]]
    assert sorted(emails) == [f"g{i}@example.com" for i in range(5)]
    assert rest.next_cursor == ""
    assert search(leads, workspace, "growth", filter="score >= 30") == [
        "g4@example.com",
        "g3@example.com",
    ]


def test_search_without_words_is_invalid(leads: Stub, workspace: Workspace) -> None:
    _, fields = invalid(
        lambda: leads.SearchLeads(
            lead_service_pb2.SearchLeadsRequest(query=" ?! "), metadata=workspace.metadata
        )
    )
    assert fields == ["query"]


def test_custom_fields_of_every_json_type_round_trip(leads: Stub, workspace: Workspace) -> None:
    values = {"s": "text", "n": 1.5, "b": False, "nested": {"k": [1, "two"]}, "nothing": None}
    lead = add(leads, workspace, "types@example.com", custom=values)
    fetched = leads.GetLead(
        lead_service_pb2.GetLeadRequest(id=lead.id), metadata=workspace.metadata
    )
    for returned in (lead, fetched):
        assert json_format.MessageToDict(returned.custom_fields) == values
