"""The fields a filter or rule may name, their types, and the SQL they read."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum

from sqlalchemy import ColumnElement, and_, exists, false, func
from sqlalchemy.sql.expression import literal_column

from server.db.tables import companies, leads
from server.leads.enums import LeadStatus


class Kind(Enum):
    STRING = "string"
    EMAIL = "email"  # a string compared case-insensitively
    ID = "id"  # an opaque id: = and IN compare exactly; other operators as a string
    NUMBER = "number"
    TIMESTAMP = "timestamp"
    ENUM = "enum"
    CUSTOM = "custom"  # typed by the value it is compared with


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: Kind
    column: Callable[[], ColumnElement[object]]
    enum_values: frozenset[str] = frozenset()
    nullable: bool = False  # strings are stored as '' when absent; timestamps as NULL
    # For a field of a related row (a lead's `company.*`): wraps the condition on that row
    # into a predicate on the filtered row, e.g. EXISTS (the linked company matches).
    scope: Callable[[ColumnElement[bool]], ColumnElement[bool]] | None = None


CUSTOM_PREFIX = "custom."
CUSTOM_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")

LEAD_STATUSES = frozenset(LeadStatus)


def _email_domain() -> ColumnElement[object]:
    return func.split_part(leads.c.email, "@", 2)


def _spec(name: str, kind: Kind, **extra: object) -> FieldSpec:
    column = getattr(leads.c, name)
    return FieldSpec(name=name, kind=kind, column=lambda: column, **extra)  # type: ignore[arg-type]


LEAD_FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in [
        _spec("id", Kind.ID),
        _spec("email", Kind.EMAIL),
        FieldSpec("email_domain", Kind.EMAIL, _email_domain),
        _spec("first_name", Kind.STRING),
        _spec("last_name", Kind.STRING),
        _spec("title", Kind.STRING),
        _spec("phone", Kind.STRING),
        _spec("company", Kind.STRING),
        _spec("company_id", Kind.ID, nullable=True),
        _spec("source", Kind.STRING),
        _spec("score", Kind.NUMBER),
        _spec("status", Kind.ENUM, enum_values=LEAD_STATUSES),
        _spec("created_at", Kind.TIMESTAMP, nullable=True),
        _spec("updated_at", Kind.TIMESTAMP, nullable=True),
        _spec("last_activity_at", Kind.TIMESTAMP, nullable=True),
        _spec("archived_at", Kind.TIMESTAMP, nullable=True),
    ]
}


def _company_spec(name: str, kind: Kind, **extra: object) -> FieldSpec:
    column = getattr(companies.c, name)
    return FieldSpec(name=name, kind=kind, column=lambda: column, **extra)  # type: ignore[arg-type]


# The firmographics a company list or a lead's `company.*` condition may name.
COMPANY_FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in [
        _company_spec("id", Kind.ID),
        _company_spec("name", Kind.STRING),
        _company_spec("domain", Kind.EMAIL, nullable=True),
        _company_spec("industry", Kind.STRING),
        _company_spec("employee_count", Kind.NUMBER, nullable=True),
        _company_spec("annual_revenue", Kind.NUMBER, nullable=True),
        _company_spec("annual_revenue_currency", Kind.STRING),
        _company_spec("country", Kind.STRING),
        _company_spec("city", Kind.STRING),
        _company_spec("founded_year", Kind.NUMBER, nullable=True),
        _company_spec("parent_company_id", Kind.ID, nullable=True),
        _company_spec("created_at", Kind.TIMESTAMP, nullable=True),
        _company_spec("archived_at", Kind.TIMESTAMP, nullable=True),
    ]
}


def _linked_company(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """The lead's linked company satisfies the condition. EXISTS rather than a join keeps
    one row per lead and lets the planner run it as a semi-join; a lead without a company
    matches no positive condition (and so every negated one)."""
    return exists().where(
        and_(
            companies.c.workspace_id == leads.c.workspace_id,
            companies.c.id == leads.c.company_id,
            condition,
        )
    )


COMPANY_PREFIX = "company."
LEAD_FIELDS.update(
    {
        f"{COMPANY_PREFIX}{name}": FieldSpec(
            name=f"{COMPANY_PREFIX}{name}",
            kind=spec.kind,
            column=spec.column,
            enum_values=spec.enum_values,
            nullable=spec.nullable,
            scope=_linked_company,
        )
        for name, spec in COMPANY_FIELDS.items()
    }
)


def _joined_company(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """The same test as _linked_company, for a statement that LEFT JOINs each lead's company
    as `companies`: one lookup per lead instead of one per company condition. A lead
    without a company matches no positive condition here either."""
    return func.coalesce(and_(companies.c.id.is_not(None), condition), false())


# LEAD_FIELDS for such a statement (segment upkeep evaluates many rules per lead).
LEAD_FIELDS_COMPANY_JOINED: dict[str, FieldSpec] = {
    name: replace(spec, scope=_joined_company) if spec.scope is not None else spec
    for name, spec in LEAD_FIELDS.items()
}


def custom_fields_column() -> ColumnElement[object]:
    return leads.c.custom_fields


def now() -> ColumnElement[object]:
    return literal_column("now()")
