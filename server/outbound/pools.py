"""Connection pools for outbound HTTP, by origin (scheme, host, port)."""

from __future__ import annotations

import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpcore

from server.outbound.guard import GuardedBackend

POOL_CONNECTIONS = 8  # per httpcore pool: its bookkeeping slows down with size
MAX_ORIGINS = 256  # origins whose pools are kept; the least recently used are closed


class OriginPools:
    """httpcore connection pools by origin, each of at most POOL_CONNECTIONS connections,
    and up to max_connections // POOL_CONNECTIONS of them an origin: one httpcore pool's
    cost per request grows with its size (measured here: 64 connections in one pool posted
    150 requests/s to a local receiver, eight pools of eight 1,100/s)."""

    def __init__(
        self, context: ssl.SSLContext, backend: GuardedBackend, max_connections: int
    ) -> None:
        self.context, self.backend = context, backend
        self.per_origin = max(1, max_connections // POOL_CONNECTIONS)
        self.origins: OrderedDict[tuple[str, str, int], list[list[Any]]] = OrderedDict()

    def _new_pool(self) -> httpcore.AsyncConnectionPool:
        return httpcore.AsyncConnectionPool(
            ssl_context=self.context,
            network_backend=self.backend,
            max_connections=POOL_CONNECTIONS,
            keepalive_expiry=30.0,
            retries=0,  # a retry is the caller's decision (webhook schedules, idempotency)
        )

    @asynccontextmanager
    async def lease(
        self, origin: tuple[str, str, int]
    ) -> AsyncIterator[httpcore.AsyncConnectionPool]:
        """The origin's least busy pool (a new one while it has fewer than its share)."""
        pools = self.origins.setdefault(origin, [])
        self.origins.move_to_end(origin)
        entry = min(pools, key=lambda e: e[1], default=None)
        if entry is None or (entry[1] >= POOL_CONNECTIONS and len(pools) < self.per_origin):
            entry = [self._new_pool(), 0]
            pools.append(entry)
        while len(self.origins) > MAX_ORIGINS:
            _, evicted = self.origins.popitem(last=False)
            for old in evicted:
                if old[1] == 0:  # one still in use is left to the garbage collector
                    await old[0].aclose()
        entry[1] += 1
        try:
            yield entry[0]
        finally:
            entry[1] -= 1

    async def aclose(self) -> None:
        for pools in self.origins.values():
            for entry in pools:
                await entry[0].aclose()
        self.origins.clear()
