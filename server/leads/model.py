"""The shapes of the leads domain: what a client sends, what a lead is, how lists filter."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from server.companies.service import Company
from server.leads.enums import LeadStatus

# The defaults of every lead writer (API, forms, imports): one definition each.
DEFAULT_SOURCE = "api"
DEFAULT_STATUS = LeadStatus.NEW

# Fields a client may set, and the update_mask paths that name them.
WRITABLE = (
    "email",
    "first_name",
    "last_name",
    "title",
    "phone",
    "company",
    "company_id",
    "source",
    "score",
    "status",
    "custom_fields",
    "last_activity_at",
)


@dataclass
class LeadInput:
    """What a client sends: every writable field, with its default when not given."""

    email: str = ""
    first_name: str = ""
    last_name: str = ""
    title: str = ""
    phone: str = ""
    company: str = ""
    company_id: str = ""
    source: str = ""
    score: int = 0
    status: str = ""
    custom_fields: dict[str, Any] = field(default_factory=dict)
    last_activity_at: datetime | None = None


@dataclass(frozen=True)
class Lead:
    id: str
    email: str
    first_name: str
    last_name: str
    title: str
    phone: str
    company: str
    company_id: str | None
    source: str
    score: int
    status: str
    custom_fields: dict[str, Any]
    segment_ids: list[str]
    last_activity_at: datetime | None
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None
    linked_company: Company | None = None


@dataclass(frozen=True)
class LeadFilters:
    segment_id: str = ""
    source: str = ""
    score_min: int | None = None
    score_max: int | None = None
    last_activity_after: datetime | None = None
    last_activity_before: datetime | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    filter: str = ""
    include_archived: bool = False
    company_group_id: str = ""


@dataclass(frozen=True)
class Page:
    leads: list[Lead]
    next_cursor: str
