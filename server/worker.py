"""The Celery application: background work (imports) on CRM_BROKER_URL.

Production and CI set CRM_BROKER_URL (Redis or RabbitMQ). Without it the broker is kombu's
SQLAlchemy transport on the stack's own PostgreSQL, so `tnx-crm up` needs no other server.

Delivery is at least once (late acks, requeue when a worker is lost, one message
prefetched per process); every task is safe to run twice because each job runs under a
per-job lock and commits its checkpoint with its data (server/imports/runner.py). Nothing
depends on the broker keeping messages: a sweeper in every worker enqueues unfinished jobs
again (server/imports/tasks.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from celery import Celery

from server.config import Settings
from server.db.url import database_url
from server.imports.settings import load as import_settings

RUN_IMPORT = "tnx.imports.run"
SQLA_POLL_SECONDS = 0.25


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
        task_default_queue=import_settings().queue,
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


def enqueue(app: Celery, job_id: str) -> None:
    app.send_task(RUN_IMPORT, args=[job_id], queue=import_settings().queue)


def enqueuer(settings: Settings, db_url: str) -> Callable[[str], None]:
    """What the gRPC server calls to hand a stored upload to the workers."""
    app = make_app(broker_url(settings, db_url))
    return partial(enqueue, app)
