"""EnrichmentService over gRPC: proto ↔ domain translation only."""

from __future__ import annotations

import json
from typing import Any

import grpc
from google.protobuf import empty_pb2
from tnx.crm.v1 import enrichment_pb2, enrichment_service_pb2, enrichment_service_pb2_grpc

from server.db.engine import Database
from server.enrichment import service
from server.enrichment.model import (
    Connector,
    ConnectorInput,
    ConnectorKind,
    HttpJson,
    Overwrite,
    Run,
    RunState,
)
from server.outbound import AllowList
from server.pagination import CursorCodec
from server.rpc.context import workspace_id
from server.rpc.convert import timestamp, update_paths

Context = grpc.aio.ServicerContext[Any, Any]
Proto = enrichment_pb2.Connector
_KIND = {
    ConnectorKind.HTTP_JSON: Proto.HTTP_JSON,
    ConnectorKind.COMPANY_FROM_DOMAIN: Proto.COMPANY_FROM_DOMAIN,
    ConnectorKind.EMAIL_FLAGS: Proto.EMAIL_FLAGS,
    ConnectorKind.NAME_FROM_EMAIL: Proto.NAME_FROM_EMAIL,
    ConnectorKind.PHONE_NORMALIZE: Proto.PHONE_NORMALIZE,
}
_KIND_FROM_PROTO = {v: k for k, v in _KIND.items()}
_OVERWRITE = {Overwrite.FILL_EMPTY: Proto.FILL_EMPTY, Overwrite.OVERWRITE: Proto.OVERWRITE}
_STATE = {
    RunState.QUEUED: enrichment_pb2.EnrichmentRun.QUEUED,
    RunState.RUNNING: enrichment_pb2.EnrichmentRun.RUNNING,
    RunState.SUCCEEDED: enrichment_pb2.EnrichmentRun.SUCCEEDED,
    RunState.FAILED: enrichment_pb2.EnrichmentRun.FAILED,
}


def from_proto(message: enrichment_pb2.Connector) -> ConnectorInput:
    http_json = None
    if message.HasField("http_json"):
        h = message.http_json
        http_json = HttpJson(
            method=h.method or "GET",
            url_template=h.url_template,
            headers=dict(h.headers),
            body_template=h.body_template,
            no_match_statuses=tuple(h.no_match_statuses) or (404,),
            no_match_path=h.no_match_path,
        )
    return ConnectorInput(
        name=message.name,
        kind=_KIND_FROM_PROTO.get(message.kind),
        http_json=http_json,
        field_map=dict(message.field_map),
        overwrite=Overwrite.OVERWRITE
        if message.overwrite == Proto.OVERWRITE
        else Overwrite.FILL_EMPTY,
        enabled=message.enabled,
        rate_limit_per_minute=message.rate_limit_per_minute,
        monthly_budget=message.monthly_budget,
        cache_ttl_seconds=message.cache_ttl_seconds or 30 * 86400,
    )


def to_proto(connector: Connector) -> enrichment_pb2.Connector:
    message = enrichment_pb2.Connector(
        id=connector.id,
        name=connector.name,
        kind=_KIND[connector.kind],
        field_map=connector.field_map,
        overwrite=_OVERWRITE[connector.overwrite],
        enabled=connector.enabled,
        rate_limit_per_minute=connector.rate_limit_per_minute,
        monthly_budget=connector.monthly_budget,
        calls_this_month=connector.calls_this_month,
        cache_ttl_seconds=connector.cache_ttl_seconds,
        created_at=timestamp(connector.created_at),
        updated_at=timestamp(connector.updated_at),
    )
    if connector.http_json is not None:
        h = connector.http_json
        message.http_json.CopyFrom(
            enrichment_pb2.HttpJsonConfig(
                method=h.method,
                url_template=h.url_template,
                header_names=sorted(h.headers),  # never the values
                body_template=h.body_template,
                no_match_statuses=list(h.no_match_statuses),
                no_match_path=h.no_match_path,
            )
        )
    return message


