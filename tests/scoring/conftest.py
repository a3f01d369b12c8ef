"""Fixtures and helpers for activities and scoring tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from tnx.crm.v1 import lead_pb2, lead_service_pb2, lead_service_pb2_grpc, scoring_service_pb2_grpc

from tests.conftest import Workspace
from tests.support import db

Scoring = scoring_service_pb2_grpc.ScoringServiceStub
Leads = lead_service_pb2_grpc.LeadServiceStub


@pytest.fixture
def scoring(channel: grpc.Channel) -> Scoring:
    return scoring_service_pb2_grpc.ScoringServiceStub(channel)


def new_lead(leads: Leads, ws: Workspace, email: str) -> lead_pb2.Lead:
    reply: lead_pb2.Lead = leads.CreateLead(
        lead_service_pb2.CreateLeadRequest(lead=lead_pb2.Lead(email=email)), metadata=ws.metadata
    )
    return reply


def last_activity_at(leads: Leads, ws: Workspace, lead_id: str) -> datetime | None:
    lead = leads.GetLead(lead_service_pb2.GetLeadRequest(id=lead_id), metadata=ws.metadata)
    if not lead.HasField("last_activity_at"):
        return None
    found: datetime = lead.last_activity_at.ToDatetime(tzinfo=UTC)
    return found


def stamp(value: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message


def stored(database_url: str, workspace_id: str) -> list[tuple[Any, ...]]:
    """The workspace's activities as stored: (id, lead_id, type, data, occurred_at, source,
    idempotency_key), oldest id first."""
    return db.query(
        database_url,
        "SELECT id, lead_id, type, data, occurred_at, source, idempotency_key FROM activities"
        " WHERE workspace_id = %s ORDER BY id",
        workspace_id,
    )


def written(database_url: str, workspace_id: str) -> list[tuple[Any, ...]]:
    """Everything recording activities can write in a workspace, to show a refusal wrote
    nothing: the usual snapshot, the activities, and the leads' last_activity_at."""
    return [
        *db.snapshot(database_url, workspace_id),
        *stored(database_url, workspace_id),
        *db.query(
            database_url,
            "SELECT id, last_activity_at FROM leads WHERE workspace_id = %s ORDER BY id",
            workspace_id,
        ),
    ]
