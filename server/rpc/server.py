"""Assemble and run the gRPC server: servicers, the request pipeline, health, reflection,
message limits and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tnx.crm.v1 import (
    company_service_pb2,
    company_service_pb2_grpc,
    enrichment_service_pb2,
    enrichment_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    form_service_pb2,
    form_service_pb2_grpc,
    import_service_pb2,
    import_service_pb2_grpc,
    lead_service_pb2,
    lead_service_pb2_grpc,
    scoring_service_pb2,
    scoring_service_pb2_grpc,
    segment_service_pb2,
    segment_service_pb2_grpc,
    trigger_service_pb2,
    trigger_service_pb2_grpc,
)
from tnx.public.v1 import public_form_service_pb2, public_form_service_pb2_grpc

from server.auth.service import Authenticator
from server.companies.rpc import CompanyServicer
from server.config import Settings
from server.db.engine import Database, make_engine
from server.db.secrets import shared_secret
from server.db.url import database_url
from server.enrichment import tasks as enrichment_tasks
from server.enrichment.rpc import EnrichmentServicer
from server.events.rpc import EventServicer
from server.forms import limits as form_limits
from server.forms import tokens as form_tokens
from server.forms.limits import SubmissionLimits
from server.forms.public_rpc import PublicFormServicer
from server.forms.rpc import FormServicer
from server.forms.submit import PublicForms
from server.imports import settings as import_settings
from server.imports.rpc import ImportServicer
from server.imports.tasks import enqueuer
from server.leads.rpc import LeadServicer
from server.observability import metrics
from server.outbound import AllowList
from server.pagination import CursorCodec
from server.rpc import health_watch
from server.rpc.interceptors import RequestInterceptor
from server.scoring import tasks as scoring_tasks
from server.scoring.rpc import ScoringServicer
from server.segments.rpc import SegmentServicer
from server.segments.service import RESUME_SECONDS, SegmentBuilder
from server.triggers.rpc import TriggerServicer

log = logging.getLogger("tnx.server")

SERVICE_NAMES = [
    lead_service_pb2.DESCRIPTOR.services_by_name["LeadService"].full_name,
    company_service_pb2.DESCRIPTOR.services_by_name["CompanyService"].full_name,
    segment_service_pb2.DESCRIPTOR.services_by_name["SegmentService"].full_name,
    event_service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
    import_service_pb2.DESCRIPTOR.services_by_name["ImportService"].full_name,
    form_service_pb2.DESCRIPTOR.services_by_name["FormService"].full_name,
    scoring_service_pb2.DESCRIPTOR.services_by_name["ScoringService"].full_name,
    trigger_service_pb2.DESCRIPTOR.services_by_name["TriggerService"].full_name,
    enrichment_service_pb2.DESCRIPTOR.services_by_name["EnrichmentService"].full_name,
    public_form_service_pb2.DESCRIPTOR.services_by_name["PublicFormService"].full_name,
]
SHUTDOWN_GRACE_S = 5.0


@dataclass
class App:
    """What servicers share: the database, the cursor codec, the segment builder."""

    db: Database
    cursors: CursorCodec
    builder: SegmentBuilder
    form_secret: bytes = b""  # signs embed tokens (server/forms/tokens.py)


async def build_app(url: str, *, pool_size: int = 10, sync_build_limit: int = 20_000) -> App:
    db = Database(make_engine(url, pool_size=pool_size))
    cursors = CursorCodec(await shared_secret(db, "cursor"))
    return App(
        db=db,
        cursors=cursors,
        builder=SegmentBuilder(db, sync_limit=sync_build_limit),
        form_secret=await shared_secret(db, form_tokens.SECRET_NAME),
    )


def build_server(
    app: App,
    settings: Settings,
    *,
    extra: Callable[[grpc.aio.Server], None] | None = None,
) -> tuple[grpc.aio.Server, Any]:
    """The server with every public service registered; `extra` may register more (the
    benchmark's echo service) so they run behind exactly the same pipeline."""
    authenticator = Authenticator(app.db)
    server = grpc.aio.server(
        interceptors=[RequestInterceptor(authenticator)],
        options=[
            ("grpc.max_receive_message_length", settings.max_request_bytes),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
        ],
    )
    lead_service_pb2_grpc.add_LeadServiceServicer_to_server(
        LeadServicer(app.db, app.cursors), server
    )
    company_service_pb2_grpc.add_CompanyServiceServicer_to_server(
        CompanyServicer(app.db, app.cursors), server
    )
    segment_service_pb2_grpc.add_SegmentServiceServicer_to_server(
        SegmentServicer(app.db, app.cursors, app.builder), server
    )
    event_service_pb2_grpc.add_EventServiceServicer_to_server(
        EventServicer(app.db, app.cursors, key_check=authenticator.still_valid), server
    )
    db_url = app.db.engine.url.render_as_string(hide_password=False)
    import_service_pb2_grpc.add_ImportServiceServicer_to_server(
        ImportServicer(app.db, app.cursors, import_settings.load(), enqueuer(settings, db_url)),
        server,
    )
    form_service_pb2_grpc.add_FormServiceServicer_to_server(
        FormServicer(app.db, app.cursors, app.form_secret, settings), server
    )
    scoring_service_pb2_grpc.add_ScoringServiceServicer_to_server(
        ScoringServicer(app.db, app.cursors, rebuild=scoring_tasks.enqueuer(settings, db_url)),
        server,
    )
    trigger_service_pb2_grpc.add_TriggerServiceServicer_to_server(
        TriggerServicer(app.db, app.cursors, AllowList.from_env()), server
    )
    enrichment_service_pb2_grpc.add_EnrichmentServiceServicer_to_server(
        EnrichmentServicer(
            app.db,
            app.cursors,
            AllowList.from_env(),
            enrichment_tasks.enqueuer(settings, db_url),
        ),
        server,
    )
    limits = SubmissionLimits(
        per_ip=settings.form_ip_rate_limit_per_minute, per_form=settings.form_rate_limit_per_minute
    )
    public_form_service_pb2_grpc.add_PublicFormServiceServicer_to_server(
        PublicFormServicer(PublicForms(app.db, app.form_secret, limits), settings.trusted_proxies),
        server,
    )
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if extra is not None:
        extra(server)
    reflection.enable_server_reflection(
        [*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    if settings.grpc_socket is not None:
        settings.grpc_socket.parent.mkdir(parents=True, exist_ok=True)
        server.add_insecure_port(f"unix:{settings.grpc_socket}")
    return server, health_servicer


async def serve(
    settings: Settings, *, extra: Callable[[grpc.aio.Server], None] | None = None
) -> None:
    app = await build_app(
        database_url(settings), sync_build_limit=settings.segment_sync_build_limit
    )
    server, health_servicer = build_server(app, settings, extra=extra)
    await server.start()
    if settings.grpc_socket is not None:  # for the gateway: no other local user may connect
        settings.grpc_socket.chmod(0o600)
    metrics.serve(metrics.port_from_env("CRM_METRICS_PORT"))
    # Rule segments whose build a stopped process cut short: now, and every so often.
    every = float(os.environ.get("CRM_SEGMENT_RESUME_SECONDS", "") or RESUME_SECONDS)
    resumer = asyncio.create_task(app.builder.resume_every(every))
    forgetter = asyncio.create_task(form_limits.forget_idle_every(app.db))
    names = [*SERVICE_NAMES, ""]
    await health_watch.set_all(health_servicer, names, health_watch.SERVING)
    watcher = asyncio.create_task(health_watch.watch_database(app.db, health_servicer, names))
    log.info("gRPC listening on %s:%d", settings.grpc_host, settings.grpc_port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: draining in-flight calls for up to %.0fs", SHUTDOWN_GRACE_S)
    watcher.cancel()
    resumer.cancel()
    forgetter.cancel()
    await health_watch.set_all(health_servicer, names, health_watch.NOT_SERVING)
    await server.stop(SHUTDOWN_GRACE_S)
    await app.db.close()
