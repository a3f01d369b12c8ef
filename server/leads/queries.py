"""SQL for leads. Every statement is scoped by workspace_id."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    and_,
    bindparam,
    cast,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import Label

from server.companies import linking
from server.db.engine import AnyRow
from server.db.tables import LEAD_STORED_COLUMNS, events, leads, segment_members
from server.events.catalogue import NewEvent
from server.fields import patched_custom_fields
from server.scoring import rescoring
from server.segments import membership

# A lead's segments come with every read of it, in the same statement.
SEGMENT_IDS: Label[Any] = literal_column(
    "ARRAY(SELECT m.segment_id FROM segment_members m WHERE m.lead_id = leads.id "
    "ORDER BY m.segment_id)"
).label("segment_ids")
LEAD_COLUMNS = [*LEAD_STORED_COLUMNS, SEGMENT_IDS]


def _scoped(
    workspace_id: str | ColumnElement[str], lead_id: str | ColumnElement[str]
) -> ColumnElement[bool]:
    return and_(leads.c.workspace_id == workspace_id, leads.c.id == lead_id)


async def insert_lead(
    conn: AsyncConnection,
    *,
    values: dict[str, Any],
    link_domain: str | None,
    event: NewEvent,
    if_absent: bool,
) -> AnyRow | None:
    """Insert a lead in one statement that also links it to the live company of
    `link_domain` (when given and found), records its creation event, and returns the
    workspace's rule segment versions (membership.versions_column) with the lead. With
    `if_absent`, a taken email inserts nothing and returns None (else IntegrityError)."""
    params = {
        **values,
        "event_type": str(event.type),
        "event_subject": event.subject_id,
        "event_payload": event.payload,
    }
    if link_domain is not None:
        params["link_domain"] = link_domain
        for name in _LINKED:
            params.setdefault(name, None)
    statement = _insert_statement(tuple(sorted(values)), link_domain is not None, if_absent)
    row: AnyRow | None = (await conn.execute(statement, params)).first()
    return row


_LINKED = ("company_id", "company", "company_path")


@functools.cache
def _insert_statement(
    columns: tuple[str, ...], link_by_domain: bool, if_absent: bool
) -> Select[Any]:
    """Built once per shape: building a statement with CTEs took SQLAlchemy longer than it
    takes PostgreSQL to run it."""
    workspace_id = bindparam("workspace_id", type_=Text)
    assignments: dict[str, Any] = {
        name: bindparam(name, type_=leads.c[name].type) for name in columns
    }
    if link_by_domain:
        found = linking.by_domain_columns(workspace_id, bindparam("link_domain", type_=Text))
        for name in _LINKED:
            given = bindparam(name, type_=leads.c[name].type)
            assignments[name] = func.coalesce(found[name], given)
    inserting = pg_insert(leads).values(**assignments)
    if if_absent:
        inserting = inserting.on_conflict_do_nothing(
            index_elements=[leads.c.workspace_id, func.lower(leads.c.email)]
        )
    new = inserting.returning(*LEAD_STORED_COLUMNS).cte("new_lead")
    logged = insert(events).from_select(
        ["workspace_id", "type", "subject_id", "payload"],
        select(
            new.c.workspace_id,
            bindparam("event_type", type_=Text),
            bindparam("event_subject", type_=Text),
            bindparam("event_payload", type_=events.c.payload.type),
        ),
    )
    no_segments = cast(literal("{}"), ARRAY(Text)).label("segment_ids")  # rule upkeep follows
    versions = membership.versions_column(workspace_id)
    scoring = rescoring.version_column(workspace_id)
    return select(*new.c, no_segments, versions, scoring).add_cte(logged.cte("new_lead_event"))


async def get_lead(conn: AsyncConnection, *, workspace_id: str, lead_id: str) -> AnyRow | None:
    """The lead with its linked company (linking.LINKED_COLUMNS), in one statement."""
    params = {"workspace_id": workspace_id, "lead_id": lead_id}
    row: AnyRow | None = (await conn.execute(_get_statement(), params)).first()
    return row


@functools.cache
def _get_statement() -> Select[Any]:
    # Built once: building the statement cost more Python than the read costs PostgreSQL.
    scoped = _scoped(bindparam("workspace_id", type_=Text), bindparam("lead_id", type_=Text))
    return (
        select(*LEAD_COLUMNS, *linking.LINKED_COLUMNS)
        .select_from(linking.with_linked_company())
        .where(scoped)
    )


async def get_leads(
    conn: AsyncConnection, *, workspace_id: str, lead_ids: Sequence[str]
) -> list[AnyRow]:
    """Several leads with their linked companies, as get_lead reads one."""
    query = (
        select(*LEAD_COLUMNS, *linking.LINKED_COLUMNS)
        .select_from(linking.with_linked_company())
        .where(leads.c.workspace_id == workspace_id, leads.c.id.in_(list(lead_ids)))
    )
    return list((await conn.execute(query)).all())


async def lock_lead(conn: AsyncConnection, *, workspace_id: str, lead_id: str) -> AnyRow | None:
    query = select(*LEAD_COLUMNS).where(_scoped(workspace_id, lead_id)).with_for_update()
    return (await conn.execute(query)).first()


async def lock_lead_by_email(
    conn: AsyncConnection, *, workspace_id: str, email: str
) -> AnyRow | None:
    query = (
        select(*LEAD_COLUMNS)
        .where(leads.c.workspace_id == workspace_id, func.lower(leads.c.email) == email.lower())
        .with_for_update()
    )
    return (await conn.execute(query)).first()


async def update_lead(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    lead_id: str,
    values: dict[str, Any],
    custom_merge: dict[str, Any] | None = None,
    custom_remove: list[str] | None = None,
    with_versions: bool = False,
) -> AnyRow | None:
    """Set columns, and patch custom_fields key by key (merge, then remove) in one statement;
    `with_versions`: the workspace's rule segment versions and scoring model version come
    back with the lead."""
    assignments: dict[str, Any] = {**values, "updated_at": func.now()}
    document = patched_custom_fields(leads.c.custom_fields, custom_merge, custom_remove)
    if document is not None:
        assignments["custom_fields"] = document
    extra: list[ColumnElement[Any]] = (
        [membership.versions_column(workspace_id), rescoring.version_column(workspace_id)]
        if with_versions
        else []
    )
    statement = (
        update(leads)
        .where(_scoped(workspace_id, lead_id))
        .values(**assignments)
        .returning(*LEAD_COLUMNS, *extra)
    )
    return (await conn.execute(statement)).first()


async def touch_activity(
    conn: AsyncConnection, *, workspace_id: str, lead_ids: Sequence[str], times: Sequence[datetime]
) -> None:
    """last_activity_at = the later of its value and the given time, lead by lead (rows are
    locked in id order). The pairs travel as one JSON text: a driver builds it far faster
    than arrays of 10,000 timestamps."""
    pairs = json.dumps(
        [[lead_id, at.isoformat()] for lead_id, at in zip(lead_ids, times, strict=True)]
    )
    await conn.execute(_TOUCH, {"ws": workspace_id, "pairs": pairs})


_TOUCH = text(
    """
    WITH given AS (
        SELECT p ->> 0 AS id, (p ->> 1)::timestamptz AS at
        FROM jsonb_array_elements(CAST(:pairs AS jsonb)) AS p
    ), locked AS (
        -- Only leads whose time moves: an older activity locks (and writes) nothing.
        SELECT l.id FROM leads l JOIN given g ON g.id = l.id
        WHERE l.workspace_id = :ws
          AND (l.last_activity_at IS NULL OR l.last_activity_at < g.at)
        ORDER BY l.id FOR NO KEY UPDATE OF l
    )
    UPDATE leads l SET last_activity_at = greatest(l.last_activity_at, g.at)
    FROM given g WHERE l.id = g.id AND l.id IN (SELECT id FROM locked)
      AND l.last_activity_at IS DISTINCT FROM greatest(l.last_activity_at, g.at)
    """
)


def _visible(
    workspace_id: str, predicate: ColumnElement[bool], include_archived: bool
) -> list[ColumnElement[bool]]:
    conditions = [leads.c.workspace_id == workspace_id, predicate]
    if not include_archived:
        conditions.append(leads.c.archived_at.is_(None))
    return conditions


async def list_page(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    predicate: ColumnElement[bool],
    include_archived: bool,
    after_id: str | None,
    limit: int,
) -> list[AnyRow]:
    """One keyset page in id order; fetches limit + 1 rows so the caller knows if more follow."""
    conditions = _visible(workspace_id, predicate, include_archived)
    if after_id is not None:
        conditions.append(leads.c.id > after_id)
    query: Select[Any] = (
        select(*LEAD_COLUMNS).where(*conditions).order_by(leads.c.id).limit(limit + 1)
    )
    return list((await conn.execute(query)).all())


async def plan_walks(conn: AsyncConnection) -> None:
    """For the rest of this transaction: a custom plan for every statement, even a prepared
    one, and no bitmap scans (so no full-text index) until `allow_index_gathering`."""
    await conn.execute(
        text(
            "SELECT set_config('plan_cache_mode', 'force_custom_plan', true),"
            " set_config('enable_bitmapscan', 'off', true)"
        )
    )


async def allow_index_gathering(conn: AsyncConnection, allowed: bool) -> None:
    """Bitmap scans (the only way PostgreSQL reads a GIN index) on or off, for this
    transaction."""
    value = "on" if allowed else "off"
    await conn.execute(text("SELECT set_config('enable_bitmapscan', :v, true)"), {"v": value})


async def window_floor(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    include_archived: bool,
    before_id: str | None,
    rows: int,
) -> str | None:
    """The id of the `rows`-th visible lead below `before_id`, newest first; None when fewer
    remain. An index-only walk: it bounds how far a search walks before it uses the index."""
    conditions = _visible(workspace_id, true(), include_archived)
    if before_id is not None:
        conditions.append(leads.c.id < before_id)
    query = (
        select(leads.c.id).where(*conditions).order_by(leads.c.id.desc()).offset(rows - 1).limit(1)
    )
    floor: str | None = (await conn.execute(query)).scalar()
    return floor


async def newest_matches(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    predicate: ColumnElement[bool],
    include_archived: bool,
    before_id: str | None,
    floor_id: str | None,
    limit: int,
) -> list[AnyRow]:
    """Matches newest first, walking ids from `before_id` down to `floor_id` (inclusive)."""
    conditions = _visible(workspace_id, predicate, include_archived)
    if before_id is not None:
        conditions.append(leads.c.id < before_id)
    if floor_id is not None:
        conditions.append(leads.c.id >= floor_id)
    query = select(*LEAD_COLUMNS).where(*conditions).order_by(leads.c.id.desc()).limit(limit)
    return list((await conn.execute(query)).all())


async def older_matches(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    predicate: ColumnElement[bool],
    include_archived: bool,
    below_id: str,
    limit: int,
) -> list[AnyRow]:
    """Matches below `below_id`, newest first, found through the search indexes: all of them
    are gathered before sorting, so this is for predicates the id walk found to be rare."""
    conditions = _visible(workspace_id, predicate, include_archived)
    conditions.append(leads.c.id < below_id)
    # MATERIALIZED keeps the planner from walking the id index for the ORDER BY … LIMIT,
    # which would visit every older lead when matches are rare.
    matching = select(leads.c.id).where(*conditions).cte("matching").prefix_with("MATERIALIZED")
    newest = select(matching.c.id).order_by(matching.c.id.desc()).limit(limit)
    query = (
        select(*LEAD_COLUMNS)
        .where(leads.c.id.in_(newest.scalar_subquery()))
        .order_by(leads.c.id.desc())
    )
    return list((await conn.execute(query)).all())


def in_segment(segment_id: str) -> ColumnElement[bool]:
    return leads.c.id.in_(
        select(segment_members.c.lead_id).where(segment_members.c.segment_id == segment_id)
    )
