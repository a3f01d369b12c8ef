"""Celery entry points for imports: the task that runs a job, how the gRPC server enqueues
it, and the sweeper every worker runs (at start and then periodically) so no job depends on
the broker keeping its message. server.worker registers this module (TASK_MODULES).

The sweeper enqueues again: RUNNING jobs whose lock nobody holds (their worker died), and
QUEUED jobs enqueued longer ago than CRM_IMPORT_REQUEUE_SECONDS (a broker that lost the
message, e.g. a Redis restarted without persistence). A duplicate message is harmless: the
job's lock and checkpoint make a second delivery a no-op. Uploads that went silent long ago
are failed and their chunks dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg
from celery import Celery
from celery.signals import worker_ready

from server.config import Settings
from server.db.url import libpq_url
from server.imports import runner
from server.imports.settings import ImportSettings
from server.imports.settings import load as import_settings
from server.worker import broker_url, make_app

# The task's name is what travels in broker messages: queued jobs of a running deployment
# carry it, so it never changes.
RUN_IMPORT = "tnx.imports.run"

log = logging.getLogger("tnx.imports.sweeper")

CANDIDATES = """
SELECT id FROM import_jobs
WHERE status IN ('QUEUED', 'RUNNING')
  AND (status = 'RUNNING' OR enqueued_at IS NULL
       OR enqueued_at < now() - make_interval(secs => %(requeue)s))
  AND (enqueued_at IS NULL OR enqueued_at < now() - make_interval(secs => %(again)s))
ORDER BY id
"""
HELD_LOCKS = """
SELECT objid::bigint FROM pg_locks
WHERE locktype = 'advisory' AND classid = %s AND objsubid = 1 AND granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def enqueue(app: Celery, job_id: str) -> None:
    app.send_task(RUN_IMPORT, args=[job_id], queue=import_settings().queue)


def enqueuer(settings: Settings, db_url: str) -> Callable[[str], None]:
    """What the gRPC server calls to hand a stored upload to the workers."""
    app = make_app(broker_url(settings, db_url))
    return partial(enqueue, app)


def register(app: Celery, url: str) -> list[str]:
    """The import task and the sweeper on a worker's app; returns the imports queue."""
    limits = import_settings()

    @app.task(  # type: ignore[untyped-decorator]
        name=RUN_IMPORT, acks_late=True, reject_on_worker_lost=True, ignore_result=True
    )
    def run_import(job_id: str) -> None:
        runner.run(url, job_id, limits)

    @worker_ready.connect(weak=False)  # type: ignore[untyped-decorator]
    def start_sweeper(**_: Any) -> None:
        thread = threading.Thread(
            target=sweep_forever, args=(app, url, limits), name="import-sweeper", daemon=True
        )
        thread.start()

    return [limits.queue]


def sweep_forever(app: Celery, url: str, limits: ImportSettings) -> None:
    stop = threading.Event()
    while True:
        try:
            sweep(app, url, limits)
        except Exception:
            log.warning(
                "import sweep failed; next try in %.0fs", limits.sweep_seconds, exc_info=True
            )
        if stop.wait(limits.sweep_seconds):
            return


def _orphans(conn: psycopg.Connection[Any], limits: ImportSettings) -> list[str]:
    """Unfinished jobs no worker holds the lock of (and not just enqueued)."""
    params = {"requeue": limits.requeue_seconds, "again": limits.sweep_seconds}
    candidates = [r[0] for r in conn.execute(CANDIDATES, params).fetchall()]
    if not candidates:
        return []
    namespace = runner.LOCK_NAMESPACE
    held = {r[0] for r in conn.execute(HELD_LOCKS, (namespace,)).fetchall()}
    return [job_id for job_id in candidates if runner.lock_key(job_id)[1] not in held]


def sweep(app: Celery, url: str, limits: ImportSettings) -> list[str]:
    """One pass; returns the ids enqueued again."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(
            "WITH stale AS (UPDATE import_jobs SET status = 'FAILED', finished_at = now(), "
            "updated_at = now(), error = 'the upload never completed' "
            "WHERE status = 'UPLOADING' AND updated_at < now() - make_interval(secs => %s) "
            "RETURNING id) DELETE FROM import_chunks WHERE job_id IN (SELECT id FROM stale)",
            (limits.upload_stale_seconds,),
        )
        orphans = _orphans(conn, limits)
        for job_id in orphans:
            enqueue(app, job_id)
            conn.execute("UPDATE import_jobs SET enqueued_at = now() WHERE id = %s", (job_id,))
            log.info("import %s enqueued again", job_id)
    return orphans
