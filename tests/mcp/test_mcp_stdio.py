"""`tnx-crm mcp` over stdio, spawned by the SDK's client as a desktop MCP host spawns it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
from tnx.crm.v1 import lead_service_pb2, segment_service_pb2, segment_service_pb2_grpc

from server.config import REPO_ROOT
from tests.conftest import Workspace
from tests.mcp.helpers import call, fail, over_stdio, run
from tests.mcp.test_mcp_leads import TOOLS
from tests.segments.helpers import Leads


def test_every_tool_works_over_stdio_with_the_processs_key(
    grpc_server: tuple[str, int],
    workspace: Workspace,
    leads: Leads,
    channel: grpc.Channel,
    work_dir: Path,
) -> None:
    rules = {"rules": [{"condition": {"field": "title", "op": "eq", "value": "CTO"}}]}

    async def scenario() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with over_stdio(grpc_server[0], workspace.key, work_dir / "mcp-stdio.log") as mcp:
            seen["tools"] = {tool.name for tool in (await mcp.list_tools()).tools}
            seen["created"] = await call(mcp, "create_lead", email="ada@acme.io", title="CTO")
            seen["again"] = await call(mcp, "create_lead", email="Ada@Acme.io", first_name="Ada")
            lead_id = seen["created"]["lead"]["id"]
            seen["updated"] = await call(mcp, "update_lead", lead_id=lead_id, last_name="Lovelace")
            seen["got"] = await call(mcp, "get_lead", lead_id=lead_id)
            seen["found"] = await call(mcp, "search_leads", query="ada love")
            seen["preview"] = await call(
                mcp, "create_segment", name="CTOs", rules=rules, dry_run=True
            )
            seen["rule"] = await call(mcp, "create_segment", name="CTOs", rules=rules)
            static = await call(mcp, "create_segment", name="picked")
            seen["static"] = static
            seen["added"] = await call(
                mcp, "add_to_segment", segment_id=static["segment"]["id"], lead_ids=[lead_id]
            )
            seen["segments"] = await call(mcp, "list_segments")
            seen["activity"] = await call(mcp, "record_activity", lead_id=lead_id, type="page_view")
            seen["score"] = await call(mcp, "get_score", lead_id=lead_id)
            seen["imports"] = await call(mcp, "import_status")
            seen["error"] = await fail(mcp, "get_lead", lead_id="lead_nope")
        return seen

    seen = run(scenario())
    assert seen["tools"] == TOOLS
    lead_id = seen["created"]["lead"]["id"]
    assert (seen["created"]["status"], seen["again"]["status"]) == ("created", "existing")
    assert seen["again"]["lead"]["id"] == lead_id and seen["again"]["filled_fields"] == [
        "first_name"
    ]
    assert seen["got"]["last_name"] == "Lovelace"
    assert [lead["id"] for lead in seen["found"]["leads"]] == [lead_id]
    assert seen["preview"]["estimated_size"] == 1
    assert seen["rule"]["segment"]["member_count"] == 1
    assert seen["added"]["added"] == [lead_id]
    assert len(seen["segments"]["segments"]) == 2
    assert seen["activity"]["type"] == "page_view" and seen["score"]["lead_id"] == lead_id
    assert seen["imports"]["imports"] == []
    assert "NOT_FOUND" in seen["error"]
    stored = leads.GetLead(lead_service_pb2.GetLeadRequest(id=lead_id), metadata=workspace.metadata)
    assert (stored.first_name, stored.last_name, stored.title) == ("Ada", "Lovelace", "CTO")
    assert sorted(stored.segment_ids) == sorted(
        [seen["rule"]["segment"]["id"], seen["static"]["segment"]["id"]]
    )
    assert stored.last_activity_at.seconds > 0
    segments = segment_service_pb2_grpc.SegmentServiceStub(channel)
    listed = segments.ListSegments(
        segment_service_pb2.ListSegmentsRequest(), metadata=workspace.metadata
    )
    assert len(listed.segments) == 2


def test_stdio_without_a_key_says_so_and_exits_2(grpc_server: tuple[str, int]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CRM_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "mcp", "--target", grpc_server[0]],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode == 2
    assert b"CRM_API_KEY" in done.stderr and done.stdout == b""
