"""The one place domain errors become gRPC statuses (AIP-193): a canonical code, a
google.rpc.ErrorInfo with an UPPER_SNAKE reason in domain `crm.tnx`, and
google.rpc.BadRequest field violations for invalid input.

Errors often quote the bad value, and a status travels in trailers (`grpc-message` and the
base64 `grpc-status-details-bin`) that gRPC clients refuse past 16 KB and Envoy past its
header limit: every text of a status is cut here, so a 100 KB value is still a clear 400."""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from server import errors

ERROR_DOMAIN = "crm.tnx"
MAX_MESSAGE_BYTES = 1024
MAX_ITEM_BYTES = 256  # a violation's field path or description, an ErrorInfo metadata entry
MAX_VIOLATIONS_BYTES = 2048  # every field violation together; the first is always kept
ELLIPSIS = "…"

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


def clip(text: str, limit: int) -> str:
    """The text cut to `limit` UTF-8 bytes at a character boundary, ending in an ellipsis."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    cut = limit - len(ELLIPSIS.encode())
    return data[:cut].decode("utf-8", "ignore") + ELLIPSIS


def _violations(exc: errors.DomainError) -> list[error_details_pb2.BadRequest.FieldViolation]:
    kept: list[error_details_pb2.BadRequest.FieldViolation] = []
    used = 0
    for violation in exc.violations:
        item = error_details_pb2.BadRequest.FieldViolation(
            field=clip(violation.field, MAX_ITEM_BYTES),
            description=clip(violation.description, MAX_ITEM_BYTES),
        )
        used += item.ByteSize()
        if kept and used > MAX_VIOLATIONS_BYTES:
            break  # the message and the first violations say enough to act on
        kept.append(item)
    return kept


def to_status(exc: errors.DomainError) -> grpc.Status:
    metadata = {
        clip(key, MAX_ITEM_BYTES): clip(value, MAX_ITEM_BYTES)
        for key, value in exc.metadata.items()
    }
    details = [
        _packed(
            error_details_pb2.ErrorInfo(reason=exc.reason, domain=ERROR_DOMAIN, metadata=metadata)
        )
    ]
    if exc.violations:
        details.append(_packed(error_details_pb2.BadRequest(field_violations=_violations(exc))))
    if exc.retry_after_s is not None:
        details.append(_packed(_retry_info(exc.retry_after_s)))
    message = clip(exc.message, MAX_MESSAGE_BYTES)
    status = rpc_status.to_status(
        status_pb2.Status(code=_code_for(exc), message=message, details=details)
    )
    return status if exc.retry_after_s is None else _with_retry_after(status, exc.retry_after_s)


def internal_status(reason: str, message: str, code: int = code_pb2.INTERNAL) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN)
    return rpc_status.to_status(
        status_pb2.Status(code=code, message=message, details=[_packed(info)])
    )


# How long a client should wait before retrying a call the database could not serve.
RETRY_AFTER_S = 1


def _seconds(delay: float) -> int:
    return max(1, math.ceil(delay))  # whole seconds, as the Retry-After header counts


def _retry_info(delay: float) -> error_details_pb2.RetryInfo:
    return error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=_seconds(delay)))


def _with_retry_after(status: grpc.Status, delay: float) -> grpc.Status:
    """The status with `retry-after` metadata, which the gateway passes to REST clients as
    a header (a RetryInfo detail says the same to gRPC clients)."""
    hint = ("retry-after", str(_seconds(delay)))
    replaced: grpc.Status = status._replace(  # type: ignore[attr-defined]
        trailing_metadata=(*status.trailing_metadata, hint)
    )
    return replaced


def retry_status(reason: str, message: str, code: int) -> grpc.Status:
    """UNAVAILABLE or ABORTED with a google.rpc.RetryInfo hint (and `retry-after` metadata)."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN)
    retry = _retry_info(RETRY_AFTER_S)
    status = rpc_status.to_status(
        status_pb2.Status(code=code, message=message, details=[_packed(info), _packed(retry)])
    )
    return _with_retry_after(status, RETRY_AFTER_S)
