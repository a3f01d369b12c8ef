"""Activities: what leads did. The check of one activity, the one set-based way to record
them (the API's single, batch and stream calls, and form submissions), and a lead's
timeline.

Recording is idempotent per workspace and idempotency key: the key's first activity is the
only one ever written, and every later use of the key gets that activity back. The one
lead write it makes goes through server.leads.writes.record_activity_times, which moves
last_activity_at forward and keeps rule segments (and scores) current.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from email_validator import EmailNotValidError
from sqlalchemy.ext.asyncio import AsyncConnection

from server import ids
from server.db.engine import AnyRow, Database
from server.errors import DomainError, FieldViolation, InvalidArgument, NotFound
from server.fields import NUL_MESSAGE, has_nul
from server.leads import emails, writes
from server.pagination import CursorCodec, Keyset, fingerprint, page_size
from server.scoring import queries
from server.scoring.enums import SCORE_ADJUSTED

TYPE = re.compile(r"[a-z][a-z0-9_.]{0,63}")
MAX_PROPERTIES_BYTES = 16 * 1024  # json.dumps of the properties
MAX_SOURCE = 100
MAX_IDEMPOTENCY_KEY = 200
MAX_POINTS = 1_000_000  # |properties.points| of a score_adjusted activity
MAX_BATCH = 1000  # activities in a batch call or in one message of a stream
MAX_TYPES = 50  # in a timeline's `types` filter
MAX_STREAM_ERRORS = 100  # refused items a stream reports
CLOCK_SKEW = timedelta(seconds=60)  # how far in the future a client's clock may run
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
INVALID = "ACTIVITY_INVALID"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ActivityInput:
    """An activity as a client gives it."""

    type: str
    properties: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None  # None: now
    source: str = ""
    idempotency_key: str = ""  # "": none
    lead_id: str = ""  # batch and stream items name their lead by id…
    email: str = ""  # …or by email


@dataclass(frozen=True)
class Item:
    """A checked activity, ready to record."""

    type: str
    properties: dict[str, Any]
    occurred_at: datetime
    source: str = ""
    idempotency_key: str | None = None
    lead_id: str = ""  # the lead, by id or (lower-cased) email
    email: str = ""
    index: int = 0  # its position in the call (in a stream: across the stream)
    prefix: str = ""  # its field path in the request ("activities[3]."), for errors


@dataclass(frozen=True)
class Activity:
    id: str
    lead_id: str
    type: str
    properties: dict[str, Any]
    occurred_at: datetime
    source: str
    idempotency_key: str  # "": none
    created_at: datetime


@dataclass(frozen=True)
class Outcome:
    """What became of one item: the activity recorded (or recorded before, when
    `duplicate`), or why it was refused."""

    index: int
    activity: Activity | None = None
    duplicate: bool = False
    error: DomainError | None = None


@dataclass
class StreamTally:
    """A stream's running counts, and its first MAX_STREAM_ERRORS refused items."""

    recorded: int = 0
    duplicates: int = 0
    failed: int = 0
    errors: list[Outcome] = field(default_factory=list)

    def add(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            if outcome.error is not None:
                self.failed += 1
                if len(self.errors) < MAX_STREAM_ERRORS:
                    self.errors.append(outcome)
            elif outcome.duplicate:
                self.duplicates += 1
            else:
                self.recorded += 1


@dataclass(frozen=True)
class ActivityPage:
    activities: list[Activity]
    next_cursor: str


# -- checking input ----------------------------------------------------------------------


def check(
    data: ActivityInput, *, prefix: str, now: datetime, names_lead: bool, index: int = 0
) -> Item:
    """The activity checked, with every violation at once (fields prefixed by `prefix`).
    `names_lead`: the input names its lead (lead_id or email), as batch items do."""
    problems: list[FieldViolation] = []

    def bad(name: str, description: str) -> None:
        problems.append(FieldViolation(f"{prefix}{name}", description))

    if not TYPE.fullmatch(data.type):
        bad("type", f"must match {TYPE.pattern}")
    occurred_at = data.occurred_at or now
    if occurred_at > now + CLOCK_SKEW:
        bad("occurred_at", "is in the future")
    if occurred_at < EARLIEST:
        bad("occurred_at", "is before 2000-01-01")
    for name, value, limit in (
        ("source", data.source, MAX_SOURCE),
        ("idempotency_key", data.idempotency_key, MAX_IDEMPOTENCY_KEY),
    ):
        if len(value) > limit:
            bad(name, f"longer than {limit} characters")
        if has_nul(value):
            bad(name, NUL_MESSAGE)
    problems.extend(_property_problems(data.type, data.properties, f"{prefix}properties"))
    email = _lead_reference(data, bad) if names_lead else ""
    if problems:
        raise InvalidArgument(
            message="; ".join(f"{p.field}: {p.description}" for p in problems),
            reason=INVALID,
            violations=problems,
        )
    return Item(
        type=data.type,
        properties=data.properties,
        occurred_at=occurred_at,
        source=data.source,
        idempotency_key=data.idempotency_key or None,
        lead_id=data.lead_id if names_lead else "",
        email=email,
        index=index,
        prefix=prefix,
    )


def _property_problems(kind: str, properties: dict[str, Any], path: str) -> list[FieldViolation]:
    if has_nul(properties):
        return [FieldViolation(path, NUL_MESSAGE)]
    if not _finite(properties):
        # NaN and infinities are not JSON: PostgreSQL would refuse the whole statement.
        return [FieldViolation(path, "numbers must be finite")]
    if len(json.dumps(properties)) > MAX_PROPERTIES_BYTES:
        return [FieldViolation(path, f"larger than {MAX_PROPERTIES_BYTES} bytes as JSON")]
    if kind == SCORE_ADJUSTED and not _whole_points(properties.get("points")):
        return [
            FieldViolation(
                f"{path}.points", f"is required: a whole number from -{MAX_POINTS} to {MAX_POINTS}"
            )
        ]
    return []


def _whole_points(points: Any) -> bool:
    if isinstance(points, bool) or not isinstance(points, int | float):
        return False  # bool is an int to Python, not to a client
    return float(points).is_integer() and abs(points) <= MAX_POINTS


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(_finite(item) for item in value)
    return True


def _lead_reference(data: ActivityInput, bad: Callable[[str, str], None]) -> str:
    """Checks that exactly one of lead_id and email is given; the normalised email."""
    if not data.lead_id and not data.email:
        bad("lead_id", "lead_id or email is required")
    elif data.lead_id and data.email:
        bad("lead_id", "give lead_id or email, not both")
    elif has_nul(data.lead_id):
        bad("lead_id", NUL_MESSAGE)
    elif data.email:
        try:
            return emails.normalise(data.email)
        except EmailNotValidError:
            bad("email", "is not a valid email address")
    return ""


def check_types(types: Sequence[str]) -> None:
    """A timeline's `types` filter."""
    problems = [
        FieldViolation(f"types[{i}]", f"must match {TYPE.pattern}")
        for i, kind in enumerate(types)
        if not TYPE.fullmatch(kind)
    ]
    if len(types) > MAX_TYPES:
        problems.append(FieldViolation("types", f"at most {MAX_TYPES} types"))
    if problems:
        raise InvalidArgument(
            message="; ".join(f"{p.field}: {p.description}" for p in problems),
            reason="ACTIVITY_FILTER_INVALID",
            violations=problems,
        )


# -- recording ---------------------------------------------------------------------------


async def record(
    conn: AsyncConnection, *, workspace_id: str, items: Sequence[Item]
) -> list[Outcome]:
    """Record checked items on the caller's connection (and transaction), set-based: one
    lookup of their leads, one insert, one read of earlier activities for keys used before,
    one lead write. An item whose lead is not in the workspace gets a LEAD_NOT_FOUND error
    and writes nothing. Outcomes come in the order of `items`."""
    outcomes: dict[int, Outcome] = {}
    targets = await _resolve(conn, workspace_id, items, outcomes)
    writing, repeats = _first_of_each_key(targets)
    written = await _insert(conn, workspace_id, writing, outcomes)
    for item in repeats:  # a key used earlier in this same call
        first = written[item.idempotency_key or ""]
        outcomes[item.index] = Outcome(item.index, first, duplicate=True)
    latest: dict[str, datetime] = {}
    for outcome in outcomes.values():
        if outcome.activity is not None and not outcome.duplicate:
            lead_id, at = outcome.activity.lead_id, outcome.activity.occurred_at
            latest[lead_id] = max(at, latest.get(lead_id, at))
    await writes.record_activity_times(conn, workspace_id=workspace_id, latest=latest)
    return [outcomes[item.index] for item in items]


async def record_for_written_lead(
    conn: AsyncConnection, *, workspace_id: str, item: Item, scored: bool
) -> None:
    """One activity (no idempotency key) of a lead the caller has just written in this
    transaction, its last_activity_at set to the activity's time and its rule segments
    refreshed (a form submission): so no lookup of the lead and no move of its time. Only
    under a scoring model (`scored`: the lead write saw one) does the lead's score, and what
    follows from it, need to catch up with the new activity."""
    assert item.lead_id and item.idempotency_key is None
    await _insert(conn, workspace_id, [item], {})
    if scored:
        await writes.activity_followups(conn, workspace_id=workspace_id, lead_ids=[item.lead_id])


async def _resolve(
    conn: AsyncConnection, workspace_id: str, items: Sequence[Item], outcomes: dict[int, Outcome]
) -> list[Item]:
    """The items with their lead's id; the others' outcomes are LEAD_NOT_FOUND."""
    found = await queries.find_leads(
        conn,
        workspace_id=workspace_id,
        lead_ids=sorted({item.lead_id for item in items if item.lead_id}),
        emails=sorted({item.email for item in items if item.email}),
    )
    known = {row.id for row in found}
    by_email = {row.email: row.id for row in found}
    targets: list[Item] = []
    for item in items:
        lead_id = item.lead_id if item.lead_id in known else by_email.get(item.email)
        if lead_id is None:
            outcomes[item.index] = Outcome(item.index, error=_unknown_lead(item))
        else:
            targets.append(replace(item, lead_id=lead_id))
    return targets


def _unknown_lead(item: Item) -> NotFound:
    name, value = ("email", item.email) if item.email else ("lead_id", item.lead_id)
    return unknown_lead(f"{item.prefix}{name}", value)


def unknown_lead(field_path: str, reference: str) -> NotFound:
    """The error of an activity whose lead (by id or email) is not in the workspace."""
    error = NotFound.resource("lead", reference)
    error.violations.append(FieldViolation(field_path, "no such lead here"))
    return error


def _first_of_each_key(items: Sequence[Item]) -> tuple[list[Item], list[Item]]:
    """(the items to write, the later items repeating an idempotency key of this call)."""
    seen: set[str] = set()
    writing: list[Item] = []
    repeats: list[Item] = []
    for item in items:
        key = item.idempotency_key
        (repeats if key is not None and key in seen else writing).append(item)
        if key is not None:
            seen.add(key)
    return writing, repeats


async def _insert(
    conn: AsyncConnection, workspace_id: str, items: Sequence[Item], outcomes: dict[int, Outcome]
) -> dict[str, Activity]:
    """Insert the items (each with its own key, or none); fills their outcomes and returns
    the activity now standing for each idempotency key."""
    new_ids = ids.new_ids("act", len(items))
    rows: list[dict[str, Any]] = [
        {
            "id": activity_id,
            "workspace_id": workspace_id,
            "lead_id": item.lead_id,
            "type": item.type,
            "data": item.properties,
            "occurred_at": item.occurred_at,
            "source": item.source,
            "idempotency_key": item.idempotency_key,
        }
        for activity_id, item in zip(new_ids, items, strict=True)
    ]
    # In key order: two calls inserting the same new keys wait for each other in one order,
    # so they never deadlock.
    rows.sort(key=lambda row: (row["idempotency_key"] is None, row["idempotency_key"] or ""))
    created = await queries.insert_activities(conn, workspace_id=workspace_id, rows=rows)
    inserted = {
        row["id"]: _recorded(row, created[row["id"]]) for row in rows if row["id"] in created
    }
    # A key the workspace had already: its first activity is the answer.
    used = [
        i.idempotency_key or "" for n, i in zip(new_ids, items, strict=True) if n not in inserted
    ]
    earlier = {
        row.idempotency_key: to_activity(row)
        for row in await queries.by_idempotency_keys(conn, workspace_id=workspace_id, keys=used)
    }
    by_key: dict[str, Activity] = {}
    for activity_id, item in zip(new_ids, items, strict=True):
        fresh = activity_id in inserted
        activity = inserted[activity_id] if fresh else earlier[item.idempotency_key]
        outcomes[item.index] = Outcome(item.index, activity, duplicate=not fresh)
        if item.idempotency_key is not None:
            by_key[item.idempotency_key] = activity
    return by_key


def _recorded(row: dict[str, Any], created_at: datetime) -> Activity:
    """An activity just inserted, from what was sent (nothing to read back)."""
    return Activity(
        id=row["id"],
        lead_id=row["lead_id"],
        type=row["type"],
        properties=row["data"],
        occurred_at=row["occurred_at"],
        source=row["source"],
        idempotency_key=row["idempotency_key"] or "",
        created_at=created_at,
    )


def to_activity(row: AnyRow) -> Activity:
    return Activity(
        id=row.id,
        lead_id=row.lead_id,
        type=row.type,
        properties=row.data,
        occurred_at=row.occurred_at,
        source=row.source,
        idempotency_key=row.idempotency_key or "",
        created_at=row.created_at,
    )


# -- the API's calls ---------------------------------------------------------------------


async def create_activity(
    db: Database,
    *,
    workspace_id: str,
    lead_id: str,
    data: ActivityInput,
    now: datetime | None = None,
) -> Activity:
    """One activity of the lead named in the path; 404 when the workspace has no such lead."""
    item = check(data, prefix="activity.", now=now or utc_now(), names_lead=False)
    if not lead_id or has_nul(lead_id):
        raise NotFound.resource("lead", lead_id.replace("\x00", ""))
    async with db.transaction() as conn:
        [outcome] = await record(
            conn, workspace_id=workspace_id, items=[replace(item, lead_id=lead_id)]
        )
    if outcome.activity is None:
        raise NotFound.resource("lead", lead_id)
    return outcome.activity


async def create_batch(
    db: Database,
    *,
    workspace_id: str,
    activities: Sequence[ActivityInput],
    now: datetime | None = None,
) -> list[Outcome]:
    """1..MAX_BATCH activities in one transaction; a refused item has its own error and
    does not stop the others."""
    if not 1 <= len(activities) <= MAX_BATCH:
        raise InvalidArgument.on(
            "activities", f"give 1 to {MAX_BATCH} activities", reason="ACTIVITY_BATCH_SIZE"
        )
    return await record_inputs(db, workspace_id, activities, start=0, now=now or utc_now())


async def record_inputs(
    db: Database, workspace_id: str, inputs: Sequence[ActivityInput], *, start: int, now: datetime
) -> list[Outcome]:
    """Check each input (numbered from `start`), then record the good ones in one
    transaction; outcomes in input order."""
    refused: list[Outcome] = []
    items: list[Item] = []
    for index, data in enumerate(inputs, start):
        try:
            items.append(
                check(data, prefix=f"activities[{index}].", now=now, names_lead=True, index=index)
            )
        except InvalidArgument as exc:
            refused.append(Outcome(index, error=exc))
    recorded: list[Outcome] = []
    if items:
        async with db.transaction() as conn:
            recorded = await record(conn, workspace_id=workspace_id, items=items)
    return sorted([*refused, *recorded], key=lambda outcome: outcome.index)


async def timeline(
    db: Database,
    codec: CursorCodec,
    *,
    workspace_id: str,
    lead_id: str,
    types: Sequence[str],
    after: datetime | None,
    limit: int,
    cursor: str,
) -> ActivityPage:
    """A lead's activities, newest first by (occurred_at, id)."""
    check_types(types)
    size = page_size(limit)
    keyset = Keyset(
        codec, workspace_id, fingerprint("activities", lead_id, sorted(set(types)), after)
    )
    before = _position(keyset, cursor)
    if not lead_id or has_nul(lead_id):
        raise NotFound.resource("lead", lead_id.replace("\x00", ""))
    async with db.read() as conn:
        if not await queries.lead_exists(conn, workspace_id=workspace_id, lead_id=lead_id):
            raise NotFound.resource("lead", lead_id)
        rows = await queries.timeline(
            conn,
            workspace_id=workspace_id,
            lead_id=lead_id,
            types=types,
            after=after,
            before=before,
            limit=size,
        )
    page, next_cursor = keyset.page(rows, size, lambda row: [row.occurred_at.isoformat(), row.id])
    return ActivityPage([to_activity(row) for row in page], next_cursor)


def _position(keyset: Keyset, cursor: str) -> tuple[datetime, str] | None:
    position = keyset.position(cursor, str, str)
    if position is None:
        return None
    try:
        return datetime.fromisoformat(position[0]), position[1]
    except ValueError:
        raise keyset.malformed() from None
