"""Fixtures for enrichment: the EnrichmentService stub, the fake provider (a real HTTP
server on 127.0.0.2), a canary on 127.0.0.1 that nothing may reach, a real worker process,
and helpers that create connectors and leads and wait for runs."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from kombu import Queue
from tnx.crm.v1 import (
    enrichment_pb2,
    enrichment_service_pb2,
    enrichment_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    lead_pb2,
    lead_service_pb2,
    lead_service_pb2_grpc,
)

from server.db.url import normalise
from server.enrichment import tasks
from server.worker import make_app
from tests.conftest import Workspace
from tests.enrichment import fake_provider
from tests.enrichment.fake_provider import Provider
from tests.support.imports import ENRICHMENT_QUEUE, QUEUE, SCORING_QUEUE, WorkerProcess
from tests.triggers.receiver import Receiver, running

Enrichment = enrichment_service_pb2_grpc.EnrichmentServiceStub
Leads = lead_service_pb2_grpc.LeadServiceStub
Events = event_service_pb2_grpc.EventServiceStub
Connector = enrichment_pb2.Connector
Run = enrichment_pb2.EnrichmentRun
DONE = (Run.SUCCEEDED, Run.FAILED)
# The response paths of the fake provider's person, and the lead fields they fill.
PERSON_MAP = {
    "$.data.first_name": "first_name",
    "$.data.last_name": "last_name",
    "$.data.job_title": "title",
    "$.data.job_company_size": "custom.company_size",
}


@pytest.fixture
def enrichment(channel: grpc.Channel) -> Enrichment:
    return enrichment_service_pb2_grpc.EnrichmentServiceStub(channel)


@pytest.fixture
def events(channel: grpc.Channel) -> Events:
    return event_service_pb2_grpc.EventServiceStub(channel)


@pytest.fixture
def provider() -> Iterator[Provider]:
    with fake_provider.running() as found:
        yield found


@pytest.fixture
def canary() -> Iterator[Receiver]:
    """A server on 127.0.0.1, which the outbound guard must never let anything reach."""
    with running(host="127.0.0.1") as found:
        yield found


def broker(database_url: str) -> str:
    """The session's broker, as the server and the workers find it (server/worker.py)."""
    return os.environ.get("CRM_BROKER_URL") or "sqla+" + normalise(database_url)


def declare_queues(database_url: str) -> None:
    """The session's queues, declared before a worker starts: on the embedded broker the
    first use creates the broker's tables and queue rows, which a worker starting while the
    server queues its first run would otherwise race it to (`tnx-crm up` does the same)."""
    app = make_app(broker(database_url))
    with app.connection_for_write() as connection:
        for name in (QUEUE, SCORING_QUEUE, ENRICHMENT_QUEUE):
            Queue(name).bind(connection.default_channel).declare()


def start_worker(database_url: str, work_dir: Path, name: str = "worker") -> WorkerProcess:
    """`tnx-crm worker` with the session's queues, logging to enrichment-NAME.log."""
    declare_queues(database_url)
    worker = WorkerProcess(database_url, work_dir / f"enrichment-{name}.log")
    worker.start()
    return worker


@pytest.fixture(scope="module")
def enrichment_worker(database_url: str, work_dir: Path) -> Iterator[WorkerProcess]:
    worker = start_worker(database_url, work_dir)
    try:
        yield worker
    finally:
        worker.stop()


# -- connectors ------------------------------------------------------------------------


def http_json(
    url_template: str, headers: dict[str, str] | None = None, **fields: Any
) -> enrichment_pb2.HttpJsonConfig:
    if headers is None:
        headers = {"X-Api-Key": fake_provider.API_KEY}
    return enrichment_pb2.HttpJsonConfig(url_template=url_template, headers=headers, **fields)


def person_connector(provider: Provider, **fields: Any) -> Connector:
    """An HTTP_JSON connector to the fake provider, by email, with PERSON_MAP."""
    values: dict[str, Any] = {
        "name": "people data",
        "kind": Connector.HTTP_JSON,
        "http_json": http_json(provider.url_template()),
        "field_map": PERSON_MAP,
        "enabled": True,
        **fields,
    }
    return Connector(**values)


