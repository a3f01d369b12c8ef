"""Rule membership, kept current inside the writing transaction.

After any write that can change which rule segments a lead belongs to (create, update,
archive, import batch, company change), the writer calls `refresh` with the affected lead
ids. One statement evaluates every rule segment of the workspace against those leads,
inserts and deletes memberships, and writes a `segment.lead_entered` / `segment.lead_exited`
event per change; member counts follow in segment-id order, so concurrent writers always
lock segment rows in the same order and cannot deadlock.

Each segment's rule is compiled to SQL once per version ("id@updated_at") and cached.
A writer can read the versions of a workspace's rule segments in its own statement
(`versions_column`) and hand them to `refresh`, which then needs no query of its own to
learn that there are none, or to find rules it has already compiled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, cast, func, literal, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import Label
from sqlalchemy.types import Text

from server.db.tables import companies, leads
from server.db.tables import segments as segments_table
from server.events import catalogue
from server.events import service as events
from server.events.catalogue import EventType
from server.filtering.ast import Condition, Node, Not
from server.filtering.compiler import compile_predicate
from server.filtering.fields import COMPANY_PREFIX, CUSTOM_PREFIX
from server.segments import rules
from server.segments.enums import Membership

COMPANY_REFRESH_BATCH = 10_000
ENTERED = EventType.SEGMENT_LEAD_ENTERED
EXITED = EventType.SEGMENT_LEAD_EXITED

# Named paramstyle: literal SQL with single % signs; text() escapes them for the driver.
_DIALECT = postgresql.dialect(paramstyle="named")  # type: ignore[no-untyped-call]
_predicate_sql: dict[str, str] = {}  # version → the rule as SQL
_rule_fields: dict[str, frozenset[str]] = {}  # version → the fields its rule reads

# In a write's `touched` fields: any custom field (the whole map was replaced), and any field
# of the lead's company (the lead was linked to another company, or to none).
ANY_CUSTOM = CUSTOM_PREFIX + "*"
ANY_COMPANY = COMPANY_PREFIX + "*"


@dataclass(frozen=True)
class RuleSegment:
    id: str
    rules: dict[str, Any]
    version: str  # "id@updated_at": changes whenever the rule may have


# A segment's version, the one place its format is written; _segment_id reads it back.
_VERSION = segments_table.c.id + "@" + cast(segments_table.c.updated_at, Text)


def _segment_id(version: str) -> str:
    return version.rpartition("@")[0]


def _rule_segments_of(workspace_id: str | ColumnElement[str]) -> ColumnElement[bool]:
    table = segments_table
    return and_(table.c.workspace_id == workspace_id, table.c.membership == Membership.RULE)


def versions_column(workspace_id: str | ColumnElement[str]) -> Label[list[str]]:
    """The workspace's rule segment versions in id order, as a column any writer can add to
    the statement it runs anyway."""
    found = (
        select(func.array_agg(aggregate_order_by(_VERSION, segments_table.c.id)))
        .where(_rule_segments_of(workspace_id))
        .scalar_subquery()
    )
    no_segments = cast(literal("{}"), ARRAY(Text))
    return func.coalesce(found, no_segments).label("rule_segment_versions")


@dataclass(frozen=True)
class Change:
    segment_id: str
    lead_id: str
    type: EventType  # ENTERED | EXITED


def predicate_sql(segment: RuleSegment) -> str:
    """The segment's rule as SQL (rule_sql), compiled once per segment version."""
    cached = _predicate_sql.get(segment.version)
    if cached is None:
        tree = rules.from_json(segment.rules)
        _rule_fields[segment.version] = fields_read(tree)
        cached = _predicate_sql[segment.version] = rule_sql(tree, label="segment.rules")
    return cached


def fields_read(tree: Node) -> frozenset[str]:
    """The fields a rule tree reads ("title", "custom.plan", "company.industry")."""
    if isinstance(tree, Condition):
        return frozenset([tree.field])
    if isinstance(tree, Not):
        return fields_read(tree.child)
    return frozenset().union(*(fields_read(child) for child in tree.children))


