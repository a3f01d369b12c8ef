"""Read the rich error details (AIP-193) off a gRPC error or a JSON error body."""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def details(error: grpc.RpcError) -> tuple[str, list[str]]:
    """(ErrorInfo reason, BadRequest violated field names)."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "the error carries no google.rpc.Status"
    reason, fields = "", []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert info.domain == "crm.tnx"
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return reason, fields


def json_details(body: dict[str, Any]) -> tuple[str, list[str]]:
    reason, fields = "", []
    for detail in body.get("details", []):
        if detail["@type"].endswith("google.rpc.ErrorInfo"):
            reason = detail["reason"]
        elif detail["@type"].endswith("google.rpc.BadRequest"):
            fields = [v["field"] for v in detail["field_violations"]]
    return reason, fields
