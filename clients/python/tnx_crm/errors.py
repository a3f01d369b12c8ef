"""API errors: every failed call raises an `ApiError` subclass named after its gRPC status,
carrying the server's AIP-193 details (`google.rpc.ErrorInfo` reason and metadata,
`google.rpc.BadRequest` field violations) parsed from the `grpc-status-details-bin` trailer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

_DETAILS_KEY = "grpc-status-details-bin"


class ApiError(Exception):
    """A call the server (or the transport) refused.

    `code` is the gRPC status, `reason` the ErrorInfo reason (`LEAD_EMAIL_TAKEN`; empty when
    the error carries none, as transport errors do), `field_violations` the BadRequest
    (field, description) pairs, `metadata` the ErrorInfo metadata.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        domain: str = "",
        field_violations: Iterable[tuple[str, str]] = (),
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.field_violations = list(field_violations)
        self.metadata = dict(metadata or {})

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        if self.reason:
            text += f" [{self.reason}]"
        for field, description in self.field_violations:
            text += f"\n  {field}: {description}"
        return text


class Cancelled(ApiError):
    code = grpc.StatusCode.CANCELLED


class Unknown(ApiError):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(ApiError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(ApiError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(ApiError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ApiError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(ApiError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(ApiError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(ApiError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(ApiError):
    code = grpc.StatusCode.ABORTED


class OutOfRange(ApiError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(ApiError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(ApiError):
    code = grpc.StatusCode.INTERNAL


class Unavailable(ApiError):
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(ApiError):
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(ApiError):
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: dict[grpc.StatusCode, type[ApiError]] = {
    kind.code: kind
    for kind in (
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}


def _status_details(trailers: Iterable[Any] | None) -> Any:
    """The google.rpc.Status in the trailers, or None. Sync calls give (key, value) tuples,
    asyncio calls a grpc.aio.Metadata; both iterate as pairs."""
    for key, value in trailers or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # a malformed trailer must not hide the error itself
                return None
    return None


def from_rpc_error(error: grpc.RpcError) -> ApiError:
    """The ApiError subclass for a failed call (sync `grpc.RpcError` or `grpc.aio.AioRpcError`)."""
    call: Any = error
    code: grpc.StatusCode = call.code() if hasattr(call, "code") else grpc.StatusCode.UNKNOWN
    message = str(call.details() or "") if hasattr(call, "details") else str(error)
    trailers = call.trailing_metadata() if hasattr(call, "trailing_metadata") else None
    reason, domain, violations, metadata = "", "", [], {}
    status = _status_details(trailers)
    if status is not None:
        message = str(status.message) or message
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, domain, metadata = str(info.reason), str(info.domain), dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations = [(str(v.field), str(v.description)) for v in bad.field_violations]
    kind = _BY_CODE.get(code, ApiError)
    return kind(
        message,
        code=code,
        reason=reason,
        domain=domain,
        field_violations=violations,
        metadata=metadata,
    )
