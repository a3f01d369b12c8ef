"""The enrichment domain's shapes: connectors, what a connector sees of a lead, what it
proposes, runs, and provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class ConnectorKind(StrEnum):
    """As stored in connectors.kind."""

    HTTP_JSON = "http_json"
    COMPANY_FROM_DOMAIN = "company_from_domain"
    EMAIL_FLAGS = "email_flags"
    NAME_FROM_EMAIL = "name_from_email"
    PHONE_NORMALIZE = "phone_normalize"


BUILT_IN = frozenset(k for k in ConnectorKind if k != ConnectorKind.HTTP_JSON)


class Overwrite(StrEnum):
    FILL_EMPTY = "fill_empty"
    OVERWRITE = "overwrite"


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# Lead fields a connector may set; `custom.<key>` and `company.<field>` besides.
LEAD_TARGETS = ("first_name", "last_name", "title", "phone", "company")
COMPANY_TARGETS = (
    "name",
    "domain",
    "industry",
    "employee_count",
    "annual_revenue",
    "country",
)


@dataclass(frozen=True)
class HttpJson:
    method: str = "GET"
    url_template: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # secret: never returned
    body_template: str = ""
    no_match_statuses: tuple[int, ...] = (404,)
    no_match_path: str = ""


@dataclass(frozen=True)
class ConnectorInput:
    name: str = ""
    kind: ConnectorKind | None = None
    http_json: HttpJson | None = None
    field_map: dict[str, str] = field(default_factory=dict)  # response path → target
    overwrite: Overwrite = Overwrite.FILL_EMPTY
    enabled: bool = True
    rate_limit_per_minute: int = 0
    monthly_budget: int = 0
    cache_ttl_seconds: int = 30 * 86400


@dataclass(frozen=True)
class Connector:
    id: str
    workspace_id: str
    name: str
    kind: ConnectorKind
    http_json: HttpJson | None  # headers hold the stored secrets (for the worker only)
    field_map: dict[str, str]
    overwrite: Overwrite
    enabled: bool
    rate_limit_per_minute: int
    monthly_budget: int
    calls_this_month: int
    cache_ttl_seconds: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class LeadView:
    """What a connector sees of a lead."""

    id: str
    email: str
    first_name: str = ""
    last_name: str = ""
    title: str = ""
    phone: str = ""
    company: str = ""
    company_id: str | None = None
    custom_fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """What one connector says about one lead: `values` by target (`title`,
    `custom.industry`, `company.employee_count`); `found` False is a miss (nothing known)."""

    found: bool
    values: dict[str, Any] = field(default_factory=dict)


class ProviderError(Exception):
    """A lookup that failed (recorded on the run; nothing written): `reason` is one of
    PROVIDER_TIMEOUT, PROVIDER_ERROR, BAD_RESPONSE, ADDRESS_REFUSED, RATE_LIMITED,
    BUDGET_EXHAUSTED."""

    def __init__(self, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason, self.message, self.retry_after = reason, message, retry_after


@dataclass(frozen=True)
class EnrichedField:
    field: str
    value: Any
    connector_id: str
    enriched_at: datetime


@dataclass(frozen=True)
class RunError:
    lead_id: str
    connector_id: str
    reason: str
    message: str


@dataclass(frozen=True)
class Run:
    id: str
    state: RunState
    connector_ids: list[str]
    lead_id: str
    filter: str
    segment_id: str
    total: int
    processed: int
    changed: int
    provider_calls: int
    cache_hits: int
    errors: list[RunError]
    error_count: int
    created_at: datetime
    finished_at: datetime | None