def built_in(kind: Any, **fields: Any) -> Connector:
    values: dict[str, Any] = {"name": f"built in {kind}", "enabled": True, **fields}
    return Connector(kind=kind, **values)


def create_connector(stub: Enrichment, ws: Workspace, connector: Connector) -> Connector:
    request = enrichment_service_pb2.CreateConnectorRequest(connector=connector)
    created: Connector = stub.CreateConnector(request, metadata=ws.metadata)
    return created


def get_connector(stub: Enrichment, ws: Workspace, connector_id: str) -> Connector:
    request = enrichment_service_pb2.GetConnectorRequest(id=connector_id)
    found: Connector = stub.GetConnector(request, metadata=ws.metadata)
    return found


# -- leads -----------------------------------------------------------------------------


def new_lead(leads: Leads, ws: Workspace, email: str, **fields: Any) -> lead_pb2.Lead:
    request = lead_service_pb2.CreateLeadRequest(lead=lead_pb2.Lead(email=email, **fields))
    lead: lead_pb2.Lead = leads.CreateLead(request, metadata=ws.metadata)
    return lead


def new_leads(
    leads: Leads, ws: Workspace, emails: Sequence[str], **fields: Any
) -> list[lead_pb2.Lead]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda email: new_lead(leads, ws, email, **fields), emails))


def get_lead(leads: Leads, ws: Workspace, lead_id: str) -> lead_pb2.Lead:
    request = lead_service_pb2.GetLeadRequest(id=lead_id)
    lead: lead_pb2.Lead = leads.GetLead(request, metadata=ws.metadata)
    return lead


# -- runs ------------------------------------------------------------------------------


def enrich(stub: Enrichment, ws: Workspace, lead_id: str, *connector_ids: str) -> Run:
    request = enrichment_service_pb2.EnrichLeadRequest(id=lead_id, connector_ids=connector_ids)
    run: Run = stub.EnrichLead(request, metadata=ws.metadata)
    return run


def batch(stub: Enrichment, ws: Workspace, *connector_ids: str, **selection: str) -> Run:
    request = enrichment_service_pb2.BatchEnrichRequest(connector_ids=connector_ids, **selection)
    run: Run = stub.BatchEnrich(request, metadata=ws.metadata)
    return run


def get_run(stub: Enrichment, ws: Workspace, run_id: str) -> Run:
    request = enrichment_service_pb2.GetEnrichmentRunRequest(id=run_id)
    run: Run = stub.GetEnrichmentRun(request, metadata=ws.metadata)
    return run


def wait_run(stub: Enrichment, ws: Workspace, run_id: str, timeout: float = 60) -> Run:
    """The run once it has ended (the first run of a module waits for its worker to boot)."""
    deadline = time.monotonic() + timeout
    while True:
        run = get_run(stub, ws, run_id)
        if run.state in DONE:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"the run did not end in {timeout} s: {run}")
        time.sleep(0.05)


def send_run(database_url: str, run_id: str) -> None:
    """Queue a run's task as the server (or the sweeper) does, on the session's queue."""
    app = make_app(broker(database_url))
    app.send_task(tasks.RUN, args=[run_id], queue=ENRICHMENT_QUEUE)


def enrich_and_wait(stub: Enrichment, ws: Workspace, lead_id: str, *connector_ids: str) -> Run:
    return wait_run(stub, ws, enrich(stub, ws, lead_id, *connector_ids).id)


def provenance(stub: Enrichment, ws: Workspace, lead_id: str) -> dict[str, Any]:
    """The lead's enriched fields by name."""
    request = enrichment_service_pb2.GetLeadEnrichmentRequest(id=lead_id)
    reply = stub.GetLeadEnrichment(request, metadata=ws.metadata)
    return {f.field: f for f in reply.fields}


def enriched_events(stub: Events, ws: Workspace, lead_id: str) -> list[dict[str, Any]]:
    """The payloads of the lead's lead.enriched events, oldest first."""
    request = event_service_pb2.ListEventsRequest(
        types=["lead.enriched"], subject_id=lead_id, limit=1000
    )
    reply = stub.ListEvents(request, metadata=ws.metadata)
    return [json_format.MessageToDict(e.payload) for e in reply.events]
