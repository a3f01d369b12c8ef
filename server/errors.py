"""Domain errors. Services raise these; the RPC layer maps each to one gRPC status.

Each carries a machine-readable reason (UPPER_SNAKE, for google.rpc.ErrorInfo), for bad
input the field violations (for google.rpc.BadRequest), and, when waiting helps (rate limits,
budgets), how many seconds to wait (google.rpc.RetryInfo and a Retry-After header).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass
class DomainError(Exception):
    message: str
    reason: str = "ERROR"
    violations: list[FieldViolation] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    retry_after_s: float | None = None

    def __str__(self) -> str:
        return self.message


class InvalidArgument(DomainError):
    @classmethod
    def on(
        cls, field_name: str, description: str, reason: str = "INVALID_ARGUMENT"
    ) -> InvalidArgument:
        return cls(
            message=f"{field_name}: {description}",
            reason=reason,
            violations=[FieldViolation(field_name, description)],
        )


class NotFound(DomainError):
    @classmethod
    def resource(cls, kind: str, resource_id: str) -> NotFound:
        return cls(
            message=f"{kind} {resource_id!r} not found",
            reason=f"{kind.upper()}_NOT_FOUND",
            metadata={"id": resource_id},
        )


class AlreadyExists(DomainError):
    pass


class FailedPrecondition(DomainError):
    pass


class Unauthenticated(DomainError):
    pass


class PermissionDenied(DomainError):
    pass


class ResourceExhausted(DomainError):
    pass
