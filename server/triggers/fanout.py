"""Fan-out: the events outbox → deliveries, one per (matching trigger, event).

Each workspace with triggers has a position in the outbox (trigger_cursors). A fan-out step
locks that row (SKIP LOCKED: another worker takes another workspace), reads the events after
it in commit order, writes a delivery for every trigger the event matches, and moves the
position, all in one transaction: an event fans out once, whatever crashes. The same
matching serves replays and test events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from server import ids
from server.db.tables import leads as leads_table
from server.db.tables import segments
from server.events.catalogue import EventType, event_id, lead_of
from server.filtering.compiler import compile_predicate
from server.filtering.expression import parse
from server.leads import rpc as leads_rpc
from server.leads import service as leads
from server.triggers import queries
from server.triggers.model import Condition, DeliveryStatus

FAN_OUT_BATCH = 1000
_SEGMENT_EVENTS = (EventType.SEGMENT_LEAD_ENTERED, EventType.SEGMENT_LEAD_EXITED)


@dataclass(frozen=True)
class Target:
    """A trigger as fan-out sees it."""

    id: str
    event_types: frozenset[str]
    condition: Condition
    created_at: datetime


@dataclass(frozen=True)
class Match:
    target: Target
    event: Any  # an events row: id, type, subject_id, payload, created_at
    lead_id: str | None


def _payload_holds(condition: Condition, event: Any) -> bool:
    """The condition's parts that the event itself answers."""
    payload: dict[str, Any] = event.payload
    segment_id = payload.get("segment_id")
    if (
        condition.segment_id
        and event.type in _SEGMENT_EVENTS
        and segment_id != condition.segment_id
    ):
        return False
    if condition.threshold and event.type == EventType.LEAD_THRESHOLD_CROSSED:
        wanted = condition.threshold
        if payload.get("threshold") != wanted.name:
            return False
        if wanted.direction and payload.get("direction") != wanted.direction:
            return False
    if condition.form_id and event.type.startswith(("form.", "lead.created", "lead.updated")):
        form = event.subject_id if event.type.startswith("form.") else None
        if (payload.get("form_id") or form) != condition.form_id:
            return False
    return True


def candidates(
    events: Sequence[Any], targets: Sequence[Target], *, since_creation: bool
) -> list[Match]:
    found = []
    for event in events:
        for target in targets:
            if event.type not in target.event_types:
                continue
            if since_creation and event.created_at < target.created_at:
                continue
            if _payload_holds(target.condition, event):
                lead_id = lead_of(event.type, event.subject_id, event.payload)
                found.append(Match(target, event, lead_id))
    return found


async def _lead_conditions(
    conn: AsyncConnection, workspace_id: str, matches: list[Match]
) -> list[Match]:
    """Drop matches whose lead fails the segment-membership or filter part."""
    kept = []
    members = await _memberships(conn, matches)
    passing = await _filter_passes(conn, workspace_id, matches)
    for match in matches:
        condition = match.target.condition
        needs_member = condition.segment_id and match.event.type not in _SEGMENT_EVENTS
        if needs_member and (condition.segment_id, match.lead_id) not in members:
            continue
        if condition.filter and (match.target.id, match.lead_id) not in passing:
            continue
        kept.append(match)
    return kept


async def _memberships(conn: AsyncConnection, matches: list[Match]) -> set[tuple[str, str]]:
    wanted = [
        (m.target.condition.segment_id, m.lead_id)
        for m in matches
        if m.target.condition.segment_id and m.event.type not in _SEGMENT_EVENTS and m.lead_id
    ]
    if not wanted:
        return set()
    rows = await conn.execute(
        text(
            "SELECT segment_id, lead_id FROM segment_members "
            "WHERE segment_id = ANY(:segments) AND lead_id = ANY(:leads)"
        ),
        {"segments": list({s for s, _ in wanted}), "leads": list({lead for _, lead in wanted})},
    )
    return {(row.segment_id, row.lead_id) for row in rows}


async def _filter_passes(
    conn: AsyncConnection, workspace_id: str, matches: list[Match]
) -> set[tuple[str, str]]:
    by_target: dict[str, tuple[Target, set[str]]] = {}
    for m in matches:
        if m.target.condition.filter and m.lead_id:
            by_target.setdefault(m.target.id, (m.target, set()))[1].add(m.lead_id)
    passing: set[tuple[str, str]] = set()
    for target, lead_ids in by_target.values():
        statement = select(leads_table.c.id).where(
            leads_table.c.workspace_id == workspace_id,
            leads_table.c.id.in_(sorted(lead_ids)),
            compile_predicate(parse(target.condition.filter)),
        )
        passing.update((target.id, lead_id) for lead_id in (await conn.scalars(statement)).all())
    return passing


# -- what is sent --------------------------------------------------------------------------


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def _segment_names(conn: AsyncConnection, matches: list[Match]) -> dict[str, str]:
    wanted = {m.event.payload.get("segment_id") for m in matches if m.event.type in _SEGMENT_EVENTS}
    wanted.discard(None)
    if not wanted:
        return {}
    rows = await conn.execute(
        select(segments.c.id, segments.c.name).where(segments.c.id.in_(sorted(wanted)))
    )
    return {row.id: row.name for row in rows}


