"""Celery entry points for scoring: rebuilding a workspace's scores after a model change,
and the periodic tick (sent by `tnx-crm scheduler`, Celery beat) that applies decay and
carries on any rebuild a dead worker left.

Both are safe to run twice or concurrently: a score is recomputed from scratch, each batch
is its own transaction, and a rebuild's progress is the lead_scores rows it wrote.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from celery import Celery
from sqlalchemy import text

from server.config import Settings
from server.db.engine import Database, run_with_database
from server.scoring import rescoring

log = logging.getLogger("tnx.scoring")

# Names that travel in broker messages: keep them stable.
REBUILD = "tnx.scoring.rebuild"
TICK = "tnx.scoring.tick"
T = TypeVar("T")


def queue() -> str:
    return os.environ.get("CRM_SCORING_QUEUE", "scoring")


def tick_seconds() -> float:
    """How often decay is applied: a crossing it causes is emitted within this long."""
    return float(os.environ.get("CRM_SCORING_TICK_SECONDS", "60"))


async def rebuild(db: Database, workspace_id: str) -> int:
    """Rescore the workspace's leads with its current model, a batch per transaction."""
    total = 0
    after: str | None = ""
    while after is not None:
        async with db.transaction() as conn:
            step = await rescoring.rebuild_batch(conn, workspace_id=workspace_id, after=after)
        total += step.rescored
        after = step.after
    return total


async def tick(db: Database, *, at: datetime | None = None) -> int:
    """One pass: carry on unfinished rebuilds, then decay every lead whose moment has come."""
    async with db.read() as conn:
        building = (
            await conn.scalars(
                text("SELECT workspace_id FROM scoring_models WHERE state = 'building'")
            )
        ).all()
    for workspace_id in building:
        await rebuild(db, workspace_id)
    moment = at or datetime.now(UTC)
    total = 0
    async with db.transaction() as reader:
        async for due in rescoring.due_batches(reader, at=moment):
            async with db.transaction() as conn:
                total += await rescoring.decay(conn, at=moment, due=due)
    return total


def register(app: Celery, url: str) -> Sequence[str]:
    @app.task(  # type: ignore[untyped-decorator]
        name=REBUILD, acks_late=True, reject_on_worker_lost=True, ignore_result=True
    )
    def run_rebuild(workspace_id: str) -> None:
        count = run_with_database(url, lambda db: rebuild(db, workspace_id))
        log.info("workspace %s: %d leads rescored with its new model", workspace_id, count)

    @app.task(  # type: ignore[untyped-decorator]
        name=TICK, acks_late=True, reject_on_worker_lost=True, ignore_result=True
    )
    def run_tick() -> None:
        count = run_with_database(url, tick)
        if count:
            log.info("decay: %d leads rescored", count)

    return [queue()]


def enqueue_rebuild(app: Celery, workspace_id: str) -> None:
    app.send_task(REBUILD, args=[workspace_id], queue=queue())


def enqueuer(settings: Settings, db_url: str) -> Callable[[str], None]:
    """What the gRPC server calls to have a workspace rescored after a model change."""
    from server.worker import broker_url, make_app

    return partial(enqueue_rebuild, make_app(broker_url(settings, db_url)))


def scheduler_main(settings: Settings, url: str) -> None:
    """`tnx-crm scheduler`: Celery beat, sending the scoring tick every tick_seconds()."""
    from server.worker import broker_url, make_app

    app = make_app(broker_url(settings, url))
    app.conf.beat_schedule = {
        "scoring-tick": {"task": TICK, "schedule": tick_seconds(), "options": {"queue": queue()}}
    }
    schedule = Path(settings.data_dir) / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    args: list[Any] = ["beat", f"--loglevel={settings.log_level}", "--schedule", str(schedule)]
    app.start(args)
