"""Leads: the domain rules for creating, changing, archiving, listing and searching them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, replace

from sqlalchemy import ColumnElement, and_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.companies import linking
from server.companies.service import Company
from server.db.engine import AnyRow, Database
from server.errors import InvalidArgument, NotFound
from server.fields import CUSTOM_PATH, custom_patch, resolve_mask_paths
from server.filtering import expression
from server.filtering.ast import Condition, Node, all_of
from server.filtering.compiler import compile_predicate
from server.leads import queries, search, validation, writes
from server.leads.model import WRITABLE
from server.leads.model import Lead as Lead
from server.leads.model import LeadFilters as LeadFilters
from server.leads.model import LeadInput as LeadInput
from server.leads.model import Page as Page
from server.pagination import CursorCodec, Keyset, fingerprint, page_size
from server.segments import service as segments

# The domain's shapes are re-exported above (`x as x`): callers use service.LeadInput, ….
Predicate = ColumnElement[bool]


def _to_lead(
    row: AnyRow, linked: dict[str, Company] | None = None, segment_ids: list[str] | None = None
) -> Lead:
    """`segment_ids`, when given, replace the row's (which were read before a refresh)."""
    values = row._mapping
    lead = Lead(
        **{f.name: values[f.name] for f in fields(Lead) if f.name not in _DERIVED},
        segment_ids=segment_ids if segment_ids is not None else list(values["segment_ids"] or []),
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


# -- commands -------------------------------------------------------------------------


async def create_lead(db: Database, *, workspace_id: str, data: LeadInput) -> Lead:
    clean = validation.validate(data, set(WRITABLE), prefix="lead.")
    try:
        async with db.transaction() as conn:
            written = await writes.create(conn, workspace_id=workspace_id, data=clean)
            assert written is not None  # not if_absent: a taken email raises
            linked = await _linked(conn, workspace_id, [written.row])
    except IntegrityError as exc:
        if validation.is_unique_violation(exc):
            raise validation.duplicate_email(clean.email) from None
        raise
    return _to_lead(written.row, linked, written.segment_ids)


async def get_lead(db: Database, *, workspace_id: str, lead_id: str) -> Lead:
    async with db.read() as conn:
        row = await queries.get_lead(conn, workspace_id=workspace_id, lead_id=lead_id)
    if row is None:
        raise NotFound.resource("lead", lead_id)
    company = linking.linked_from_row(row)
    return _to_lead(row, {company.id: company} if company else None)


async def snapshots(
    conn: AsyncConnection, *, workspace_id: str, lead_ids: Sequence[str]
) -> dict[str, Lead]:
    """The leads as GetLead shows them, by id (missing ids are left out)."""
    found: dict[str, Lead] = {}
    for row in await queries.get_leads(conn, workspace_id=workspace_id, lead_ids=lead_ids):
        company = linking.linked_from_row(row)
        found[row.id] = _to_lead(row, {company.id: company} if company else None)
    return found


async def update_lead(
    db: Database,
    *,
    workspace_id: str,
    lead_id: str,
    data: LeadInput,
    paths: list[str],
    merge_custom: bool,
) -> Lead:
    """Apply the fields named by `paths` (custom fields as server.fields.custom_patch says)."""
    whole, custom_keys = resolve_mask_paths(paths, WRITABLE)
    checked = whole | ({"custom_fields"} if custom_keys else set())
    clean = validation.validate(data, checked, prefix="lead.")
    if "email" in whole and not clean.email:
        raise InvalidArgument.on("lead.email", "is required")
    custom = custom_patch(clean.custom_fields, whole, custom_keys, merge_custom=merge_custom)
    changed = sorted(whole | {f"{CUSTOM_PATH}{k}" for k in custom_keys})
    try:
        async with db.transaction() as conn:
            written = await writes.patch(
                conn,
                workspace_id=workspace_id,
                lead_id=lead_id,
                data=clean,
                whole=whole,
                custom=custom,
                changed=changed,
            )
            linked = await _linked(conn, workspace_id, [written.row])
    except IntegrityError as exc:
        if validation.is_unique_violation(exc):
            raise validation.duplicate_email(clean.email) from None
        raise
    return _to_lead(written.row, linked, written.segment_ids)


async def set_archived(db: Database, *, workspace_id: str, lead_id: str, archived: bool) -> Lead:
    """Archive or unarchive; doing it twice is a no-op that returns the lead as it is."""
    async with db.transaction() as conn:
        written = await writes.set_archived(
            conn, workspace_id=workspace_id, lead_id=lead_id, archived=archived
        )
        linked = await _linked(conn, workspace_id, [written.row])
    return _to_lead(written.row, linked, written.segment_ids)


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


async def _in_segment(
    conn: AsyncConnection, workspace_id: str, filters: LeadFilters, predicate: Predicate
) -> Predicate:
    if not filters.segment_id:
        return predicate
    await segments.require_segment(
        conn, workspace_id=workspace_id, segment_id=filters.segment_id, field_name="segment_id"
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
    keyset = Keyset(codec, workspace_id, fingerprint("list", filters))
    after_id = keyset.after_id(cursor)
    async with db.transaction() as conn:
        predicate = await _in_group(conn, workspace_id, filters, predicate)
        predicate = await _in_segment(conn, workspace_id, filters, predicate)
        found = await queries.list_page(
            conn,
            workspace_id=workspace_id,
            predicate=predicate,
            include_archived=filters.include_archived,
            after_id=after_id,
            limit=size,
        )
        rows, next_cursor = keyset.page(found, size, lambda row: [row.id])
        linked = await _linked(conn, workspace_id, rows)
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
    ranked = search.tiers(query)
    predicate = compile_predicate(_filter_tree(filters))
    keyset = Keyset(codec, workspace_id, fingerprint("search-tiers", query, filters))
    start = search.Position(tier=0, before_id=None)
    position = keyset.position(cursor, int, str)
    if position is not None:
        if not 0 <= position[0] < len(ranked):
            raise keyset.malformed()
        start = search.Position(tier=position[0], before_id=position[1])
    async with db.transaction() as conn:
        predicate = await _in_group(conn, workspace_id, filters, predicate)
        predicate = await _in_segment(conn, workspace_id, filters, predicate)
        scope = search.Scope(workspace_id, predicate, filters.include_archived)
        found = await search.find(conn, scope, ranked, start, want=size + 1)
        page, next_cursor = keyset.page(found, size, lambda match: [match[0], match[1].id])
        linked = await _linked(conn, workspace_id, [row for _, row in page])
    return Page(leads=[_to_lead(row, linked) for _, row in page], next_cursor=next_cursor)
