"""Who calls a tool, and the API client that calls the API with their key.

Over stdio the process has one key (CRM_API_KEY or --key). Over HTTP every request carries
its own `Authorization: Bearer tnx_…`, checked against the API before the request reaches
the MCP server (`verify`), and every tool call uses that key: the MCP server sees exactly
the workspace the key opens, as any other API client would.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Mapping

import grpc
import tnx_crm
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from tnx.crm.v1 import segment_service_pb2
from tnx_crm.errors import from_rpc_error

MAX_CLIENTS = 64  # distinct keys with an open client; the least recently used is closed
CLOSE_AFTER = 60.0  # seconds an evicted client is kept open for calls still under way
VERIFY_TIMEOUT = 10.0


def bearer(authorization: str | None) -> str:
    """The key of an `Authorization: Bearer <key>` header, or ""."""
    scheme, _, key = (authorization or "").strip().partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Callers:
    def __init__(self, target: str, stdio_key: str | None = None) -> None:
        self.target = target
        self.stdio_key = stdio_key
        self._clients: OrderedDict[str, tnx_crm.AsyncClient] = OrderedDict()
        self._evicted: dict[tnx_crm.AsyncClient, asyncio.Task[None]] = {}
        self._checker: tnx_crm.AsyncClient | None = None

    def key(self, headers: Mapping[str, str] | None) -> str:
        if headers is None:  # stdio
            if not self.stdio_key:
                raise ToolError("no API key: start the server with CRM_API_KEY or --key")
            return self.stdio_key
        key = bearer(headers.get("authorization"))
        if not key:
            raise ToolError("no API key: send Authorization: Bearer tnx_…")
        return key

    def client(self, ctx: Context) -> tnx_crm.AsyncClient:
        return self.for_key(self.key(ctx.headers))

    def for_key(self, key: str) -> tnx_crm.AsyncClient:
        digest = _digest(key)
        client = self._clients.get(digest)
        if client is None:
            client = self._clients[digest] = tnx_crm.AsyncClient(self.target, api_key=key)
            while len(self._clients) > MAX_CLIENTS:
                _, evicted = self._clients.popitem(last=False)
                self._close_later(evicted)
        self._clients.move_to_end(digest)
        return client

    async def verify(self, key: str) -> tnx_crm.ApiError | None:
        """None when the API accepts the key, else the API's error. One small authenticated
        read for every HTTP request, so a revoked key stops working at once, as in the API.
        It goes over a client of its own, with the key in this call's metadata only: keys
        that fail never get a client (and a channel) of their own."""
        if self._checker is None:
            self._checker = tnx_crm.AsyncClient(self.target, api_key="")
        stub = self._checker.lists.stub
        request = segment_service_pb2.ListSegmentsRequest(limit=1)
        metadata = (("authorization", f"Bearer {key}"),)
        try:
            await stub.ListSegments(request, metadata=metadata, timeout=VERIFY_TIMEOUT)
        except grpc.RpcError as exc:
            return from_rpc_error(exc)
        return None

    def _close_later(self, client: tnx_crm.AsyncClient) -> None:
        async def close() -> None:
            await asyncio.sleep(CLOSE_AFTER)
            del self._evicted[client]
            await client.close()

        self._evicted[client] = asyncio.get_running_loop().create_task(close())

    async def close(self) -> None:
        for task in self._evicted.values():
            task.cancel()
        clients = [*self._clients.values(), *self._evicted]
        if self._checker is not None:
            clients.append(self._checker)
        self._clients, self._evicted, self._checker = OrderedDict(), {}, None
        for client in clients:
            await client.close()
