"""The Celery application and the `tnx-crm worker` process: every domain's background work
(imports today) on CRM_BROKER_URL.

Production and CI set CRM_BROKER_URL (Redis or RabbitMQ). Without it the broker is kombu's
SQLAlchemy transport on the stack's own PostgreSQL, so `tnx-crm up` needs no other server.

Delivery is at least once (late acks, requeue when a worker is lost, one message
prefetched per process); every task is safe to run twice because each job runs under a
per-job lock and commits its checkpoint with its data (server/imports/runner.py). Nothing
depends on the broker keeping messages: a sweeper in every worker enqueues unfinished jobs
again (server/imports/tasks.py).

A domain's tasks live in its own tasks.py, listed in TASK_MODULES: each exposes
`register(app, url)`, which adds its tasks (and worker signal handlers) to the worker's app
and returns the queues they travel on. This module imports none of them at module level
(they import it for make_app); worker_main loads them by name.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import Protocol, cast

from celery import Celery

from server.config import Settings
from server.db.url import database_url

# Every domain whose tasks a worker runs; a worker listens to all of their queues.
TASK_MODULES: tuple[str, ...] = (
    "server.imports.tasks",
    "server.scoring.tasks",
    "server.triggers.tasks",
    "server.enrichment.tasks",
)
SQLA_POLL_SECONDS = 0.25


class TaskModule(Protocol):
    def register(self, app: Celery, url: str) -> Sequence[str]:
        """Add this domain's tasks to the app; returns the queues they travel on."""
        ...


def broker_url(settings: Settings, db_url: str | None = None) -> str:
    if settings.broker_url:
        return settings.broker_url
    return "sqla+" + (db_url or database_url(settings))


def make_app(broker: str) -> Celery:
    app = Celery("tnx_crm", broker=broker, set_as_current=False)
    transport_options: dict[str, object] = {"visibility_timeout": 3600}
    if broker.startswith("sqla+"):
        # kombu hands the SQLAlchemy transport's options to create_engine, so its polling
        # interval (1 s by default: a second of latency per job) can't be set there.
        from kombu.transport import sqlalchemy as kombu_sqla

        kombu_sqla.Transport.polling_interval = SQLA_POLL_SECONDS
        transport_options = {"pool_pre_ping": True}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        # No task_default_queue: every send names its domain's queue (a setting of that
        # domain), so no domain's messages land on another's by default.
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        # A publish must not hang an upload's reply when the broker is down: the job is
        # QUEUED in PostgreSQL and the sweeper enqueues it again.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


def register_all(app: Celery, url: str) -> list[str]:
    """Every TASK_MODULES module's tasks on the app; the queues they need, each once."""
    queues: list[str] = []
    for name in TASK_MODULES:
        module = cast(TaskModule, importlib.import_module(name))
        queues.extend(q for q in module.register(app, url) if q not in queues)
    return queues


def declare_queues(settings: Settings, url: str) -> list[str]:
    """Declare every domain's queue once, before processes that would each declare them
    start together: kombu's SQLAlchemy transport creates a queue with a plain INSERT, so
    two workers (or a worker and the scheduler) starting at once could collide on it."""
    from kombu import Queue

    app = make_app(broker_url(settings, url))
    queues = register_all(app, url)
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for name in queues:
            Queue(name).bind(channel).declare()
    return queues


def _import_jobs_by_state(url: str) -> list[tuple[str, int]]:
    import psycopg

    from server.db.url import libpq_url

    with psycopg.connect(libpq_url(url), connect_timeout=3) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM import_jobs"
            " WHERE status IN ('UPLOADING', 'QUEUED', 'RUNNING') GROUP BY status"
        ).fetchall()
    return [(str(status), int(count)) for status, count in rows]


def _serve_metrics(app: Celery, url: str) -> None:
    """CRM_WORKER_METRICS_PORT: /metrics (import rows, deliveries, import queue depth) and
    /livez, which is 200 from the moment the worker consumes its queues until it stops."""
    from celery import signals
    from prometheus_client.core import REGISTRY

    from server.observability import metrics

    port = metrics.port_from_env("CRM_WORKER_METRICS_PORT")
    if port <= 0:
        return
    consuming = {"now": False}
    signals.worker_ready.connect(lambda **_: consuming.update(now=True), weak=False)
    signals.worker_shutting_down.connect(lambda **_: consuming.update(now=False), weak=False)
    REGISTRY.register(metrics.QueueDepth(lambda: _import_jobs_by_state(url)))
    metrics.serve(port, live=lambda: consuming["now"])


def worker_main(settings: Settings, url: str) -> None:
    """`tnx-crm worker`: one process, one task at a time (run more processes for more)."""
    app = make_app(broker_url(settings, url))
    queues = register_all(app, url)
    _serve_metrics(app, url)
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            f"--loglevel={settings.log_level}",
            "--queues",
            ",".join(queues),
            # Broadcast features the SQLAlchemy transport lacks, and the queues need none.
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--hostname",
            f"worker-{os.getpid()}@%h",
        ]
    )
