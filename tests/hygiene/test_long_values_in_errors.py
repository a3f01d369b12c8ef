"""An error never carries a whole huge value back: messages, field violations and ErrorInfo
metadata are cut to a sane length, so a 100 KB bad value is a clear INVALID_ARGUMENT (400)
naming the field, not RESOURCE_EXHAUSTED over gRPC or a 502 "protocol error" over REST (the
error's trailers would pass every header limit)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import grpc
import pytest
import requests
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from tnx.crm.v1 import (
    company_pb2,
    company_service_pb2,
    company_service_pb2_grpc,
    lead_pb2,
    lead_service_pb2,
    lead_service_pb2_grpc,
)

from server.errors import FieldViolation, InvalidArgument
from server.rpc.errors import to_status
from tests.conftest import Workspace
from tests.support import db
from tests.support.errors import details, json_details

HUGE = 100 * 1024
LeadStub = lead_service_pb2_grpc.LeadServiceStub
MAX_MESSAGE = 1100  # the cut (1,024 bytes) and its ellipsis
MAX_DETAILS_BYTES = 8 * 1024

# (RPC caller, the violated field) for a 100 KB value where the API checks it
GRPC_CASES: dict[str, tuple[str, str]] = {
    "email": ("lead", "lead.email"),
    "country": ("company", "company.country"),
    "filter": ("filter", "filter"),
    "custom field key": ("custom key", "lead.custom_fields"),
}


def _call(channel: grpc.Channel, ws: Workspace, kind: str) -> None:
    leads = LeadStub(channel)
    if kind == "lead":
        lead = lead_pb2.Lead(email="a" * HUGE)
        leads.CreateLead(lead_service_pb2.CreateLeadRequest(lead=lead), metadata=ws.metadata)
    elif kind == "company":
        companies = company_service_pb2_grpc.CompanyServiceStub(channel)
        company = company_pb2.Company(name="Acme", country="Z" * HUGE)
        companies.CreateCompany(
            company_service_pb2.CreateCompanyRequest(company=company), metadata=ws.metadata
        )
    elif kind == "filter":
        request = lead_service_pb2.ListLeadsRequest(filter="q" * HUGE + " = 1")
        leads.ListLeads(request, metadata=ws.metadata)
    else:
        lead = lead_pb2.Lead(email="key@long.io")
        json_format.ParseDict({"k" * HUGE: "v"}, lead.custom_fields)
        leads.CreateLead(lead_service_pb2.CreateLeadRequest(lead=lead), metadata=ws.metadata)


@pytest.mark.parametrize("case", list(GRPC_CASES))
def test_a_100kb_bad_value_over_grpc_is_invalid_argument_with_a_short_error(
    case: str, channel: grpc.Channel, workspace: Workspace, database_url: str
) -> None:
    kind, field = GRPC_CASES[case]
    before = db.snapshot(database_url, workspace.id)
    with pytest.raises(grpc.RpcError) as refused:
        _call(channel, workspace, kind)
    error = refused.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    _, fields = details(error)
    assert fields and all(name.startswith(field) and len(name) <= 300 for name in fields)
    assert len(error.details() or "") <= MAX_MESSAGE
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None and status.ByteSize() <= MAX_DETAILS_BYTES
    assert db.snapshot(database_url, workspace.id) == before


def test_a_100kb_unknown_id_is_not_found_with_a_short_error(
    channel: grpc.Channel, workspace: Workspace
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        LeadStub(channel).GetLead(
            lead_service_pb2.GetLeadRequest(id="lead_" + "x" * HUGE), metadata=workspace.metadata
        )
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(refused.value.details() or "") <= MAX_MESSAGE


REST_CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "lead email": ("/crm/leads", {"email": "b" * HUGE}, "lead.email"),
    "company country": ("/crm/companies", {"name": "Acme", "country": "Y" * HUGE}, "company"),
    "custom field key": (
        "/crm/leads",
        {"email": "k@long.io", "custom_fields": {"k" * HUGE: 1}},
        "lead.custom_fields",
    ),
}


@pytest.mark.parametrize("case", list(REST_CASES))
def test_a_100kb_bad_value_over_rest_is_a_400_naming_the_field(
    case: str,
    http: requests.Session,
    gateway_url: str,
    workspace: Workspace,
    database_url: str,
) -> None:
    path, body, field = REST_CASES[case]
    before = db.snapshot(database_url, workspace.id)
    reply = http.post(
        f"{gateway_url}/api/v1{path}", json=body, headers=workspace.headers, timeout=30
    )
    assert reply.status_code == 400, reply.text[:500]
    _, fields = json_details(reply.json())
    assert fields and all(name.startswith(field) and len(name) <= 300 for name in fields)
    assert len(reply.json()["message"]) <= MAX_MESSAGE
    assert len(reply.content) <= MAX_DETAILS_BYTES
    assert db.snapshot(database_url, workspace.id) == before


def test_every_text_of_a_status_is_cut_so_its_trailers_stay_under_grpcs_limits() -> None:
    huge = "é" * HUGE  # two bytes each, six once percent-encoded in grpc-message
    exc = InvalidArgument(
        message=huge,
        reason="HUGE",
        violations=[FieldViolation(f"f{i}" + huge, huge) for i in range(500)],
        metadata={"id": huge},
    )
    status = to_status(exc)
    wire = dict(status.trailing_metadata)
    details_bin = wire["grpc-status-details-bin"]
    assert isinstance(details_bin, bytes)
    on_the_wire = len(quote(status.details, safe=" ")) + len(base64.b64encode(details_bin))
    assert on_the_wire <= 8 * 1024  # gRPC's soft limit for all metadata
    parsed = status_pb2.Status.FromString(details_bin)
    assert parsed.message.endswith("…") and len(parsed.message.encode()) <= 1024
    bad = error_details_pb2.BadRequest()
    info = error_details_pb2.ErrorInfo()
    parsed.details[0].Unpack(info)
    parsed.details[1].Unpack(bad)
    assert 1 <= len(bad.field_violations) < 500 and bad.field_violations[0].field.startswith("f0")
    assert all(len(v.description.encode()) <= 256 for v in bad.field_violations)
    assert len(info.metadata["id"].encode()) <= 256
    short = to_status(InvalidArgument.on("email", "not an email"))
    assert short.details == "email: not an email"
