"""Companies: the domain rules for creating, changing and archiving them, and for their
parent/subsidiary hierarchy (reads are in listing.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, null
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from server import ids
from server.companies import queries
from server.companies.mail_domains import is_shared_mail_domain
from server.companies.validation import (
    CUSTOM_PATH,
    DEFAULT_CURRENCY,
    WRITABLE,
    CompanyInput,
    validate,
)
from server.db.engine import AnyRow, Database
from server.db.tables import companies
from server.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    NotFound,
)
from server.events import catalogue
from server.events import service as events
from server.events.catalogue import EventType
from server.fields import CustomPatch, custom_patch, resolve_mask_paths
from server.segments import membership

# Levels in one group, root included. Real groups are a handful deep; the bound keeps a
# company's path (the ids from its root) well inside what a btree index entry can hold.
MAX_HIERARCHY_DEPTH = 64


@dataclass(frozen=True)
class Company:
    id: str
    name: str
    domain: str | None
    industry: str
    employee_count: int | None
    annual_revenue: int | None
    annual_revenue_currency: str
    country: str
    city: str
    founded_year: int | None
    website: str
    linkedin_url: str
    custom_fields: dict[str, Any]
    parent_company_id: str | None
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None
    path: str  # internal: ids from the root down to this company, each followed by '/'


def to_company(row: AnyRow, prefix: str = "") -> Company:
    """The company in `row`, whose column names may carry a prefix (a join's labels)."""
    values = row._mapping
    return Company(**{f.name: values[prefix + f.name] for f in fields(Company)})


# -- shared checks --------------------------------------------------------------------


def _duplicate_domain(domain: str) -> AlreadyExists:
    return AlreadyExists(
        message=f"a company with domain {domain!r} already exists in this workspace",
        reason="COMPANY_DOMAIN_TAKEN",
        violations=[FieldViolation("company.domain", "already used by another company")],
        metadata={"domain": domain},
    )


def _is_duplicate_domain(exc: IntegrityError) -> bool:
    diag = getattr(exc.orig, "diag", None)
    return (
        getattr(exc.orig, "sqlstate", None) == "23505"
        and getattr(diag, "constraint_name", "") == "companies_workspace_domain"
    )


async def _check_parent(
    conn: AsyncConnection, *, workspace_id: str, company_id: str | None, parent_id: str
) -> str:
    """The parent exists in this workspace, is live, and is not the company or below it;
    returns its path. Runs under the hierarchy lock, so no concurrent change can make a
    cycle after it."""
    parent = await queries.get_company(conn, workspace_id=workspace_id, company_id=parent_id)
    if parent is None:
        raise NotFound(
            message=f"parent company {parent_id!r} not found",
            reason="PARENT_COMPANY_NOT_FOUND",
            violations=[FieldViolation("company.parent_company_id", "unknown company")],
            metadata={"id": parent_id},
        )
    if parent.archived_at is not None:
        raise FailedPrecondition(
            message=f"parent company {parent_id!r} is archived",
            reason="PARENT_COMPANY_ARCHIVED",
            violations=[FieldViolation("company.parent_company_id", "archived company")],
            metadata={"id": parent_id},
        )
    if company_id is None:
        return str(parent.path)
    path = await queries.ancestor_ids(conn, workspace_id=workspace_id, company_id=parent_id)
    if company_id in path:
        cycle = [company_id, *path[: path.index(company_id) + 1]]
        shown = " → ".join(cycle)
        raise FailedPrecondition(
            message=f"making {parent_id!r} the parent of {company_id!r} would make a cycle: "
            f"{shown}",
            reason="COMPANY_HIERARCHY_CYCLE",
            violations=[
                FieldViolation("company.parent_company_id", f"would make a cycle: {shown}")
            ],
            metadata={"cycle": ",".join(cycle)},
        )
    return str(parent.path)


def _check_depth(parent_path: str, height: int) -> None:
    depth = parent_path.count("/") + 1 + height
    if depth > MAX_HIERARCHY_DEPTH:
        raise FailedPrecondition(
            message=f"the group would be {depth} levels deep; at most {MAX_HIERARCHY_DEPTH}",
            reason="COMPANY_HIERARCHY_TOO_DEEP",
            violations=[FieldViolation("company.parent_company_id", "group too deep")],
        )


# -- commands -------------------------------------------------------------------------


async def create_company(db: Database, *, workspace_id: str, data: CompanyInput) -> Company:
    clean = validate(data, set(WRITABLE))
    try:
        async with db.transaction() as conn:
            row = await write_create(conn, workspace_id=workspace_id, clean=clean)
    except IntegrityError as exc:
        if _is_duplicate_domain(exc):
            raise _duplicate_domain(clean.domain) from None
        raise
    return to_company(row)


async def write_create(conn: AsyncConnection, *, workspace_id: str, clean: CompanyInput) -> AnyRow:
    """Create a validated company in the caller's transaction: link the leads of its domain,
    refresh their segments, record company.created. IntegrityError on a taken domain."""
    company_id = ids.new_id("cmp")
    values: dict[str, Any] = {
        "id": company_id,
        "workspace_id": workspace_id,
        **{name: getattr(clean, name) for name in WRITABLE},
        "domain": clean.domain or None,
        "parent_company_id": clean.parent_company_id or None,
        "path": f"{company_id}/",
    }
    if clean.annual_revenue is not None and not clean.annual_revenue_currency:
        values["annual_revenue_currency"] = DEFAULT_CURRENCY
    if clean.parent_company_id:
        await queries.lock_hierarchy(conn, workspace_id=workspace_id)
        parent_path = await _check_parent(
            conn, workspace_id=workspace_id, company_id=None, parent_id=clean.parent_company_id
        )
        _check_depth(parent_path, 0)
        values["path"] = f"{parent_path}{company_id}/"
    row = await queries.insert_company(conn, values=values)
    linked = await _link_leads(conn, row)
    if linked:
        await membership.refresh_company_leads(
            conn, workspace_id=workspace_id, company_ids=[row.id], cause=EventType.COMPANY_CREATED
        )
    payload = {"name": row.name, "domain": row.domain, "linked_leads": linked}
    created = catalogue.new(EventType.COMPANY_CREATED, row.id, payload)
    await events.record(conn, workspace_id=workspace_id, events=[created])
    return row


async def _link_leads(conn: AsyncConnection, row: AnyRow) -> int:
    """A company that gains a domain picks up the unlinked leads whose email has it."""
    if not row.domain or row.archived_at is not None or is_shared_mail_domain(row.domain):
        return 0
    return await queries.link_leads_by_domain(
        conn,
        workspace_id=row.workspace_id,
        company_id=row.id,
        domain=row.domain,
        name=row.name,
        path=row.path,
    )


async def get_company(db: Database, *, workspace_id: str, company_id: str) -> Company:
    async with db.transaction() as conn:
        row = await queries.get_company(conn, workspace_id=workspace_id, company_id=company_id)
    if row is None:
        raise NotFound.resource("company", company_id)
    return to_company(row)


def _update_values(clean: CompanyInput, whole: set[str]) -> dict[str, Any]:
    values: dict[str, Any] = {n: getattr(clean, n) for n in whole if n != "custom_fields"}
    for name in ("domain", "parent_company_id"):
        if name in values:
            values[name] = values[name] or None
    if values.get("annual_revenue") is not None and "annual_revenue_currency" not in whole:
        # Revenue given without a currency keeps the company's, or gets the default.
        current = companies.c.annual_revenue_currency
        values["annual_revenue_currency"] = case((current == "", DEFAULT_CURRENCY), else_=current)
    return values


async def update_company(
    db: Database,
    *,
    workspace_id: str,
    company_id: str,
    data: CompanyInput,
    paths: list[str],
    merge_custom: bool,
) -> Company:
    """Apply the fields named by `paths` (custom fields as server.fields.custom_patch says)."""
    whole, custom_keys = resolve_mask_paths(paths, WRITABLE)
    clean = validate(data, whole | ({"custom_fields"} if custom_keys else set()))
    custom = custom_patch(clean.custom_fields, whole, custom_keys, merge_custom=merge_custom)
    try:
        async with db.transaction() as conn:
            row = await write_update(
                conn,
                workspace_id=workspace_id,
                company_id=company_id,
                clean=clean,
                whole=whole,
                custom=custom,
                custom_keys=custom_keys,
            )
    except IntegrityError as exc:
        if _is_duplicate_domain(exc):
            raise _duplicate_domain(clean.domain) from None
        raise
    return to_company(row)


async def write_update(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    company_id: str,
    clean: CompanyInput,
    whole: set[str],
    custom: CustomPatch,
    custom_keys: Sequence[str] = (),
) -> AnyRow:
    """Write validated fields in the caller's transaction: move in the hierarchy, rename
    linked leads, link leads of a new domain, refresh segments, record company.updated."""
    values = _update_values(clean, whole)
    if custom.replace is not None:
        values["custom_fields"] = custom.replace
    moving = "parent_company_id" in whole
    if moving:
        await queries.lock_hierarchy(conn, workspace_id=workspace_id)
    before = await queries.get_company(
        conn, workspace_id=workspace_id, company_id=company_id, lock=True
    )
    if before is None:
        raise NotFound.resource("company", company_id)
    if moving and clean.parent_company_id != (before.parent_company_id or ""):
        await _move(conn, before, clean.parent_company_id)
    row = await queries.update_company(
        conn,
        workspace_id=workspace_id,
        company_id=company_id,
        values=values,
        custom_merge=custom.merge,
        custom_remove=custom.remove,
    )
    assert row is not None  # locked above
    if row.name != before.name:
        await queries.rename_linked_leads(
            conn, workspace_id=workspace_id, company_id=company_id, name=row.name
        )
    linked = await _link_leads(conn, row) if row.domain != before.domain else 0
    await membership.refresh_company_leads(
        conn, workspace_id=workspace_id, company_ids=[company_id], cause=EventType.COMPANY_UPDATED
    )
    changed = sorted(whole | {f"{CUSTOM_PATH}{k}" for k in custom_keys})
    payload = {"fields": changed, "linked_leads": linked}
    updated = catalogue.new(EventType.COMPANY_UPDATED, company_id, payload)
    await events.record(conn, workspace_id=workspace_id, events=[updated])
    return row


async def _move(conn: AsyncConnection, company: AnyRow, parent_id: str) -> None:
    """Re-root the company's path (and so its subsidiaries' and their leads') under the
    new parent, or at the top when parent_id is empty."""
    parent_path = ""
    if parent_id:
        parent_path = await _check_parent(
            conn, workspace_id=company.workspace_id, company_id=company.id, parent_id=parent_id
        )
        height = await queries.subtree_height(
            conn, workspace_id=company.workspace_id, path=company.path
        )
        _check_depth(parent_path, height)
    await queries.move_subtree(
        conn,
        workspace_id=company.workspace_id,
        old_path=company.path,
        new_path=f"{parent_path}{company.id}/",
    )


async def set_archived(
    db: Database, *, workspace_id: str, company_id: str, archived: bool, force: bool = False
) -> Company:
    """Archive or unarchive; doing it twice is a no-op that returns the company as it is.
    Archiving a company with live subsidiaries needs `force`, and then archives them too:
    a group is not left with live members under an archived head."""
    async with db.transaction() as conn:
        await queries.lock_hierarchy(conn, workspace_id=workspace_id)
        row = await queries.get_company(
            conn, workspace_id=workspace_id, company_id=company_id, lock=True
        )
        if row is None:
            raise NotFound.resource("company", company_id)
        if (row.archived_at is not None) == archived:
            return to_company(row)
        below: list[str] = []
        if archived:
            live = await queries.subtree_live_count(
                conn, workspace_id=workspace_id, company_id=company_id
            )
            if live and not force:
                raise FailedPrecondition(
                    message=f"company {company_id!r} has {live} live subsidiaries: "
                    "archive them first or pass force to archive the whole group below it",
                    reason="COMPANY_HAS_SUBSIDIARIES",
                    metadata={"id": company_id, "live_subsidiaries": str(live)},
                )
            if live:
                below = await queries.archive_subtree(
                    conn, workspace_id=workspace_id, company_id=company_id
                )
        updated = await queries.update_company(
            conn,
            workspace_id=workspace_id,
            company_id=company_id,
            values={"archived_at": func.now() if archived else null()},
        )
        assert updated is not None
        event_type = EventType.COMPANY_ARCHIVED if archived else EventType.COMPANY_UNARCHIVED
        await membership.refresh_company_leads(
            conn,
            workspace_id=workspace_id,
            company_ids=[company_id, *below],
            cause=event_type,
        )
        await events.record(
            conn,
            workspace_id=workspace_id,
            events=[
                catalogue.new(
                    event_type, subject, {"with": company_id} if subject != company_id else {}
                )
                for subject in [company_id, *below]
            ],
        )
    return to_company(updated)
