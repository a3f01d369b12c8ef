"""gRPC health that tells the truth: NOT_SERVING while the database cannot be reached, so a
load balancer's active check takes this server out until PostgreSQL is back."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Any

from grpc_health.v1 import health_pb2
from sqlalchemy import text

from server.db.engine import Database

log = logging.getLogger("tnx.health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def check_interval() -> float:
    """CRM_HEALTH_CHECK_SECONDS: how often the database is probed (default 2 s)."""
    raw = os.environ.get("CRM_HEALTH_CHECK_SECONDS")
    value = float(raw) if raw else 2.0
    if value <= 0:
        raise ValueError(f"CRM_HEALTH_CHECK_SECONDS must be positive, not {raw!r}")
    return value


async def database_reachable(db: Database, within_s: float) -> bool:
    try:
        async with asyncio.timeout(within_s), db.read() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception:  # any failure to answer is "not reachable"; the log says which
        log.debug("database probe failed", exc_info=True)
        return False


async def set_all(servicer: Any, names: Sequence[str], status: int) -> None:
    for name in names:
        await servicer.set(name, status)


async def watch_database(db: Database, servicer: Any, names: Sequence[str]) -> None:
    """Probe the database every interval and publish SERVING or NOT_SERVING for every
    service when the answer changes. Runs until cancelled (at shutdown)."""
    interval = check_interval()
    serving = True
    while True:
        await asyncio.sleep(interval)
        reachable = await database_reachable(db, within_s=interval)
        if reachable != serving:
            serving = reachable
            log.warning("database %s", "reachable again" if reachable else "unreachable")
            await set_all(servicer, names, SERVING if reachable else NOT_SERVING)
