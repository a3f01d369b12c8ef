"""The fields a filter or rule may name, their types, and the SQL they read."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from sqlalchemy import ColumnElement, func
from sqlalchemy.sql.expression import literal_column

from server.db.tables import leads


class Kind(Enum):
    STRING = "string"
    EMAIL = "email"  # a string compared case-insensitively
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


CUSTOM_PREFIX = "custom."
CUSTOM_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")

LEAD_STATUSES = frozenset({"new", "contacted", "qualified", "customer", "disqualified"})


def _email_domain() -> ColumnElement[object]:
    return func.split_part(leads.c.email, "@", 2)


def _spec(name: str, kind: Kind, **extra: object) -> FieldSpec:
    column = getattr(leads.c, name)
    return FieldSpec(name=name, kind=kind, column=lambda: column, **extra)  # type: ignore[arg-type]


LEAD_FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in [
        _spec("id", Kind.STRING),
        _spec("email", Kind.EMAIL),
        FieldSpec("email_domain", Kind.EMAIL, _email_domain),
        _spec("first_name", Kind.STRING),
        _spec("last_name", Kind.STRING),
        _spec("title", Kind.STRING),
        _spec("phone", Kind.STRING),
        _spec("company", Kind.STRING),
        _spec("company_id", Kind.STRING, nullable=True),
        _spec("source", Kind.STRING),
        _spec("score", Kind.NUMBER),
        _spec("status", Kind.ENUM, enum_values=LEAD_STATUSES),
        _spec("created_at", Kind.TIMESTAMP, nullable=True),
        _spec("updated_at", Kind.TIMESTAMP, nullable=True),
        _spec("last_activity_at", Kind.TIMESTAMP, nullable=True),
        _spec("archived_at", Kind.TIMESTAMP, nullable=True),
    ]
}


def custom_fields_column() -> ColumnElement[object]:
    return leads.c.custom_fields


def now() -> ColumnElement[object]:
    return literal_column("now()")
