"""The MCP server under test, reached with the MCP SDK's own client: over streamable HTTP
through the real Envoy gateway (`tnx-crm mcp --http` behind /api/v1/crm/mcp), and over stdio
(`python -m server.cli mcp` spawned by the client, as a desktop MCP host would)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from server.config import REPO_ROOT

T = TypeVar("T")


def run(scenario: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(scenario)


@asynccontextmanager
async def over_http(url: str, key: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


@asynccontextmanager
async def over_stdio(grpc_address: str, key: str, log: Path) -> AsyncIterator[Client]:
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "server.cli", "mcp"],
        env={"CRM_API_KEY": key, "CRM_GRPC_TARGET": grpc_address, "CRM_LOG_LEVEL": "WARNING"},
        cwd=REPO_ROOT,
    )
    with log.open("a") as errlog:
        async with Client(stdio_client(server, errlog=errlog)) as client:
            yield client


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """The structured result of a call that must succeed."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


async def fail(client: Client, tool: str, **arguments: Any) -> str:
    """The text of a call that must come back as a tool error (not a protocol error)."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, json.dumps(result.structured_content)
    return text(result)


def text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))
