"""Requests that are not what they claim to be: bytes that are not a valid protobuf of the
request type, invalid UTF-8 (over gRPC and in a REST path), Timestamps outside their range
and numbers JSON cannot hold. Each is INVALID_ARGUMENT (400), never UNKNOWN or INTERNAL (500),
and nothing internal shows."""

from __future__ import annotations

import math

import grpc
import pytest
import requests
from google.protobuf import json_format, timestamp_pb2
from tnx.crm.v1 import (
    import_service_pb2,
    lead_pb2,
    lead_service_pb2,
    lead_service_pb2_grpc,
    scoring_pb2,
    scoring_service_pb2,
    scoring_service_pb2_grpc,
)

from server.errors import InvalidArgument
from server.rpc.convert import to_datetime
from tests.conftest import Workspace
from tests.support import db
from tests.support.errors import details, json_details
from tests.support.imports import Job, Stub

LeadStub = lead_service_pb2_grpc.LeadServiceStub
INTERNAL_NAMES = ("Error", "Exception", "Traceback", "server.", "grpc.", ".py")


def _raw_call(channel: grpc.Channel, method: str, payload: bytes, ws: Workspace) -> None:
    call = channel.unary_unary(
        method, request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    call(payload, metadata=ws.metadata, timeout=10)


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xff\xff\xff", b"\x0a\x10short", b"\x0a\x03\xff\xfe\xfd"],
    ids=["corrupt wire format", "truncated field", "invalid UTF-8 in a string"],
)
def test_bytes_that_are_not_the_request_message_are_invalid_argument(
    channel: grpc.Channel, workspace: Workspace, payload: bytes
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        _raw_call(channel, "/tnx.crm.v1.LeadService/GetLead", payload, workspace)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(refused.value)[0] == "REQUEST_MALFORMED"
    message = refused.value.details() or ""
    assert "not a valid tnx.crm.v1.GetLeadRequest message" in message


def test_an_undecodable_message_in_a_client_stream_is_invalid_argument_and_makes_no_job(
    channel: grpc.Channel, imports: Stub, workspace: Workspace, database_url: str
) -> None:
    header = import_service_pb2.UploadImportRequest(format=Job.CSV).SerializeToString()
    call = channel.stream_unary(
        "/tnx.crm.v1.ImportService/UploadImport",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.RpcError) as refused:
        call(iter([header, b"\xff\xff\xff"]), metadata=workspace.metadata, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tnx.crm.v1.UploadImportRequest" in (refused.value.details() or "")
    jobs = "SELECT count(*) FROM import_jobs WHERE workspace_id = %s"
    assert db.query(database_url, jobs, workspace.id) == [(0,)]


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(253_402_300_800, 0), (-62_135_596_801, 0), (10**15, 0), (0, -1), (0, 1_000_000_000)],
    ids=["after 9999", "before year 1", "far future", "negative nanos", "nanos of a second"],
)
def test_a_timestamp_out_of_range_is_invalid_argument_naming_the_field(
    leads: LeadStub, workspace: Workspace, seconds: int, nanos: int
) -> None:
    stamp = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    with pytest.raises(grpc.RpcError) as refused:
        leads.ListLeads(
            lead_service_pb2.ListLeadsRequest(created_after=stamp), metadata=workspace.metadata
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(refused.value) == ("TIMESTAMP_OUT_OF_RANGE", ["created_after"])


def test_a_nested_timestamp_out_of_range_names_its_path(
    channel: grpc.Channel, workspace: Workspace, database_url: str
) -> None:
    scoring = scoring_service_pb2_grpc.ScoringServiceStub(channel)
    activity = scoring_pb2.Activity(
        type="page_view",
        email="t@range.io",
        occurred_at=timestamp_pb2.Timestamp(seconds=10**12),
    )
    before = db.snapshot(database_url, workspace.id)
    with pytest.raises(grpc.RpcError) as refused:
        scoring.CreateActivity(
            scoring_service_pb2.CreateActivityRequest(activity=activity),
            metadata=workspace.metadata,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(refused.value) == ("TIMESTAMP_OUT_OF_RANGE", ["activity.occurred_at"])
    assert db.snapshot(database_url, workspace.id) == before


def test_the_conversion_helper_names_the_field_too() -> None:
    with pytest.raises(InvalidArgument) as refused:
        to_datetime(timestamp_pb2.Timestamp(seconds=10**13), "after")
    assert [v.field for v in refused.value.violations] == ["after"]
    in_range = to_datetime(timestamp_pb2.Timestamp(seconds=253_402_300_799), "after")
    assert in_range.year == 9999


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_a_custom_field_number_json_cannot_hold_is_invalid_argument(
    leads: LeadStub, workspace: Workspace, database_url: str, number: float
) -> None:
    lead = lead_pb2.Lead(email="nan@range.io")
    json_format.ParseDict({"ok": 1}, lead.custom_fields)
    lead.custom_fields["employees"] = number
    before = db.snapshot(database_url, workspace.id)
    with pytest.raises(grpc.RpcError) as refused:
        leads.CreateLead(lead_service_pb2.CreateLeadRequest(lead=lead), metadata=workspace.metadata)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(refused.value) == ("NUMBER_NOT_FINITE", ["lead.custom_fields.employees"])
    assert db.snapshot(database_url, workspace.id) == before


@pytest.mark.parametrize(
    "path",
    ["/crm/leads/%FF%FE", "/crm/leads/lead_%C3%28", "/crm/lists/%ED%A0%80/members"],
    ids=["invalid bytes", "broken sequence", "surrogate"],
)
def test_invalid_utf8_in_a_rest_path_is_a_client_error_without_internal_names(
    http: requests.Session, gateway_url: str, workspace: Workspace, path: str
) -> None:
    reply = http.get(f"{gateway_url}/api/v1{path}", headers=workspace.headers, timeout=10)
    assert reply.status_code in (400, 404), reply.text
    body = reply.json()
    assert body["message"] and not any(name in body["message"] for name in INTERNAL_NAMES)
    if reply.status_code == 400:
        assert json_details(body)[0] == "REQUEST_MALFORMED"


def test_invalid_utf8_in_a_rest_query_parameter_is_a_400(
    http: requests.Session, gateway_url: str, workspace: Workspace
) -> None:
    reply = http.get(
        f"{gateway_url}/api/v1/crm/leads?source=%FF%FE", headers=workspace.headers, timeout=10
    )
    assert reply.status_code == 400, reply.text
    assert not any(name in reply.json()["message"] for name in INTERNAL_NAMES)
