"""SearchLeads ranks in tiers: names and title first, then any other field; newest first
within a tier. A page walks ids newest first and, when a tier turns out rare, takes the rest
of it from the full-text indexes; the in-process tests shrink that walk to a few leads so
both routes run, and check that they give the same pages as an unbounded walk."""

from __future__ import annotations

import random

import pytest
from tnx.crm.v1 import lead_pb2, lead_service_pb2, lead_service_pb2_grpc

from server.db.engine import Database
from server.leads import search, service
from server.leads.model import LeadFilters
from server.pagination import CursorCodec
from tests.conftest import Workspace
from tests.support import db

Stub = lead_service_pb2_grpc.LeadServiceStub


def add(stub: Stub, ws: Workspace, email: str, title: str = "", note: str = "") -> str:
    lead = lead_pb2.Lead(email=email, title=title)
    if note:
        lead.custom_fields.update({"note": note})
    reply = stub.CreateLead(lead_service_pb2.CreateLeadRequest(lead=lead), metadata=ws.metadata)
    return reply.id


def search_emails(stub: Stub, ws: Workspace, query: str) -> list[str]:
    request = lead_service_pb2.SearchLeadsRequest(query=query)
    return [lead.email for lead in stub.SearchLeads(request, metadata=ws.metadata).leads]


def test_search_ranks_matches_in_names_and_title_before_other_fields(
    leads: Stub, workspace: Workspace
) -> None:
    add(leads, workspace, "custom@example.com", note="head of growth")
    add(leads, workspace, "title@example.com", title="Head of Growth")
    add(leads, workspace, "company@head-of-growth.com")
    found = search_emails(leads, workspace, "head of growth")
    assert found[0] == "title@example.com"
    assert sorted(found[1:]) == ["company@head-of-growth.com", "custom@example.com"]


def test_search_lists_equally_good_matches_newest_first(leads: Stub, workspace: Workspace) -> None:
    for i in range(3):
        add(leads, workspace, f"vp{i}@example.com", title="VP Growth")
    assert search_emails(leads, workspace, "growth") == [
        "vp2@example.com",
        "vp1@example.com",
        "vp0@example.com",
    ]


def test_search_matches_the_last_word_as_a_prefix_only(leads: Stub, workspace: Workspace) -> None:
    add(leads, workspace, "hog@example.com", title="Head of Growth")
    assert search_emails(leads, workspace, "head of gro") == ["hog@example.com"]
    assert search_emails(leads, workspace, "hea of growth") == []


WORDS = ["growth", "head", "sales", "ops"]


def _title(rng: random.Random) -> str:
    return " ".join(rng.sample(WORDS, rng.randint(0, 2)))


@pytest.fixture
def mixed(leads: Stub, workspace: Workspace) -> dict[str, tuple[str, str]]:
    """40 leads with random titles and notes: {id: (title, note)}."""
    rng = random.Random(7)
    made: dict[str, tuple[str, str]] = {}
    for i in range(40):
        title, note = _title(rng), _title(rng)
        made[add(leads, workspace, f"m{i}@example.com", title=title, note=note)] = (title, note)
    return made


def _expected(made: dict[str, tuple[str, str]], words: list[str]) -> list[str]:
    """An independent ranking: every word in the title first, then anywhere; newest first."""

    def has_all(text: str) -> bool:
        return all(word in text.split() for word in words)

    names = sorted((i for i, (t, _) in made.items() if has_all(t)), reverse=True)
    rest = sorted(
        (i for i, (t, n) in made.items() if i not in names and has_all(f"{t} {n}")),
        reverse=True,
    )
    return names + rest


def _all_pages(url: str, ws: Workspace, query: str, limit: int) -> list[str]:
    async def pages(database: Database) -> list[str]:
        codec = CursorCodec(b"k" * 32)
        found: list[str] = []
        cursor = ""
        while True:
            page = await service.search_leads(
                database,
                codec,
                workspace_id=ws.id,
                query=query,
                filters=LeadFilters(),
                limit=limit,
                cursor=cursor,
            )
            found.extend(lead.id for lead in page.leads)
            if not page.next_cursor:
                return found
            cursor = page.next_cursor

    return db.run_with_db(url, pages)


def test_search_pages_match_an_independent_ranking_however_deep_the_walk(
    database_url: str,
    workspace: Workspace,
    mixed: dict[str, tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for window in (1, 3, 10_000):
        monkeypatch.setattr(search, "WINDOW_ROWS", window)
        for query in ("growth", "head growth", "sales ops", "ops"):
            expected = _expected(mixed, query.split())
            assert expected, "the fixture should give every query some matches"
            for limit in (1, 4, 100):
                found = _all_pages(database_url, workspace, query, limit)
                assert found == expected, (window, query, limit)
