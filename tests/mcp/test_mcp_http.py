"""The HTTP endpoint behind the gateway: the Bearer key is required and checked."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from mcp import MCPError

from tests.conftest import Workspace
from tests.mcp.helpers import call, over_http, run
from tests.support import db
from tests.support.errors import json_details

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "curl", "version": "0"},
    },
}
JSON_RPC = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "API_KEY_MISSING"),
        ("Basic dXNlcjpwYXNz", "API_KEY_MALFORMED"),
        ("Bearer tnx_notakey", "API_KEY_MALFORMED"),
        ("Bearer tnx_0000000000000000000000000000000000000a", "API_KEY_MALFORMED"),
    ],
)
def test_a_request_without_a_working_key_is_refused_with_401(
    mcp_url: str, http: requests.Session, authorization: str | None, reason: str
) -> None:
    headers = dict(JSON_RPC)
    if authorization is not None:
        headers["Authorization"] = authorization
    reply = http.post(mcp_url, json=INITIALIZE, headers=headers, timeout=30)
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert reply.json()["code"] == 16
    assert json_details(reply.json())[0] == reason


def test_a_revoked_key_is_refused_with_401(
    mcp_url: str, http: requests.Session, workspace: Workspace, database_url: str
) -> None:
    db.execute(
        database_url, "UPDATE api_keys SET revoked_at = now() WHERE workspace_id = %s", workspace.id
    )
    reply = http.post(
        mcp_url, json=INITIALIZE, headers={**JSON_RPC, **workspace.headers}, timeout=30
    )
    assert reply.status_code == 401
    assert json_details(reply.json())[0] == "API_KEY_INVALID"


def test_the_sdk_client_with_a_bad_key_gets_no_session(mcp_url: str) -> None:
    async def scenario() -> None:
        async with over_http(mcp_url, "tnx_wrong") as mcp:
            await mcp.list_tools()

    with pytest.raises(ExceptionGroup) as caught:
        run(scenario())
    assert caught.group_contains(MCPError)


def test_each_request_uses_its_own_key(
    mcp_url: str, workspace: Workspace, other_workspace: Workspace
) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with over_http(mcp_url, workspace.key) as mcp:
            await call(mcp, "create_lead", email="mine@x.io")
            mine = await call(mcp, "search_leads")
        async with over_http(mcp_url, other_workspace.key) as mcp:
            theirs = await call(mcp, "search_leads")
        return mine, theirs

    mine, theirs = run(scenario())
    assert [lead["email"] for lead in mine["leads"]] == ["mine@x.io"]
    assert theirs["leads"] == []