def _may_change(segment: RuleSegment, touched: frozenset[str]) -> bool:
    """Whether a write that changed only `touched` can move a lead in or out of `segment`: a
    score change cannot move a title rule."""
    predicate_sql(segment)  # compiles the rule, and so learns its fields, once per version
    for name in _rule_fields[segment.version]:
        if name in touched:
            return True
        if name.startswith(CUSTOM_PREFIX) and ANY_CUSTOM in touched:
            return True
        if name.startswith(COMPANY_PREFIX) and ANY_COMPANY in touched:
            return True
    return False


def rule_sql(tree: Node, *, label: str) -> str:
    """A rule tree as a SQL boolean over `leads` LEFT JOIN `companies` (the lead's company,
    as _refresh_sql and the scoring engine join it), values inlined, safe inside text()."""
    predicate = compile_predicate(tree, label=label, company_joined=True)
    statement = select(leads.c.id, companies.c.id).where(predicate)
    compiled = str(statement.compile(dialect=_DIALECT, compile_kwargs={"literal_binds": True}))
    head, separator, condition = compiled.partition("\nWHERE ")
    assert separator and head.rstrip().endswith("FROM leads, companies"), compiled
    # text() would read ":word" inside a rule's string literal as a bind parameter.
    return condition.replace(":", "\\:")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


_CHANGE_PAYLOAD = catalogue.sql_payload(
    ENTERED, segment_id="segment_id", lead_id="lead_id", cause="CAST(:cause AS text)"
)


def _refresh_sql(segments: Sequence[RuleSegment]) -> str:
    cases = ",\n".join(f"CASE WHEN ({predicate_sql(s)}) THEN {_quote(s.id)} END" for s in segments)
    return f"""
    WITH desired AS (
        SELECT leads.id AS lead_id, wanted.segment_id
        FROM leads
        LEFT JOIN companies
          ON companies.workspace_id = leads.workspace_id AND companies.id = leads.company_id
        CROSS JOIN LATERAL unnest(ARRAY[{cases}]::text[]) AS wanted(segment_id)
        WHERE leads.workspace_id = :workspace_id AND leads.id = ANY(:lead_ids)
          AND leads.archived_at IS NULL AND wanted.segment_id IS NOT NULL
    ),
    current AS MATERIALIZED (
        -- Read once: most desired pairs already exist, and probing the primary key for
        -- each of them (ON CONFLICT) cost more than the writes themselves.
        SELECT segment_id, lead_id FROM segment_members
        WHERE lead_id = ANY(:lead_ids) AND segment_id = ANY(:segment_ids)
    ),
    entered AS (
        INSERT INTO segment_members (segment_id, lead_id)
        SELECT d.segment_id, d.lead_id FROM desired d
        WHERE NOT EXISTS (SELECT 1 FROM current c
                          WHERE c.segment_id = d.segment_id AND c.lead_id = d.lead_id)
        ON CONFLICT DO NOTHING
        RETURNING segment_id, lead_id
    ),
    exited AS (
        DELETE FROM segment_members m
        USING current c
        WHERE m.segment_id = c.segment_id AND m.lead_id = c.lead_id
          AND NOT EXISTS (SELECT 1 FROM desired d
                          WHERE d.segment_id = c.segment_id AND d.lead_id = c.lead_id)
        RETURNING m.segment_id, m.lead_id
    ),
    changes AS (
        SELECT segment_id, lead_id, '{ENTERED}' AS type FROM entered
        UNION ALL
        SELECT segment_id, lead_id, '{EXITED}' AS type FROM exited
    ),
    logged AS (
        INSERT INTO events (workspace_id, type, subject_id, payload)
        SELECT :workspace_id, type, lead_id, {_CHANGE_PAYLOAD}
        FROM changes
    )
    SELECT segment_id, lead_id, type FROM changes
    """