def body(
    event_type: str,
    moment: datetime,
    subject_id: str,
    payload: dict[str, Any],
    lead: dict[str, Any] | None,
    segment_name: str | None = None,
) -> str:
    """The Standard Webhooks payload `{type, timestamp, data}`: the event's own keys, its
    subject, the lead as GetLead shows it when the event is about one, and for segment
    entries and exits the segment's name."""
    data: dict[str, Any] = {"subject_id": subject_id, **payload, "lead": lead}
    if segment_name is not None:
        data["segment_name"] = segment_name
    return queries.as_json({"type": event_type, "timestamp": timestamp(moment), "data": data})


async def delivery_rows(
    conn: AsyncConnection, workspace_id: str, matches: list[Match]
) -> list[dict[str, Any]]:
    """Deliveries for matches that pass every condition, each with the body it will send."""
    kept = await _lead_conditions(conn, workspace_id, matches)
    if not kept:
        return []
    lead_ids = sorted({m.lead_id for m in kept if m.lead_id})
    snapshots = await leads.snapshots(conn, workspace_id=workspace_id, lead_ids=lead_ids)
    names = await _segment_names(conn, kept)
    rows = []
    for match, delivery_id in zip(kept, ids.new_ids("dlv", len(kept)), strict=True):
        event = match.event
        lead = snapshots.get(match.lead_id or "")
        segment_id = event.payload.get("segment_id") if event.type in _SEGMENT_EVENTS else None
        rows.append(
            {
                "id": delivery_id,
                "workspace_id": workspace_id,
                "trigger_id": match.target.id,
                "event_id": event_id(event.id),
                "event_type": event.type,
                "lead_id": match.lead_id,
                "body": body(
                    event.type,
                    event.created_at,
                    event.subject_id,
                    event.payload,
                    leads_rpc.to_json(lead) if lead else None,
                    names.get(segment_id, segment_id) if segment_id else None,
                ),
                "status": DeliveryStatus.PENDING,
                "next_attempt_at": datetime.now(UTC),
            }
        )
    return rows


# -- the fan-out step ----------------------------------------------------------------------

# Every workspace with a trigger, enabled or not: while its triggers are all disabled its
# events are still read (and match nothing), so enabling one later never sends the events
# written while it was disabled, as happens when another trigger of the workspace is enabled.
_CLAIM_CURSORS = text(
    "SELECT c.workspace_id, c.txid::text::bigint AS txid, c.event_row FROM trigger_cursors c "
    "WHERE EXISTS (SELECT 1 FROM triggers t WHERE t.workspace_id = c.workspace_id) "
    "ORDER BY c.workspace_id FOR UPDATE OF c SKIP LOCKED"
)
_EVENTS_AFTER = text(
    "SELECT id, txid::text::bigint AS txid, type, subject_id, payload, created_at FROM events "
    "WHERE workspace_id = :ws AND txid < pg_snapshot_xmin(pg_current_snapshot()) "
    "AND (txid, id) > (CAST(CAST(:txid AS text) AS xid8), :id) ORDER BY txid, id LIMIT :limit"
)
_MOVE_CURSOR = text(
    "UPDATE trigger_cursors SET txid = CAST(CAST(:txid AS text) AS xid8), event_row = :id, "
    "updated_at = now() WHERE workspace_id = :ws"
)
_TARGETS = text(
    "SELECT id, event_types, condition, created_at FROM triggers "
    "WHERE workspace_id = :ws AND enabled"
)


async def targets(conn: AsyncConnection, workspace_id: str) -> list[Target]:
    rows = await conn.execute(_TARGETS, {"ws": workspace_id})
    return [
        Target(r.id, frozenset(r.event_types), Condition.from_json(r.condition), r.created_at)
        for r in rows
    ]


async def fan_out_workspace(conn: AsyncConnection, cursor: Any, *, limit: int) -> int:
    """One batch of one workspace's events (its cursor row locked by the caller); returns
    how many events were read."""
    params = {"ws": cursor.workspace_id, "txid": cursor.txid, "id": cursor.event_row}
    events = (await conn.execute(_EVENTS_AFTER, {**params, "limit": limit})).all()
    if not events:
        return 0
    matches = candidates(events, await targets(conn, cursor.workspace_id), since_creation=True)
    rows = await delivery_rows(conn, cursor.workspace_id, matches)
    await queries.insert_deliveries(conn, rows)
    last = events[-1]
    await conn.execute(_MOVE_CURSOR, {"ws": cursor.workspace_id, "txid": last.txid, "id": last.id})
    return len(events)


async def fan_out(conn: AsyncConnection, *, limit: int = FAN_OUT_BATCH) -> int:
    """One batch for every workspace with enabled triggers that no other worker is fanning
    out now; returns how many events were read. The caller commits."""
    cursors = (await conn.execute(_CLAIM_CURSORS)).all()
    total = 0
    for cursor in cursors:
        total += await fan_out_workspace(conn, cursor, limit=limit)
    return total
