"""`tnx-crm mcp`: the CRM's tools (tools.py) on an MCP server, over stdio or streamable HTTP.

stdio: one process per client, with one API key (CRM_API_KEY or --key). HTTP: a process of
its own (`tnx-crm mcp --http`, started by `tnx-crm up`) that Envoy routes
`/api/v1/crm/mcp` to. It is stateless (every POST stands alone, so it scales like the rest
of the API) and answers in plain JSON; each request must carry `Authorization: Bearer
tnx_…`, which is checked before the MCP server sees the request (401 otherwise) and is the
key every tool call of that request uses.
"""

from __future__ import annotations

import asyncio
import inspect
import json

import grpc
import tnx_crm
import uvicorn
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from server.mcp.callers import Callers, bearer
from server.mcp.tools import Tools

NAME = "tnx-crm"
PATH = "/api/v1/crm/mcp"
INSTRUCTIONS = (
    "Tools over one workspace of the tnx CRM: leads (create_lead upserts by email; "
    "search_leads, get_lead, update_lead), segments (list_segments; create_segment, with "
    "dry_run to preview its rules' reach first; add_to_segment for static ones), activities "
    "(record_activity), scores (get_score) and bulk imports (import_status). Lists come a "
    "page at a time: pass next_cursor back as cursor for more."
)
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
# As the API words them.
_MISSING = tnx_crm.Unauthenticated(
    "missing API key: send `Authorization: Bearer tnx_…`", reason="API_KEY_MISSING"
)
_MALFORMED = tnx_crm.Unauthenticated(
    "malformed API key: expected `Bearer tnx_…`", reason="API_KEY_MALFORMED"
)


def build(callers: Callers) -> MCPServer:
    server = MCPServer(NAME, instructions=INSTRUCTIONS, log_level="WARNING")
    tools = Tools(callers)
    for name, member in vars(Tools).items():
        marked = getattr(member, "__mcp_tool__", None)
        if marked is not None:
            title, annotations = marked
            server.add_tool(
                getattr(tools, name),
                title=title,
                # The docstring without its source indentation.
                description=inspect.getdoc(member),
                annotations=annotations,
                structured_output=True,
            )
    return server


def run_stdio(target: str, key: str) -> None:
    callers = Callers(target, stdio_key=key)

    async def main() -> None:
        try:
            await build(callers).run_stdio_async()
        finally:
            await callers.close()

    asyncio.run(main())


class KeyRequired:
    """Refuses, with 401 and a google.rpc.Status body like the REST API's, an HTTP request
    whose Bearer key the API does not accept."""

    def __init__(self, app: ASGIApp, callers: Callers) -> None:
        self.app, self.callers = app, callers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization = Headers(scope=scope).get("authorization")
        key = bearer(authorization)
        if not key:
            await self._refuse(_MISSING if authorization is None else _MALFORMED, send)
            return
        error = await self.callers.verify(key)
        if error is not None:
            await self._refuse(error, send)
            return
        await self.app(scope, receive, send)

    async def _refuse(self, error: tnx_crm.ApiError, send: Send) -> None:
        status = {
            grpc.StatusCode.UNAUTHENTICATED: 401,
            grpc.StatusCode.PERMISSION_DENIED: 403,
        }.get(error.code, 503)
        body: dict[str, object] = {"code": error.code.value[0], "message": error.message}
        if error.reason:
            info = {"@type": _ERROR_INFO, "reason": error.reason, "domain": "crm.tnx"}
            body["details"] = [info]
        payload = json.dumps(body).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="tnx-crm"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def http_app(callers: Callers) -> ASGIApp:
    app = build(callers).streamable_http_app(
        streamable_http_path=PATH,
        stateless_http=True,
        json_response=True,
        # Behind Envoy, which owns the Host header, and authenticated by a Bearer key (never
        # a cookie a rebound page could ride on): the SDK's localhost-only Host check would
        # only refuse every request made through a real hostname.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    return KeyRequired(app, callers)


def run_http(target: str, host: str, port: int) -> None:
    callers = Callers(target)

    async def main() -> None:
        config = uvicorn.Config(
            http_app(callers), host=host, port=port, log_level="warning", access_log=False
        )
        try:
            await uvicorn.Server(config).serve()
        finally:
            await callers.close()

    asyncio.run(main())