async def rule_segments(
    conn: AsyncConnection, *, workspace_id: str, only: Sequence[str] | None = None
) -> list[RuleSegment]:
    table = segments_table
    query = select(table.c.id, table.c.rules, _VERSION.label("version")).where(
        _rule_segments_of(workspace_id)
    )
    if only is not None:
        query = query.where(table.c.id.in_(list(only)))
    rows = (await conn.execute(query.order_by(table.c.id))).all()
    return [RuleSegment(id=r.id, rules=r.rules, version=r.version) for r in rows]


async def _segments_of(
    conn: AsyncConnection, workspace_id: str, versions: Sequence[str]
) -> list[RuleSegment]:
    """The segments of these versions; their rules are read only when not compiled yet."""
    if all(version in _predicate_sql for version in versions):
        return [RuleSegment(_segment_id(v), {}, v) for v in versions]
    found = await rule_segments(
        conn, workspace_id=workspace_id, only=[_segment_id(v) for v in versions]
    )
    # A segment changed since the caller read its version: the fresh read is the truth.
    return found


async def refresh(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    lead_ids: Sequence[str],
    cause: str,
    only_segments: Sequence[str] | None = None,
    versions: Sequence[str] | None = None,
    touched: frozenset[str] | None = None,
) -> list[Change]:
    """Bring rule membership of these leads up to date; returns what changed. `versions`,
    read by the caller in this transaction (`versions_column`), saves reading the segments.
    `touched`: the only fields the write changed (None: any), so only the segments whose
    rules read one of them are evaluated — the cost of a write stays flat as a workspace
    adds segments on other fields."""
    if not lead_ids:
        return []
    if versions is not None and only_segments is None:
        segments = await _segments_of(conn, workspace_id, versions)
    else:
        segments = await rule_segments(conn, workspace_id=workspace_id, only=only_segments)
    if touched is not None:
        segments = [segment for segment in segments if _may_change(segment, touched)]
    if not segments:
        return []
    statement = text(_refresh_sql(segments)).bindparams(
        bindparam("lead_ids", type_=ARRAY(Text)), bindparam("segment_ids", type_=ARRAY(Text))
    )
    rows = (
        await conn.execute(
            statement,
            {
                "workspace_id": workspace_id,
                "lead_ids": list(lead_ids),
                "segment_ids": [s.id for s in segments],
                "cause": cause,
            },
        )
    ).all()
    changes = [Change(r.segment_id, r.lead_id, EventType(r.type)) for r in rows]
    await apply_count_deltas(conn, changes)
    return changes


async def add_static(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    lead_ids: Sequence[str],
    segment_ids: Sequence[str],
    cause: str,
    import_id: str | None = None,
) -> list[Change]:
    """Add leads to those of these segments that are STATIC segments of the workspace (a
    target deleted or never static is skipped; targets are key-share locked as they are
    read, so none can vanish before this commits), with an entry event for each lead not
    in one before, and the member counts. Every writer that puts leads into static
    segments — the members API, forms, imports — comes through here."""
    if not lead_ids or not segment_ids:
        return []
    params = {
        "ws": workspace_id,
        "lead_ids": list(lead_ids),
        "segment_ids": list(segment_ids),
        "cause": cause,
        "import_id": import_id,
    }
    rows = (await conn.execute(_ADD_STATIC, params)).all()
    changes = [Change(r.segment_id, r.lead_id, ENTERED) for r in rows]
    await apply_count_deltas(conn, changes)
    return changes


