"""The worker side of triggers: every worker process runs the delivery loop
(server/triggers/sender.py) in a thread of its own, started when the worker is ready.

Deliveries travel through PostgreSQL, not the broker: the deliveries table is their queue
(claimed with SKIP LOCKED and a lease), which keeps a three-day retry schedule durable and
lets any number of workers share the load. So triggers add no task and no queue.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any

from celery import Celery
from celery.signals import worker_ready

from server.db.engine import Database, make_engine
from server.outbound import OutboundClient
from server.triggers.sender import CONCURRENCY, Sender

log = logging.getLogger("tnx.triggers")


async def deliver_forever(url: str, stop: asyncio.Event | None = None) -> None:
    """The delivery loop on a database and an outbound client of its own, until `stop`."""
    db = Database(make_engine(url, pool_size=4))
    client = OutboundClient(max_connections=CONCURRENCY)
    try:
        await Sender(db, client).run(stop or asyncio.Event())
    finally:
        await client.aclose()
        await db.close()


def _thread_main(url: str) -> None:
    try:
        asyncio.run(deliver_forever(url))
    except Exception:
        log.exception("the delivery loop stopped")


def register(app: Celery, url: str) -> Sequence[str]:
    @worker_ready.connect(weak=False)  # type: ignore[untyped-decorator]
    def start_delivery_loop(**_: Any) -> None:
        threading.Thread(
            target=_thread_main, args=(url,), name="trigger-deliveries", daemon=True
        ).start()

    return []
