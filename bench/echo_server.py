"""The server process the benchmark runs: exactly `tnx-crm serve` (settings from CRM_*,
migrations, `server.rpc.server.serve`), plus a trivial echo method registered through
`build_server(..., extra=...)`, so the echo goes through the same interceptors (API-key
authentication included), the same event loop and the same process as the real RPCs.

The echo is a generic handler with identity (bytes) serializers at `/tnx.bench.Echo/Echo`;
it exists only in this process and is not part of the public API.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc

from server.config import load_settings
from server.db import migrate
from server.db.url import database_url
from server.rpc.server import serve

ECHO_SERVICE = "tnx.bench.Echo"
ECHO_METHOD = f"/{ECHO_SERVICE}/Echo"


async def _echo(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    return request


def register_echo(server: grpc.aio.Server) -> None:
    handler = grpc.method_handlers_generic_handler(
        ECHO_SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))


def main() -> None:
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    migrate.upgrade(database_url(settings))
    asyncio.run(serve(settings, extra=register_echo))


if __name__ == "__main__":
    main()
