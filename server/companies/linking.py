"""How leads meet companies: the explicit link a client asks for, the automatic link by
email domain, the linked company read back with a lead, and the "in the group of company X"
lead filter. The leads domain calls these; it holds no company SQL of its own."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import ColumnElement, Join, and_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from server.companies import queries
from server.companies.mail_domains import is_shared_mail_domain
from server.companies.service import Company, to_company
from server.db.engine import AnyRow
from server.db.tables import companies, leads
from server.errors import FailedPrecondition, FieldViolation, NotFound


async def explicit(
    conn: AsyncConnection, *, workspace_id: str, company_id: str, field_name: str
) -> Company:
    """The live company a client names; another workspace's id is just as unknown."""
    row = await queries.get_company(
        conn, workspace_id=workspace_id, company_id=company_id, share=True
    )
    if row is None:
        raise NotFound(
            message=f"company {company_id!r} not found",
            reason="COMPANY_NOT_FOUND",
            violations=[FieldViolation(field_name, "unknown company")],
            metadata={"id": company_id},
        )
    if row.archived_at is not None:
        raise FailedPrecondition(
            message=f"company {company_id!r} is archived: unarchive it to link leads to it",
            reason="COMPANY_ARCHIVED",
            violations=[FieldViolation(field_name, "archived company")],
            metadata={"id": company_id},
        )
    return to_company(row)


def lead_columns(company: Company) -> dict[str, Any]:
    """What a lead linked to `company` stores: its id, its name (the name the lead shows)
    and its path (for group filters)."""
    return {"company_id": company.id, "company": company.name, "company_path": company.path}


def linkable_domain(email: str) -> str | None:
    """The email's domain, unless it is a free-mail or disposable one (a gmail.com address
    says nothing about an employer)."""
    return company_domain(email.rpartition("@")[2].strip().lower())


@functools.lru_cache(maxsize=50_000)
def company_domain(domain: str) -> str | None:
    """A (lowercase) email domain, if a company can own it: not free-mail or disposable.
    Cached: an import asks once per row, mostly for the same few domains."""
    return None if not domain or is_shared_mail_domain(domain) else domain


async def by_email(conn: AsyncConnection, *, workspace_id: str, email: str) -> Company | None:
    """The live company whose domain is the email's."""
    domain = linkable_domain(email)
    if domain is None:
        return None
    row = await queries.find_live_by_domain(conn, workspace_id=workspace_id, domain=domain)
    return to_company(row) if row is not None else None


def by_domain_columns(
    workspace_id: ColumnElement[str], domain: ColumnElement[str]
) -> dict[str, ColumnElement[Any]]:
    """by_email for a lead insert to run in its own statement: the lead's company_id,
    company (name) and company_path as subqueries on the live company of `domain` (a
    linkable_domain), NULL when there is none."""
    found = queries.live_by_domain_cte(workspace_id=workspace_id, domain=domain)
    return {
        "company_id": select(found.c.id).scalar_subquery(),
        "company": select(found.c.name).scalar_subquery(),
        "company_path": select(found.c.path).scalar_subquery(),
    }


# The linked company read in the lead's own statement: a LEFT JOIN, its columns prefixed.
_LINKED_PREFIX = "linked__"
LINKED_COLUMNS = [column.label(_LINKED_PREFIX + column.name) for column in companies.c]


def with_linked_company() -> Join:
    """`leads` LEFT JOIN its linked company, for a read that selects LINKED_COLUMNS."""
    on = and_(
        companies.c.workspace_id == leads.c.workspace_id, companies.c.id == leads.c.company_id
    )
    return leads.outerjoin(companies, on)


def linked_from_row(row: AnyRow) -> Company | None:
    """The company of a row read with LINKED_COLUMNS; None when the lead has none."""
    if row._mapping[_LINKED_PREFIX + "id"] is None:
        return None
    return to_company(row, prefix=_LINKED_PREFIX)


async def by_ids(
    conn: AsyncConnection, *, workspace_id: str, company_ids: set[str]
) -> dict[str, Company]:
    """The linked companies of a page of leads, in one query."""
    if not company_ids:
        return {}
    rows = await queries.get_companies(
        conn, workspace_id=workspace_id, company_ids=sorted(company_ids)
    )
    return {row.id: to_company(row) for row in rows}


async def group_filter(
    conn: AsyncConnection, *, workspace_id: str, company_id: str, field_name: str
) -> ColumnElement[bool]:
    """Leads linked to the company or to any company below it (archived ones included: a
    lead stays in the group its company belongs to): one range of leads.company_path."""
    row = await queries.get_company(conn, workspace_id=workspace_id, company_id=company_id)
    if row is None:
        raise NotFound(
            message=f"company {company_id!r} not found",
            reason="COMPANY_NOT_FOUND",
            violations=[FieldViolation(field_name, "unknown company")],
            metadata={"id": company_id},
        )
    if not await queries.has_subsidiaries(conn, workspace_id=workspace_id, company_id=company_id):
        # A group of one: the company_id index lists it in id order, no sort needed.
        return leads.c.company_id == company_id
    return queries.path_range(leads.c.company_path, row.path)


# -- the set-based form, for imports -------------------------------------------------------
# A staging table of rows to be written as leads, with `domain` (company_domain of the
# email), `company` (a name), and company_id/company_path/company_name to fill.
_LINK_STAGED_BY_DOMAIN = """
WITH c AS (
    SELECT id, path, name, domain FROM companies
    WHERE workspace_id = :ws AND archived_at IS NULL
      AND domain IN (SELECT domain FROM {stage} WHERE domain IS NOT NULL)
    FOR SHARE
)
UPDATE {stage} s SET company_id = c.id, company_path = c.path, company_name = c.name
FROM c WHERE c.domain = s.domain
"""
# By name only where exactly one live company has it (case-insensitive): never a guess.
_LINK_STAGED_BY_NAME = """
WITH named AS (
    SELECT lower(name) AS key, min(id) AS id FROM companies
    WHERE workspace_id = :ws AND archived_at IS NULL
      AND lower(name) IN (SELECT lower(company) FROM {stage}
                          WHERE company_id IS NULL AND company IS NOT NULL)
    GROUP BY lower(name) HAVING count(*) = 1
), c AS (
    SELECT companies.id, path, name, key FROM companies JOIN named ON companies.id = named.id
    FOR SHARE OF companies
)
UPDATE {stage} s SET company_id = c.id, company_path = c.path, company_name = c.name
FROM c WHERE s.company_id IS NULL AND lower(s.company) = c.key
"""


async def link_staged(
    conn: AsyncConnection, *, workspace_id: str, stage: str, by_name: bool
) -> None:
    """by_email for a whole staging table (imports): each row gets the live company of its
    email's domain; with `by_name`, a row still without one gets the only live company of
    its `company` name. Companies are share-locked until the caller commits."""
    params = {"ws": workspace_id}
    has_companies = await conn.scalar(
        text("SELECT EXISTS (SELECT 1 FROM companies WHERE workspace_id = :ws)"), params
    )
    if not has_companies:
        return
    await conn.execute(text(_LINK_STAGED_BY_DOMAIN.format(stage=stage)), params)
    if by_name:
        await conn.execute(text(_LINK_STAGED_BY_NAME.format(stage=stage)), params)
