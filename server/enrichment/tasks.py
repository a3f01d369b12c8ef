"""Celery entry points for enrichment: a run is one task (`tnx.enrichment.run`), and a
sweeper in every worker enqueues again the runs a dead worker left unfinished (a run
continues from its checkpoint; two workers never run one run at once)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from celery import Celery
from celery.signals import worker_ready

from server.config import Settings
from server.db.engine import Database, run_with_database
from server.enrichment import queries
from server.enrichment.runner import Runner
from server.outbound import OutboundClient

log = logging.getLogger("tnx.enrichment")

RUN = "tnx.enrichment.run"  # travels in broker messages: keep it stable
SWEEP_SECONDS = 30.0


def queue() -> str:
    return os.environ.get("CRM_ENRICHMENT_QUEUE", "enrichment")


async def execute(db: Database, run_id: str) -> None:
    async with OutboundClient() as client:
        await Runner(db, client).run(run_id)


def register(app: Celery, url: str) -> Sequence[str]:
    @app.task(  # type: ignore[untyped-decorator]
        name=RUN, acks_late=True, reject_on_worker_lost=True, ignore_result=True
    )
    def run_enrichment(run_id: str) -> None:
        # The run's lock, a batch's writes and the next batch's lookups at once.
        run_with_database(url, lambda db: execute(db, run_id), pool_size=4)

    @worker_ready.connect(weak=False)  # type: ignore[untyped-decorator]
    def start_sweeper(**_: Any) -> None:
        threading.Thread(
            target=_sweep_forever, args=(app, url), name="enrichment-sweeper", daemon=True
        ).start()

    return [queue()]


def _sweep_forever(app: Celery, url: str) -> None:
    stop = threading.Event()
    while not stop.wait(SWEEP_SECONDS):
        try:
            for run_id in run_with_database(url, _unfinished):
                enqueue(app, run_id)
        except Exception:
            log.warning("enrichment sweep failed; trying again later", exc_info=True)


async def _unfinished(db: Database) -> list[str]:
    async with db.read() as conn:
        return await queries.unfinished_runs(conn, older_than_seconds=2 * SWEEP_SECONDS)


def enqueue(app: Celery, run_id: str) -> None:
    app.send_task(RUN, args=[run_id], queue=queue())


def enqueuer(settings: Settings, db_url: str) -> Callable[[str], None]:
    """What the gRPC server calls to have a run carried out."""
    from server.worker import broker_url, make_app

    return partial(enqueue, make_app(broker_url(settings, db_url)))
