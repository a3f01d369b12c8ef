"""`tnx-crm mcp`: the MCP server over stdio (default) or streamable HTTP (`--http`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from server.config import Settings
from server.observability import logs

# Addresses a server listens on that a client cannot connect to as such.
_ANY_ADDRESS = ("", "0.0.0.0", "::", "[::]")


def grpc_target(settings: Settings) -> str:
    """Where the API is: CRM_GRPC_TARGET, else the gRPC server's own host and port."""
    target = os.environ.get("CRM_GRPC_TARGET", "")
    if target:
        return target
    host = "127.0.0.1" if settings.grpc_host in _ANY_ADDRESS else settings.grpc_host
    return f"{host}:{settings.grpc_port}"


def cmd_mcp(settings: Settings, args: argparse.Namespace) -> int:
    from server.mcp import app  # the MCP SDK and uvicorn load only for this command

    # To stderr, as every command logs: over stdio, stdout carries the protocol. The SDK
    # logs every request at INFO; its warnings and errors are what matter here.
    logs.configure(settings.log_level)
    logging.getLogger("mcp").setLevel(logging.WARNING)
    target = args.target or grpc_target(settings)
    if args.http:
        app.run_http(target, args.host or settings.mcp_host, args.port or settings.mcp_port)
        return 0
    key = args.key or os.environ.get("CRM_API_KEY", "")
    if not key:
        print("error: tnx-crm mcp needs an API key: CRM_API_KEY=tnx_… or --key", file=sys.stderr)
        return 2
    app.run_stdio(target, key)
    return 0


def add_commands(commands: Any) -> None:
    mcp = commands.add_parser(
        "mcp",
        help="run the MCP server: over stdio (for a local MCP client), or over HTTP with --http",
    )
    mcp.add_argument(
        "--http", action="store_true", help="serve streamable HTTP at /api/v1/crm/mcp instead"
    )
    mcp.add_argument("--host", default="", help="HTTP listen address (default CRM_MCP_HOST)")
    mcp.add_argument("--port", type=int, default=0, help="HTTP port (default CRM_MCP_PORT)")
    mcp.add_argument("--key", default="", help="stdio: the API key (default CRM_API_KEY)")
    mcp.add_argument(
        "--target",
        default="",
        help="the gRPC API, host:port (default: CRM_GRPC_TARGET or the server's)",
    )
    mcp.set_defaults(run=cmd_mcp)
