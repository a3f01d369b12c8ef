"""Leads: the domain rules for creating, changing, archiving, listing and searching them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import ColumnElement, and_, func, null
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from server import ids
from server.companies import linking
from server.companies.service import Company
from server.db.engine import AnyRow, Database
from server.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound
from server.events import service as events
from server.filtering import expression
from server.filtering.ast import Condition, Node, all_of
from server.filtering.compiler import compile_predicate
from server.filtering.fields import CUSTOM_KEY, LEAD_STATUSES
from server.leads import queries
from server.leads.phones import to_e164
from server.pagination import CursorCodec, fingerprint, page_size
from server.segments import membership
from server.segments import queries as segment_queries

MAX_TEXT = 500
MAX_CUSTOM_BYTES = 64 * 1024
DEFAULT_SOURCE = "api"
DEFAULT_STATUS = "new"

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
CUSTOM_PATH = "custom_fields."
Predicate = ColumnElement[bool]


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


def _to_lead(row: AnyRow, linked: dict[str, Company] | None = None) -> Lead:
    values = row._mapping
    lead = Lead(
        **{f.name: values[f.name] for f in fields(Lead) if f.name not in _DERIVED},
        segment_ids=list(values["segment_ids"] or []),
    )
    # The linked company is the source of truth for the name a linked lead shows.
    company = (linked or {}).get(lead.company_id or "")
    return replace(lead, company=company.name, linked_company=company) if company else lead


_DERIVED = ("segment_ids", "linked_company")


async def _linked(
    conn: AsyncConnection, workspace_id: str, rows: list[AnyRow]
) -> dict[str, Company]:
    ids_ = {row.company_id for row in rows if row.company_id}
    return await linking.by_ids(conn, workspace_id=workspace_id, company_ids=ids_)


# -- validation -----------------------------------------------------------------------


def _normalise_email(raw: str, violations: list[FieldViolation], *, field_name: str) -> str:
    email = raw.strip()
    if not email:
        violations.append(FieldViolation(field_name, "is required"))
        return email
    try:
        result = validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        violations.append(FieldViolation(field_name, f"is not a valid email address: {exc}"))
        return email
    return result.normalized.lower()


def _validate(data: LeadInput, paths: set[str], prefix: str) -> LeadInput:
    """Check the named fields; returns the input normalised. Raises one error with every
    violation, so a client can fix them all at once."""
    violations: list[FieldViolation] = []
    out = replace(data)
    if "email" in paths:
        out.email = _normalise_email(data.email, violations, field_name=f"{prefix}email")
    for name in ("first_name", "last_name", "title", "phone", "company", "source"):
        if name in paths:
            setattr(out, name, getattr(data, name).strip())
            if len(getattr(out, name)) > MAX_TEXT:
                violations.append(
                    FieldViolation(f"{prefix}{name}", f"longer than {MAX_TEXT} characters")
                )
    if "score" in paths and data.score < 0:
        violations.append(FieldViolation(f"{prefix}score", "must not be negative"))
    if "status" in paths and data.status and data.status not in LEAD_STATUSES:
        violations.append(FieldViolation(f"{prefix}status", f"unknown status {data.status!r}"))
    if "custom_fields" in paths or any(p.startswith(CUSTOM_PATH) for p in paths):
        violations.extend(_custom_field_violations(data.custom_fields, prefix))
    if violations:
        raise InvalidArgument(
            message="; ".join(f"{v.field}: {v.description}" for v in violations),
            reason="LEAD_INVALID",
            violations=violations,
        )
    return out


def _custom_field_violations(custom: dict[str, Any], prefix: str) -> list[FieldViolation]:
    problems = [
        FieldViolation(f"{prefix}custom_fields.{key}", "keys are letters, digits, _ or -, up to 64")
        for key in custom
        if not CUSTOM_KEY.match(key)
    ]
    if len(json.dumps(custom)) > MAX_CUSTOM_BYTES:
        problems.append(
            FieldViolation(f"{prefix}custom_fields", f"larger than {MAX_CUSTOM_BYTES} bytes")
        )
    return problems


async def _company_link(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    lead_id: str | None,
    data: LeadInput,
    paths: set[str],
) -> dict[str, Any]:
    """The company_id/company values a write sets (lead_id None: a create). An explicit
    company_id links (an empty one on update unlinks); otherwise a lead with no company is
    linked by its email's domain. A linked lead's stored `company` is its company's name,
    so lead search and the `company` filter see the same name the lead shows."""
    if "company_id" in paths and data.company_id:
        company = await linking.explicit(
            conn,
            workspace_id=workspace_id,
            company_id=data.company_id,
            field_name="lead.company_id",
        )
        return {"company_id": company.id, "company": company.name, "company_path": company.path}
    if "company_id" in paths and lead_id is not None:
        return {"company_id": None, "company_path": None}
    if lead_id is not None:
        if not paths & {"company", "email"}:
            return {}
        current = await queries.lock_lead(conn, workspace_id=workspace_id, lead_id=lead_id)
        if current is None:
            raise NotFound.resource("lead", lead_id)
        if current.company_id is not None:
            return {"company": current.company}
    if "email" in paths:
        found = await linking.by_email(conn, workspace_id=workspace_id, email=data.email)
        if found is not None:
            return {"company_id": found.id, "company": found.name, "company_path": found.path}
    return {}


def _duplicate_email(email: str) -> AlreadyExists:
    return AlreadyExists(
        message=f"a lead with email {email!r} already exists in this workspace",
        reason="LEAD_EMAIL_TAKEN",
        violations=[FieldViolation("lead.email", "already used by another lead")],
        metadata={"email": email},
    )


def _is_unique_violation(exc: IntegrityError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == "23505"


# -- commands -------------------------------------------------------------------------


async def create_lead(db: Database, *, workspace_id: str, data: LeadInput) -> Lead:
    clean = _validate(data, set(WRITABLE), prefix="lead.")
    values = {
        "id": ids.new_id("lead"),
        "workspace_id": workspace_id,
        **{name: getattr(clean, name) for name in WRITABLE if name != "company_id"},
        "source": clean.source or DEFAULT_SOURCE,
        "status": clean.status or DEFAULT_STATUS,
        "phone_e164": to_e164(clean.phone, str(clean.custom_fields.get("country", ""))),
    }
    try:
        async with db.transaction() as conn:
            values.update(
                await _company_link(
                    conn, workspace_id=workspace_id, lead_id=None, data=clean, paths=set(WRITABLE)
                )
            )
            row = await queries.insert_lead(conn, values=values)
            await events.record(
                conn,
                workspace_id=workspace_id,
                event_type="lead.created",
                subject_id=row.id,
                payload={"email": row.email},
            )
            row = await _refresh_segments(conn, workspace_id, row, cause="lead.created")
            linked = await _linked(conn, workspace_id, [row])
    except IntegrityError as exc:
        if _is_unique_violation(exc):
            raise _duplicate_email(clean.email) from None
        raise
    return _to_lead(row, linked)


async def get_lead(db: Database, *, workspace_id: str, lead_id: str) -> Lead:
    async with db.transaction() as conn:
        row = await queries.get_lead(conn, workspace_id=workspace_id, lead_id=lead_id)
        if row is None:
            raise NotFound.resource("lead", lead_id)
        linked = await _linked(conn, workspace_id, [row])
    return _to_lead(row, linked)


def _resolve_paths(paths: list[str]) -> tuple[set[str], list[str]]:
    """Split update_mask paths into whole fields and custom_fields.<key> sub-paths."""
    whole: set[str] = set()
    custom_keys: list[str] = []
    for path in paths:
        if path.startswith(CUSTOM_PATH) and CUSTOM_KEY.match(path[len(CUSTOM_PATH) :]):
            custom_keys.append(path[len(CUSTOM_PATH) :])
        elif path in WRITABLE:
            whole.add(path)
        else:
            raise InvalidArgument.on(
                "update_mask",
                f"unknown or read-only field path {path!r}",
                reason="UPDATE_MASK_INVALID",
            )
    return whole, custom_keys


async def update_lead(
    db: Database,
    *,
    workspace_id: str,
    lead_id: str,
    data: LeadInput,
    paths: list[str],
    merge_custom: bool,
) -> Lead:
    """Apply the fields named by `paths`. `custom_fields` replaces the whole object unless
    merge_custom is set (an update without a mask merges keys); `custom_fields.<key>` sets
    or (when absent from data) removes one key."""
    whole, custom_keys = _resolve_paths(paths)
    checked = whole | ({"custom_fields"} if custom_keys else set())
    clean = _validate(data, checked, prefix="lead.")
    values: dict[str, Any] = {
        n: getattr(clean, n) for n in whole if n not in ("custom_fields", "company_id")
    }
    if "email" in whole and not clean.email:
        raise InvalidArgument.on("lead.email", "is required")
    merge: dict[str, Any] = {
        k: clean.custom_fields[k] for k in custom_keys if k in clean.custom_fields
    }
    remove = [k for k in custom_keys if k not in clean.custom_fields]
    if "custom_fields" in whole:
        if merge_custom:
            merge.update(clean.custom_fields)
        else:
            values["custom_fields"] = clean.custom_fields
    if "status" in values and not values["status"]:
        values["status"] = DEFAULT_STATUS
    if "phone" in values:
        values["phone_e164"] = to_e164(clean.phone, str(clean.custom_fields.get("country", "")))
    try:
        async with db.transaction() as conn:
            values.update(
                await _company_link(
                    conn, workspace_id=workspace_id, lead_id=lead_id, data=clean, paths=whole
                )
            )
            row = await queries.update_lead(
                conn,
                workspace_id=workspace_id,
                lead_id=lead_id,
                values=values,
                custom_merge=merge,
                custom_remove=remove,
            )
            if row is None:
                raise NotFound.resource("lead", lead_id)
            row = await _refresh_segments(conn, workspace_id, row, cause="lead.updated")
            linked = await _linked(conn, workspace_id, [row])
            changed = sorted(whole | {f"{CUSTOM_PATH}{k}" for k in custom_keys})
            await events.record(
                conn,
                workspace_id=workspace_id,
                event_type="lead.updated",
                subject_id=lead_id,
                payload={"fields": changed},
            )
    except IntegrityError as exc:
        if _is_unique_violation(exc):
            raise _duplicate_email(clean.email) from None
        raise
    return _to_lead(row, linked)


async def set_archived(db: Database, *, workspace_id: str, lead_id: str, archived: bool) -> Lead:
    """Archive or unarchive; doing it twice is a no-op that returns the lead as it is."""
    async with db.transaction() as conn:
        row = await queries.lock_lead(conn, workspace_id=workspace_id, lead_id=lead_id)
        if row is None:
            raise NotFound.resource("lead", lead_id)
        if (row.archived_at is not None) == archived:
            return _to_lead(row, await _linked(conn, workspace_id, [row]))
        updated = await queries.update_lead(
            conn,
            workspace_id=workspace_id,
            lead_id=lead_id,
            values={"archived_at": func.now() if archived else null()},
        )
        assert updated is not None
        cause = "lead.archived" if archived else "lead.unarchived"
        updated = await _refresh_segments(conn, workspace_id, updated, cause=cause)
        await events.record(
            conn,
            workspace_id=workspace_id,
            event_type="lead.archived" if archived else "lead.unarchived",
            subject_id=lead_id,
        )
        linked = await _linked(conn, workspace_id, [updated])
    return _to_lead(updated, linked)


# -- queries --------------------------------------------------------------------------


def _filter_tree(filters: LeadFilters) -> Node | None:
    nodes: list[Node] = []
    if filters.source:
        nodes.append(Condition("source", "eq", filters.source))
    if filters.score_min is not None:
        nodes.append(Condition("score", "gte", filters.score_min))
    if filters.score_max is not None:
        nodes.append(Condition("score", "lte", filters.score_max))
    for column, after, before in (
        ("last_activity_at", filters.last_activity_after, filters.last_activity_before),
        ("created_at", filters.created_after, filters.created_before),
    ):
        if after is not None:
            nodes.append(Condition(column, "gte", after.isoformat()))
        if before is not None:
            nodes.append(Condition(column, "lt", before.isoformat()))
    parsed = expression.parse(filters.filter)
    if parsed is not None:
        nodes.append(parsed)
    return all_of(nodes)


async def _refresh_segments(
    conn: AsyncConnection, workspace_id: str, row: AnyRow, *, cause: str
) -> AnyRow:
    """Keep rule segments current for this lead, in the writing transaction; the lead is
    read again only when its membership changed."""
    changes = await membership.refresh(
        conn, workspace_id=workspace_id, lead_ids=[row.id], cause=cause
    )
    if not changes:
        return row
    fresh = await queries.get_lead(conn, workspace_id=workspace_id, lead_id=row.id)
    assert fresh is not None
    return fresh


async def _in_segment(
    conn: AsyncConnection, workspace_id: str, filters: LeadFilters, predicate: Predicate
) -> Predicate:
    if not filters.segment_id:
        return predicate
    found = await segment_queries.get_segment(
        conn, workspace_id=workspace_id, segment_id=filters.segment_id
    )
    if found is None:
        raise NotFound(
            message=f"segment {filters.segment_id!r} not found",
            reason="SEGMENT_NOT_FOUND",
            violations=[FieldViolation("segment_id", "unknown segment")],
        )
    return and_(predicate, queries.in_segment(filters.segment_id))


async def list_leads(
    db: Database,
    codec: CursorCodec,
    *,
    workspace_id: str,
    filters: LeadFilters,
    limit: int,
    cursor: str,
) -> Page:
    size = page_size(limit)
    predicate = compile_predicate(_filter_tree(filters))
    query_key = fingerprint("list", filters)
    after_id = None
    if cursor:
        position = codec.decode(cursor, workspace_id=workspace_id, query=query_key)
        if len(position) != 1 or not isinstance(position[0], str):
            raise InvalidArgument.on("cursor", "malformed cursor", reason="CURSOR_INVALID")
        after_id = position[0]
    async with db.transaction() as conn:
        predicate = await _in_group(conn, workspace_id, filters, predicate)
        predicate = await _in_segment(conn, workspace_id, filters, predicate)
        rows = await queries.list_page(
            conn,
            workspace_id=workspace_id,
            predicate=predicate,
            include_archived=filters.include_archived,
            after_id=after_id,
            limit=size,
        )
        linked = await _linked(conn, workspace_id, rows)
    more = len(rows) > size
    rows = rows[:size]
    next_cursor = (
        codec.encode(workspace_id=workspace_id, query=query_key, position=[rows[-1].id])
        if more
        else ""
    )
    return Page(leads=[_to_lead(r, linked) for r in rows], next_cursor=next_cursor)


async def _in_group(
    conn: AsyncConnection, workspace_id: str, filters: LeadFilters, predicate: Predicate
) -> Predicate:
    if not filters.company_group_id:
        return predicate
    group = await linking.group_filter(
        conn,
        workspace_id=workspace_id,
        company_id=filters.company_group_id,
        field_name="company_group_id",
    )
    return and_(predicate, group)


def search_terms(text: str) -> str:
    """Free text → a tsquery where every word must match as a prefix: "head of gro" finds
    "Head of Growth". Words are letters and digits only, so no tsquery syntax gets through."""
    words = re.findall(r"\w+", text.lower())[:32]
    if not words:
        raise InvalidArgument.on("query", "must contain at least one word", reason="QUERY_EMPTY")
    return " & ".join(f"{word}:*" for word in words)


async def search_leads(
    db: Database,
    codec: CursorCodec,
    *,
    workspace_id: str,
    query: str,
    filters: LeadFilters,
    limit: int,
    cursor: str,
) -> Page:
    size = page_size(limit)
    tsquery = search_terms(query)
    predicate = compile_predicate(_filter_tree(filters))
    query_key = fingerprint("search", query, filters)
    after: tuple[float, str] | None = None
    if cursor:
        position = codec.decode(cursor, workspace_id=workspace_id, query=query_key)
        if (
            len(position) != 2
            or not isinstance(position[0], float | int)
            or not isinstance(position[1], str)
        ):
            raise InvalidArgument.on("cursor", "malformed cursor", reason="CURSOR_INVALID")
        after = (float(position[0]), position[1])
    async with db.transaction() as conn:
        predicate = await _in_group(conn, workspace_id, filters, predicate)
        predicate = await _in_segment(conn, workspace_id, filters, predicate)
        rows = await queries.search_page(
            conn,
            workspace_id=workspace_id,
            tsquery=tsquery,
            predicate=predicate,
            include_archived=filters.include_archived,
            after=after,
            limit=size,
        )
        linked = await _linked(conn, workspace_id, rows)
    more = len(rows) > size
    rows = rows[:size]
    next_cursor = ""
    if more:
        last = rows[-1]
        next_cursor = codec.encode(
            workspace_id=workspace_id, query=query_key, position=[last.rank, last.id]
        )
    return Page(leads=[_to_lead(r, linked) for r in rows], next_cursor=next_cursor)
