"""Results are capped (items and bytes) and the cursor continues exactly where a page ended."""

from __future__ import annotations

import json
from typing import Any

from tnx.crm.v1 import lead_service_pb2

from tests.conftest import Workspace
from tests.mcp.helpers import call, fail, over_http, run
from tests.segments.helpers import Leads, add_lead

MAX_RESULT_BYTES = 25 * 1024


async def walk(mcp: Any, **arguments: Any) -> list[dict[str, Any]]:
    """Every page of search_leads, following next_cursor; checks each page's cap."""
    pages: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = await call(mcp, "search_leads", cursor=cursor, **arguments)
        assert len(json.dumps(page["leads"], separators=(",", ":"))) <= MAX_RESULT_BYTES
        pages.append(page)
        cursor = page["next_cursor"]
        if not cursor:
            return pages


def test_large_leads_come_a_capped_page_at_a_time_and_the_cursor_misses_none(
    mcp_url: str, workspace: Workspace, leads: Leads
) -> None:
    # About 2 KB of custom fields each: 60 of them are far more than one 25 KB result.
    bulky = {f"note{i}": "x" * 180 for i in range(10)}
    made = [add_lead(leads, workspace, f"l{i:02}@x.io", custom=bulky).id for i in range(60)]

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with over_http(mcp_url, workspace.key) as mcp:
            listed = await walk(mcp, limit=50)
            searched = await walk(mcp, query="x.io", limit=50)
        return listed, searched

    listed, searched = run(scenario())
    for pages in (listed, searched):
        assert len(pages) >= 6  # byte cap: about 10 leads a page, not 50
        assert all(page["truncated"] for page in pages[:-1])
        seen = [lead["id"] for page in pages for lead in page["leads"]]
        assert sorted(seen) == sorted(made)  # every lead once: none skipped, none repeated
    assert [lead["id"] for page in listed for lead in page["leads"]] == made  # oldest first
    assert listed[0]["leads"][0]["custom_fields"] == bulky


def test_limit_caps_the_items_and_the_cursor_pages_on(
    mcp_url: str, workspace: Workspace, leads: Leads
) -> None:
    made = [add_lead(leads, workspace, f"s{i}@x.io").id for i in range(7)]

    async def scenario() -> list[dict[str, Any]]:
        async with over_http(mcp_url, workspace.key) as mcp:
            return await walk(mcp, limit=3)

    pages = run(scenario())
    assert [len(page["leads"]) for page in pages] == [3, 3, 1]
    assert not any(page["truncated"] for page in pages)
    assert [lead["id"] for page in pages for lead in page["leads"]] == made


def test_a_lead_with_huge_custom_fields_is_cut_in_lists_and_shown_whole_by_get_lead(
    mcp_url: str, workspace: Workspace, leads: Leads
) -> None:
    big = {f"field{i}": "y" * 1500 for i in range(8)}
    lead = add_lead(leads, workspace, "big@x.io", custom=big)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with over_http(mcp_url, workspace.key) as mcp:
            listed = await call(mcp, "search_leads")
            fetched = await call(mcp, "get_lead", lead_id=lead.id)
        return listed["leads"][0], fetched

    listed, fetched = run(scenario())
    assert len(listed["custom_fields"]) == 1
    assert listed["custom_fields_omitted"] == [f"field{i}" for i in range(1, 8)]
    assert fetched["custom_fields"] == big and fetched["custom_fields_omitted"] == []


def test_limits_beyond_the_cap_and_forged_cursors_are_tool_errors(
    mcp_url: str, workspace: Workspace
) -> None:
    async def scenario() -> tuple[str, str]:
        async with over_http(mcp_url, workspace.key) as mcp:
            too_many = await fail(mcp, "search_leads", limit=51)
            forged = await fail(mcp, "search_leads", cursor="not-a-cursor")
        return too_many, forged

    too_many, forged = run(scenario())
    assert "limit" in too_many and "less than or equal to 50" in too_many
    assert "cursor" in forged


def test_a_cut_page_continues_after_its_last_lead_when_earlier_ones_drop_out(
    mcp_url: str, workspace: Workspace, leads: Leads
) -> None:
    bulky = {f"note{i}": "x" * 180 for i in range(10)}
    made = [add_lead(leads, workspace, f"d{i:02}@x.io", custom=bulky).id for i in range(30)]

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with over_http(mcp_url, workspace.key) as mcp:
            first = await call(mcp, "search_leads", limit=50)
            assert first["truncated"]
            # Two leads already shown leave the list before the next page is read.
            for lead in first["leads"][:2]:
                leads.ArchiveLead(
                    lead_service_pb2.ArchiveLeadRequest(id=lead["id"]), metadata=workspace.metadata
                )
            second = await call(mcp, "search_leads", limit=50, cursor=first["next_cursor"])
        return first, second

    first, second = run(scenario())
    shown = len(first["leads"])
    assert [lead["id"] for lead in second["leads"]] == made[shown : shown + len(second["leads"])]
