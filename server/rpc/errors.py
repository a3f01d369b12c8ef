"""The one place domain errors become gRPC statuses (AIP-193): a canonical code, a
google.rpc.ErrorInfo with an UPPER_SNAKE reason in domain `crm.tnx`, and
google.rpc.BadRequest field violations for invalid input."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from server import errors

ERROR_DOMAIN = "crm.tnx"

_CODES: list[tuple[type[errors.DomainError], int]] = [
    (errors.InvalidArgument, code_pb2.INVALID_ARGUMENT),
    (errors.NotFound, code_pb2.NOT_FOUND),
    (errors.AlreadyExists, code_pb2.ALREADY_EXISTS),
    (errors.FailedPrecondition, code_pb2.FAILED_PRECONDITION),
    (errors.Unauthenticated, code_pb2.UNAUTHENTICATED),
    (errors.PermissionDenied, code_pb2.PERMISSION_DENIED),
    (errors.ResourceExhausted, code_pb2.RESOURCE_EXHAUSTED),
]


def _code_for(exc: errors.DomainError) -> int:
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return int(code)
    return int(code_pb2.INTERNAL)


def _packed(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_status(exc: errors.DomainError) -> grpc.Status:
    details = [
        _packed(
            error_details_pb2.ErrorInfo(
                reason=exc.reason, domain=ERROR_DOMAIN, metadata=exc.metadata
            )
        )
    ]
    if exc.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in exc.violations
            ]
        )
        details.append(_packed(bad_request))
    status = status_pb2.Status(code=_code_for(exc), message=exc.message, details=details)
    return rpc_status.to_status(status)


def internal_status(reason: str, message: str, code: int = code_pb2.INTERNAL) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN)
    return rpc_status.to_status(
        status_pb2.Status(code=code, message=message, details=[_packed(info)])
    )


# How long a client should wait before retrying a call the database could not serve.
RETRY_AFTER_S = 1


def retry_status(reason: str, message: str, code: int) -> grpc.Status:
    """UNAVAILABLE or ABORTED with a google.rpc.RetryInfo hint (and `retry-after` metadata,
    which the gateway passes to REST clients as a header)."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN)
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=RETRY_AFTER_S))
    status = rpc_status.to_status(
        status_pb2.Status(code=code, message=message, details=[_packed(info), _packed(retry)])
    )
    hint = ("retry-after", str(RETRY_AFTER_S))
    replaced: grpc.Status = status._replace(  # type: ignore[attr-defined]
        trailing_metadata=(*status.trailing_metadata, hint)
    )
    return replaced