_STATIC_IMPORT_ENTRY = catalogue.sql_payload(
    ENTERED,
    segment_id="segment_id",
    lead_id="lead_id",
    cause="CAST(:cause AS text)",
    import_id="CAST(:import_id AS text)",
)
_ADD_STATIC = text(
    f"""
    WITH targets AS (
        SELECT id FROM segments
        WHERE workspace_id = :ws AND id = ANY(:segment_ids) AND membership = '{Membership.STATIC}'
        ORDER BY id
        FOR KEY SHARE
    ), added AS (
        INSERT INTO segment_members (segment_id, lead_id)
        SELECT t.id, l.id FROM targets t CROSS JOIN unnest(CAST(:lead_ids AS text[])) AS l(id)
        ORDER BY t.id, l.id
        ON CONFLICT DO NOTHING
        RETURNING segment_id, lead_id
    ), logged AS (
        INSERT INTO events (workspace_id, type, subject_id, payload)
        SELECT :ws, '{ENTERED}', lead_id,
               CASE WHEN CAST(:import_id AS text) IS NULL THEN {_CHANGE_PAYLOAD}
                    ELSE {_STATIC_IMPORT_ENTRY} END
        FROM added
    )
    SELECT segment_id, lead_id FROM added ORDER BY segment_id, lead_id
    """
).bindparams(bindparam("lead_ids", type_=ARRAY(Text)), bindparam("segment_ids", type_=ARRAY(Text)))


# The rows locked in lead order before they go: a plain DELETE locks them in the order it
# finds them on disk, and two writers of one segment taking overlapping rows in different
# orders deadlocked (adds insert in lead order too).
_REMOVE_STATIC = text(
    """
    WITH doomed AS (
        SELECT lead_id FROM segment_members
        WHERE segment_id = :segment_id AND lead_id = ANY(:lead_ids)
        ORDER BY lead_id
        FOR UPDATE
    )
    DELETE FROM segment_members m USING doomed d
    WHERE m.segment_id = :segment_id AND m.lead_id = d.lead_id
    RETURNING m.lead_id
    """
).bindparams(bindparam("lead_ids", type_=ARRAY(Text)))


async def remove_static(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    segment_id: str,
    lead_ids: Sequence[str],
    cause: str,
) -> list[Change]:
    """Remove leads from a static segment, with an exit event each and the member count."""
    if not lead_ids:
        return []
    params = {"segment_id": segment_id, "lead_ids": list(lead_ids)}
    removed = (await conn.scalars(_REMOVE_STATIC, params)).all()
    changes = [Change(segment_id, lead_id, EXITED) for lead_id in removed]
    exits = [
        catalogue.new(
            EXITED, lead_id, {"segment_id": segment_id, "lead_id": lead_id, "cause": cause}
        )
        for lead_id in removed
    ]
    await events.record(conn, workspace_id=workspace_id, events=exits)
    await apply_count_deltas(conn, changes)
    return changes


async def apply_count_deltas(conn: AsyncConnection, changes: Sequence[Change]) -> None:
    deltas: Counter[str] = Counter()
    for change in changes:
        deltas[change.segment_id] += 1 if change.type == ENTERED else -1
    # Segment-id order: every writer locks segment rows in the same order.
    for segment_id in sorted(deltas):
        if deltas[segment_id]:
            await conn.execute(
                text("UPDATE segments SET member_count = member_count + :d WHERE id = :id"),
                {"d": deltas[segment_id], "id": segment_id},
            )


async def refresh_company_leads(
    conn: AsyncConnection, *, workspace_id: str, company_ids: Sequence[str], cause: str
) -> list[Change]:
    """A company change can move its linked leads in or out of rule segments that test
    `company.*` fields: re-evaluate them (only when the workspace has rule segments)."""
    if not company_ids or not await rule_segments(conn, workspace_id=workspace_id):
        return []
    lead_ids = list(
        (
            await conn.scalars(
                text("SELECT id FROM leads WHERE workspace_id = :ws AND company_id = ANY(:ids)"),
                {"ws": workspace_id, "ids": list(company_ids)},
            )
        ).all()
    )
    changes: list[Change] = []
    for start in range(0, len(lead_ids), COMPANY_REFRESH_BATCH):
        batch = lead_ids[start : start + COMPANY_REFRESH_BATCH]
        changes += await refresh(conn, workspace_id=workspace_id, lead_ids=batch, cause=cause)
    return changes
