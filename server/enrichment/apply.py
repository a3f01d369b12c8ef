"""Applying connectors' answers to one lead: which values may be written (FILL_EMPTY,
OVERWRITE and a person's edits), then the writes — the lead through the one lead-write
path (lead.enriched, segments current), its company through the companies domain — and
where each value came from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.companies import linking
from server.companies import queries as company_queries
from server.companies import service as companies
from server.companies.validation import CompanyInput
from server.companies.validation import validate as validate_company
from server.db.engine import AnyRow
from server.enrichment import queries
from server.enrichment.model import Answer, Connector, Overwrite
from server.errors import InvalidArgument
from server.events import catalogue
from server.events import service as events
from server.events.catalogue import EventType
from server.fields import CUSTOM_PATH, CustomPatch
from server.leads import queries as lead_queries
from server.leads import validation as lead_validation
from server.leads import writes
from server.leads.model import LeadInput

EMPTY: tuple[Any, ...] = (None, "", [], {})


@dataclass
class Plan:
    """What one lead gets: lead fields, custom keys, company fields, a company to link."""

    lead: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    company: dict[str, Any] = field(default_factory=dict)
    link_domain: str | None = None
    sources: dict[str, tuple[Any, str]] = field(default_factory=dict)  # target → (value, connector)

    def paths(self) -> list[str]:
        found = [*self.lead, *(f"{CUSTOM_PATH}{k}" for k in self.custom)]
        return sorted([*found, *(f"company.{k}" for k in self.company)])


def _current(target: str, lead: AnyRow, company: AnyRow | None) -> Any:
    if target.startswith("custom."):
        return (lead.custom_fields or {}).get(target.removeprefix("custom."))
    if target.startswith("company."):
        return getattr(company, target.removeprefix("company."), None) if company else None
    return getattr(lead, target)


def _may_write(policy: Overwrite, value: Any, current: Any, set_before: Any) -> bool:
    """FILL_EMPTY: only where nothing is. OVERWRITE: any value (an import's, a person's),
    unless a person changed it after a connector set it (the stored value is no longer the
    enriched one)."""
    if current == value:
        return False
    if policy == Overwrite.FILL_EMPTY:
        return current in EMPTY
    edited = set_before is not None and current not in EMPTY and current != set_before
    return not edited


def plan(
    lead: AnyRow,
    company: AnyRow | None,
    answers: Sequence[tuple[Connector, Answer]],
    provenance: dict[str, Any],
) -> Plan:
    found = Plan()
    for connector, answer in answers:
        if not answer.found:
            continue
        for target, value in answer.values.items():
            if target in found.sources:
                continue  # an earlier connector of the run set it
            if target == "company.domain" and lead.company_id is None:
                found.link_domain = str(value)
                found.sources[target] = (value, connector.id)
                continue
            if company is None and target.startswith("company."):
                continue
            current = _current(target, lead, company)
            if not _may_write(connector.overwrite, value, current, provenance.get(target)):
                continue
            found.sources[target] = (value, connector.id)
            if target.startswith("custom."):
                found.custom[target.removeprefix("custom.")] = value
            elif target.startswith("company."):
                found.company[target.removeprefix("company.")] = value
            else:
                found.lead[target] = value
    return found


async def enrich_lead(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    lead_id: str,
    answers: Sequence[tuple[Connector, Answer]],
    origin: writes.Origin,
    at: datetime,
    stored: dict[str, Any] | None = None,
) -> list[str]:
    """Write what the answers may change on the lead (locked here); returns the paths.
    `stored`: the lead's provenance (field → value), when the caller read it for a batch."""
    lead = await lead_queries.lock_lead(conn, workspace_id=workspace_id, lead_id=lead_id)
    if lead is None:
        return []
    company = None
    if lead.company_id:
        company = await company_queries.get_company(
            conn, workspace_id=workspace_id, company_id=lead.company_id, lock=True
        )
    if stored is None:
        rows = await queries.provenance(conn, lead_ids=[lead_id])
        stored = {row.field: row.value for row in rows}
    found = plan(lead, company, answers, stored)
    if found.link_domain:
        company_id = await _company_for(conn, workspace_id, lead, found.link_domain)
        if company_id is None:  # the domain's company is archived: linked to nothing
            found.sources.pop("company.domain", None)
        else:
            found.lead["company_id"] = company_id
    found = _valid(found)
    paths = found.paths() + (["company_id"] if "company_id" in found.lead else [])
    if not found.sources:
        return []
    if found.company and company is not None:
        clean = validate_company(CompanyInput(**found.company), set(found.company))
        await companies.write_update(
            conn,
            workspace_id=workspace_id,
            company_id=company.id,
            clean=clean,
            whole=set(found.company),
            custom=CustomPatch(),
        )
    changed = sorted(set(paths) - {"company.domain"} | ({"company_id"} & set(found.lead)))
    if found.lead or found.custom:
        await writes.patch(
            conn,
            workspace_id=workspace_id,
            lead_id=lead_id,
            data=LeadInput(**found.lead),
            whole=set(found.lead),
            custom=CustomPatch(merge=found.custom),
            changed=changed,
            current=lead,
            origin=origin,
            cause=EventType.LEAD_ENRICHED,
        )
    elif changed:
        payload = {"fields": changed, **origin.keys()}
        enriched = catalogue.new(EventType.LEAD_ENRICHED, lead_id, payload)
        await events.record(conn, workspace_id=workspace_id, events=[enriched])
    await queries.record_provenance(
        conn,
        [
            {"lead_id": lead_id, "field": t, "value": v, "connector_id": c, "enriched_at": at}
            for t, (v, c) in found.sources.items()
        ],
    )
    return changed


def _valid(found: Plan) -> Plan:
    """Drop values the lead's or company's own rules refuse (a connector can't write what a
    client couldn't)."""
    lead = dict(found.lead)
    for name in [n for n in lead if n != "company_id"]:
        try:
            lead_validation.validate(LeadInput(**{name: lead[name]}), {name}, prefix="")
        except InvalidArgument:
            del lead[name]
    company = dict(found.company)
    for name in list(company):
        try:
            validate_company(CompanyInput(**{name: company[name]}), {name})
        except InvalidArgument:
            del company[name]
    sources = {
        t: s
        for t, s in found.sources.items()
        if not (t in found.lead and t not in lead)
        and not (t.startswith("company.") and t != "company.domain" and t[8:] not in company)
    }
    return replace(found, lead=lead, company=company, sources=sources)


async def _company_for(
    conn: AsyncConnection, workspace_id: str, lead: AnyRow, domain: str
) -> str | None:
    """The live company of this domain, created (named after the domain) when there is none;
    None when the domain belongs to an archived company (leads are not linked to those, and
    the domain cannot be taken again)."""
    existing = await linking.by_email(conn, workspace_id=workspace_id, email=f"x@{domain}")
    if existing is not None:
        return existing.id
    name = domain.split(".")[0].replace("-", " ").title()
    clean = validate_company(CompanyInput(name=name, domain=domain), {"name", "domain"})
    try:
        async with conn.begin_nested():  # a concurrent run may create it first: use theirs
            row = await companies.write_create(conn, workspace_id=workspace_id, clean=clean)
        return str(row.id)
    except IntegrityError:
        pass
    existing = await linking.by_email(conn, workspace_id=workspace_id, email=f"x@{domain}")
    return None if existing is None else existing.id