def run_to_proto(run: Run) -> enrichment_pb2.EnrichmentRun:
    return enrichment_pb2.EnrichmentRun(
        id=run.id,
        state=_STATE[run.state],
        connector_ids=run.connector_ids,
        lead_id=run.lead_id,
        filter=run.filter,
        segment_id=run.segment_id,
        total=run.total,
        processed=run.processed,
        changed=run.changed,
        provider_calls=run.provider_calls,
        cache_hits=run.cache_hits,
        errors=[
            enrichment_pb2.EnrichmentError(
                lead_id=e.lead_id, connector_id=e.connector_id, reason=e.reason, message=e.message
            )
            for e in run.errors
        ],
        error_count=run.error_count,
        created_at=timestamp(run.created_at),
        finished_at=timestamp(run.finished_at),
    )


class EnrichmentServicer(enrichment_service_pb2_grpc.EnrichmentServiceServicer):
    def __init__(
        self, db: Database, cursors: CursorCodec, allow: AllowList, enqueue: service.Enqueue
    ) -> None:
        self.db, self.cursors, self.allow, self.enqueue = db, cursors, allow, enqueue

    async def CreateConnector(
        self, request: enrichment_service_pb2.CreateConnectorRequest, context: Context
    ) -> enrichment_pb2.Connector:
        connector = await service.create_connector(
            self.db, self.allow, workspace_id=workspace_id(), data=from_proto(request.connector)
        )
        return to_proto(connector)

    async def GetConnector(
        self, request: enrichment_service_pb2.GetConnectorRequest, context: Context
    ) -> enrichment_pb2.Connector:
        return to_proto(
            await service.get_connector(
                self.db, workspace_id=workspace_id(), connector_id=request.id
            )
        )

    async def UpdateConnector(
        self, request: enrichment_service_pb2.UpdateConnectorRequest, context: Context
    ) -> enrichment_pb2.Connector:
        paths, _ = update_paths(request.connector, request.update_mask)
        connector = await service.update_connector(
            self.db,
            self.allow,
            workspace_id=workspace_id(),
            connector_id=request.connector.id,
            data=from_proto(request.connector),
            paths=[p for p in paths if p != "kind"],
        )
        return to_proto(connector)

    async def DeleteConnector(
        self, request: enrichment_service_pb2.DeleteConnectorRequest, context: Context
    ) -> empty_pb2.Empty:
        await service.delete_connector(
            self.db, workspace_id=workspace_id(), connector_id=request.id
        )
        return empty_pb2.Empty()

    async def ListConnectors(
        self, request: enrichment_service_pb2.ListConnectorsRequest, context: Context
    ) -> enrichment_service_pb2.ListConnectorsResponse:
        page = await service.list_connectors(
            self.db,
            self.cursors,
            workspace_id=workspace_id(),
            limit=request.limit,
            cursor=request.cursor,
        )
        return enrichment_service_pb2.ListConnectorsResponse(
            connectors=[to_proto(c) for c in page.connectors], next_cursor=page.next_cursor
        )

    async def EnrichLead(
        self, request: enrichment_service_pb2.EnrichLeadRequest, context: Context
    ) -> enrichment_pb2.EnrichmentRun:
        run = await service.enrich_lead(
            self.db,
            self.enqueue,
            workspace_id=workspace_id(),
            lead_id=request.id,
            connector_ids=list(request.connector_ids),
        )
        return run_to_proto(run)

    async def BatchEnrich(
        self, request: enrichment_service_pb2.BatchEnrichRequest, context: Context
    ) -> enrichment_pb2.EnrichmentRun:
        run = await service.batch_enrich(
            self.db,
            self.enqueue,
            workspace_id=workspace_id(),
            filter_text=request.filter,
            segment_id=request.segment_id,
            connector_ids=list(request.connector_ids),
        )
        return run_to_proto(run)

    async def GetEnrichmentRun(
        self, request: enrichment_service_pb2.GetEnrichmentRunRequest, context: Context
    ) -> enrichment_pb2.EnrichmentRun:
        return run_to_proto(
            await service.get_run(self.db, workspace_id=workspace_id(), run_id=request.id)
        )

    async def GetLeadEnrichment(
        self, request: enrichment_service_pb2.GetLeadEnrichmentRequest, context: Context
    ) -> enrichment_service_pb2.GetLeadEnrichmentResponse:
        found = await service.lead_enrichment(
            self.db, workspace_id=workspace_id(), lead_id=request.id
        )
        return enrichment_service_pb2.GetLeadEnrichmentResponse(
            fields=[
                enrichment_pb2.EnrichedField(
                    field=f.field,
                    value=json.dumps(f.value),
                    connector_id=f.connector_id,
                    enriched_at=timestamp(f.enriched_at),
                )
                for f in found
            ]
        )
