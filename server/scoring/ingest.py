"""High-volume activity ingest: newline-delimited JSON, checked and written by PostgreSQL.

A stream may carry activities as NDJSON bytes (one Activity JSON object per line, in any
split across messages) instead of proto messages. Python then touches no line: the bytes go
to a temporary table with COPY, and one statement parses each line, checks it (the same
rules and limits as `activities.check`, which the tests compare), finds its lead, and
inserts the good ones — skipping idempotency keys already recorded — and moves the leads'
last_activity_at as `writes.record_activity_times` does. Scores and rule segments then
follow (`writes.activity_followups`).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection as PgConnection
from sqlalchemy import TextClause, text
from sqlalchemy.exc import DataError
from sqlalchemy.ext.asyncio import AsyncConnection

from server import ids
from server.db.engine import Database
from server.errors import FieldViolation, InvalidArgument
from server.leads import writes
from server.scoring import activities
from server.scoring.enums import SCORE_ADJUSTED

MAX_PIECE_BYTES = 4 * 1024 * 1024  # NDJSON written per transaction, cut at a line's end

_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS activity_lines (
    n bigint GENERATED ALWAYS AS IDENTITY, line text NOT NULL
) ON COMMIT DELETE ROWS
"""

# The line's JSON and its occurred_at, parsed trusting them (an invalid one fails the
# statement, which then runs again carefully) or carefully (each tested first: a second parse).
_TRUSTING = ("line::jsonb", "p.occurred_raw::timestamptz")
_CAREFUL = (
    "CASE WHEN pg_input_is_valid(line, 'jsonb') THEN line::jsonb END",
    "CASE WHEN pg_input_is_valid(p.occurred_raw, 'timestamptz')"
    " THEN p.occurred_raw::timestamptz END",
)


def _statement(json_of_line: str, time_of_line: str) -> TextClause:
    """Problems of refused lines ("field|description", none for a duplicate) and one
    'recorded' row: the count, and the leads that got activities. The leads are looked up
    by index, once each (a join with the unanalysed line table hashed every lead of the
    workspace); inserts without an idempotency key skip the speculative insertion of ON
    CONFLICT; last_activity_at moves here, for the leads whose time moves forward only."""
    return text(
        rf"""
WITH lines AS MATERIALIZED (
    SELECT n - min(n) OVER () AS n, octet_length(line) AS size, {json_of_line} AS j
    FROM activity_lines
),
parts AS MATERIALIZED (  -- each line parsed once, not once per field read from it
    SELECT n, j, size,
           CASE WHEN jsonb_typeof(j -> 'type') = 'string' THEN j ->> 'type' END AS type,
           CASE WHEN jsonb_typeof(j -> 'lead_id') = 'string' THEN j ->> 'lead_id' END AS lead_id,
           CASE WHEN jsonb_typeof(j -> 'email') = 'string'
                THEN lower(btrim(j ->> 'email')) END AS email,
           coalesce(nullif(j -> 'properties', 'null'::jsonb), '{{}}'::jsonb) AS properties,
           j ->> 'occurred_at' AS occurred_raw,
           CASE WHEN jsonb_typeof(j -> 'source') = 'string' THEN j ->> 'source' END AS source,
           CASE WHEN jsonb_typeof(j -> 'idempotency_key') = 'string'
                THEN nullif(j ->> 'idempotency_key', '') END AS key
    FROM lines
),
by_id AS (  -- last_activity_at too: most leads' time will not move
    SELECT id, last_activity_at FROM leads
    WHERE workspace_id = :ws AND id = ANY(ARRAY(SELECT lead_id FROM parts
                                                 WHERE lead_id IS NOT NULL))
),
by_email AS (  -- only the lines that name their lead by email
    SELECT id, lower(email) AS email, last_activity_at FROM leads
    WHERE workspace_id = :ws
      AND lower(email) = ANY(ARRAY(SELECT email FROM parts
                                   WHERE lead_id IS NULL AND email IS NOT NULL))
),
timed AS (
    SELECT p.*,
           CASE WHEN p.occurred_raw IS NULL THEN CAST(:now AS timestamptz)
                ELSE {time_of_line} END AS occurred_at,
           coalesce(l1.id, l2.id) AS lead,
           coalesce(l1.last_activity_at, l2.last_activity_at) AS last_activity_at
    FROM parts p
    LEFT JOIN by_id l1 ON l1.id = p.lead_id
    LEFT JOIN by_email l2 ON p.lead_id IS NULL AND l2.email = p.email
),
checked AS (
    SELECT t.*, array_remove(ARRAY[
        CASE WHEN t.j IS NULL OR jsonb_typeof(t.j) <> 'object'
             THEN 'line|is not a JSON object (or holds \u0000)' END,
        -- The length apart: a bounded repeat makes the regex 10 times slower.
        CASE WHEN t.type IS NULL OR t.type !~ '^[a-z][a-z0-9_.]*$' OR char_length(t.type) > 64
             THEN 'type|must match [a-z][a-z0-9_.]{{0,63}}' END,
        CASE WHEN t.occurred_at IS NULL THEN 'occurred_at|is not an RFC 3339 timestamp'
             WHEN t.occurred_at > CAST(:now AS timestamptz) + make_interval(secs => :skew)
             THEN 'occurred_at|is in the future'
             WHEN t.occurred_at < CAST(:earliest AS timestamptz)
             THEN 'occurred_at|is before 2000' END,
        CASE WHEN jsonb_typeof(t.properties) <> 'object'
             THEN 'properties|must be an object'
             -- The line's length bounds its properties': most lines need no count.
             WHEN t.size > :max_properties AND octet_length(t.properties::text) > :max_properties
             THEN 'properties|larger than {activities.MAX_PROPERTIES_BYTES} bytes as JSON'
             WHEN t.type = '{SCORE_ADJUSTED}' AND NOT coalesce(
                  jsonb_typeof(t.properties -> 'points') = 'number'
                  AND (t.properties ->> 'points')::numeric % 1 = 0
                  AND abs((t.properties ->> 'points')::numeric) <= :max_points, false)
             THEN 'properties.points|is required: a whole number' END,
        CASE WHEN char_length(t.source) > :max_source THEN 'source|too long' END,
        CASE WHEN char_length(t.key) > :max_key THEN 'idempotency_key|too long' END,
        CASE WHEN (t.lead_id IS NULL) = (t.email IS NULL)
             THEN 'lead_id|name the lead by lead_id or by email' END
    ], NULL) AS problems
    FROM timed t
),
keyed AS (  -- in key order: two batches with the same new keys wait in one order
    INSERT INTO activities (id, workspace_id, lead_id, type, data, occurred_at, source,
                            idempotency_key)
    SELECT 'act_' || :id_head || lpad(c.n::text, 10, '0'), :ws, c.lead, c.type, c.properties,
           c.occurred_at, coalesce(c.source, ''), c.key
    FROM checked c
    WHERE cardinality(c.problems) = 0 AND c.lead IS NOT NULL AND c.key IS NOT NULL
    ORDER BY c.key, c.n
    ON CONFLICT (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING lead_id, occurred_at, id
),
unkeyed AS (
    INSERT INTO activities (id, workspace_id, lead_id, type, data, occurred_at, source)
    SELECT 'act_' || :id_head || lpad(c.n::text, 10, '0'), :ws, c.lead, c.type, c.properties,
           c.occurred_at, coalesce(c.source, '')
    FROM checked c
    WHERE cardinality(c.problems) = 0 AND c.lead IS NOT NULL AND c.key IS NULL
    RETURNING lead_id, occurred_at
),
latest AS (
    SELECT lead_id, max(occurred_at) AS at
    FROM (SELECT lead_id, occurred_at FROM keyed
          UNION ALL SELECT lead_id, occurred_at FROM unkeyed) i
    GROUP BY lead_id
),
moving AS (  -- as this statement's snapshot saw them (times never move back)
    SELECT DISTINCT x.lead_id, x.at FROM latest x JOIN checked c ON c.lead = x.lead_id
    WHERE c.last_activity_at IS NULL OR c.last_activity_at < x.at
),
locked AS (  -- as queries.touch_activity: leads whose time moves, locked in id order
    SELECT l.id, m.at FROM moving m JOIN leads l ON l.id = m.lead_id
    WHERE l.last_activity_at IS NULL OR l.last_activity_at < m.at
    ORDER BY l.id FOR NO KEY UPDATE OF l
),
touched AS (
    UPDATE leads l SET last_activity_at = greatest(l.last_activity_at, k.at)
    FROM locked k WHERE l.id = k.id
      AND l.last_activity_at IS DISTINCT FROM greatest(l.last_activity_at, k.at)
)
SELECT 'refused' AS kind, c.n, c.problems,
       c.lead IS NULL AND cardinality(c.problems) = 0 AS unknown_lead,
       c.lead_id IS NOT NULL AS by_id, coalesce(c.lead_id, c.email) AS lead_id,
       NULL::text[] AS leads
FROM checked c
WHERE cardinality(c.problems) > 0 OR c.lead IS NULL
   OR (c.key IS NOT NULL  -- a key recorded before (or twice in this piece)
       AND NOT EXISTS (SELECT 1 FROM keyed k
                       WHERE k.id = 'act_' || :id_head || lpad(c.n::text, 10, '0')))
UNION ALL
SELECT 'recorded', (SELECT count(*) FROM keyed) + (SELECT count(*) FROM unkeyed),
       NULL, NULL, NULL, NULL, (SELECT array_agg(lead_id ORDER BY lead_id) FROM latest)
"""
    )


_INGEST = _statement(*_TRUSTING)
_INGEST_CAREFULLY = _statement(*_CAREFUL)


@dataclass
class Lines:
    """Complete lines of NDJSON not yet written, and the start of an unfinished one."""

    pending: bytearray

    def take(self, data: bytes) -> bytes:
        """Append `data`; return the complete lines so far (each ending in a newline)."""
        self.pending += data
        end = self.pending.rfind(b"\n")
        if end < 0:
            return b""
        complete = bytes(self.pending[: end + 1])
        del self.pending[: end + 1]
        return complete

    def rest(self) -> bytes:
        """What is left at the end of the stream: a last line without a newline."""
        tail = bytes(self.pending)
        self.pending.clear()
        return tail + b"\n" if tail.strip() else b""


def copy_ready(lines: bytes) -> bytes:
    """NDJSON bytes in COPY's text format (one column): backslashes, tabs and carriage
    returns escaped; newlines stay the row separators. One pass of C per replace."""
    return lines.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\r", b"\\r")


async def write_lines(
    conn: AsyncConnection, *, workspace_id: str, lines: bytes, start: int, now: datetime
) -> tuple[int, list[activities.Outcome]]:
    """Write complete NDJSON lines (one piece: about MAX_PIECE_BYTES at most) in the
    caller's transaction; returns how many were recorded and an outcome for each duplicate
    or refused line, numbered from `start`."""
    if b"\x00" in lines:
        raise InvalidArgument.on("ndjson", "contains a NUL byte", reason=activities.INVALID)
    try:
        lines.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument.on("ndjson", "is not UTF-8", reason=activities.INVALID) from None
    raw = await conn.get_raw_connection()
    driver: PgConnection[Any] = raw.driver_connection  # type: ignore[assignment]
    await conn.execute(text(_STAGE))
    async with (
        driver.cursor() as cursor,
        cursor.copy("COPY activity_lines (line) FROM STDIN") as copy,
    ):
        await copy.write(copy_ready(lines))
    params = {
        "ws": workspace_id,
        "now": now,
        "skew": activities.CLOCK_SKEW.total_seconds(),
        "earliest": activities.EARLIEST,
        "max_properties": activities.MAX_PROPERTIES_BYTES,
        "max_points": activities.MAX_POINTS,
        "max_source": activities.MAX_SOURCE,
        "max_key": activities.MAX_IDEMPOTENCY_KEY,
        "id_head": _id_head(),
    }
    try:
        async with conn.begin_nested():  # a savepoint: what a failed try wrote is undone
            rows = (await conn.execute(_INGEST, params)).all()
    except DataError:  # a line that is not JSON, or an occurred_at that is no timestamp
        rows = (await conn.execute(_INGEST_CAREFULLY, params)).all()
    recorded = 0
    lead_ids: list[str] = []
    refused: list[activities.Outcome] = []
    for row in rows:
        if row.kind == "recorded":
            recorded, lead_ids = row.n, row.leads or []
        else:
            refused.append(_refused(start + row.n, row))
    # last_activity_at moved in the statement; scores and rule segments follow here.
    await writes.activity_followups(conn, workspace_id=workspace_id, lead_ids=lead_ids)
    return recorded, refused


def _refused(index: int, row: Any) -> activities.Outcome:
    prefix = f"activities[{index}]."
    if row.problems:
        violations = [
            FieldViolation(prefix + field, description)
            for field, _, description in (p.partition("|") for p in row.problems)
        ]
        error = InvalidArgument(
            message="; ".join(f"{v.field}: {v.description}" for v in violations),
            reason=activities.INVALID,
            violations=violations,
        )
        return activities.Outcome(index, None, error=error)
    if row.unknown_lead:
        field = "lead_id" if row.by_id else "email"
        error_nf = activities.unknown_lead(prefix + field, row.lead_id)
        return activities.Outcome(index, None, error=error_nf)
    return activities.Outcome(index, None, duplicate=True)


def _id_head() -> str:
    """The ids of one batch: a new id's 10 characters of time and 6 of its randomness, then
    (in SQL) the line's 10-digit number — still 26 characters, still time-ordered."""
    return ids.new_id("x")[2:18]


def pieces(data: bytes, size: int = MAX_PIECE_BYTES) -> Sequence[bytes]:
    """Complete lines cut into pieces of about `size` bytes, each ending at a newline (one
    search per piece, not per line)."""
    found: list[bytes] = []
    start = 0
    while start < len(data):
        end = data.rfind(b"\n", start, start + size) + 1 or data.find(b"\n", start) + 1
        end = end or len(data)  # no newline left: the rest is one (last) line
        found.append(data[start:end])
        start = end
    return found


async def record_stream(
    db: Database,
    *,
    workspace_id: str,
    messages: AsyncIterable[Sequence[activities.ActivityInput] | bytes],
    clock: Callable[[], datetime] = activities.utc_now,
) -> activities.StreamTally:
    """A stream's messages in order, each committed as it arrives (so a long stream commits
    as it goes): proto activities (at most MAX_BATCH a message) through `activities`, NDJSON
    bytes here, about MAX_PIECE_BYTES a transaction. Items are numbered across the whole
    stream, NDJSON lines included. An oversized message refuses the call; what came before
    it stays recorded."""
    tally = activities.StreamTally()
    lines = Lines(bytearray())
    start = number = 0
    async for message in messages:
        if isinstance(message, bytes):
            for piece in pieces(lines.take(message)):
                start = await _write(db, workspace_id, piece, start, clock(), tally)
        else:
            _check_size(message, number)
            outcomes = await activities.record_inputs(
                db, workspace_id, message, start=start, now=clock()
            )
            tally.add(outcomes)
            start += len(message)
        number += 1
    for piece in pieces(lines.rest()):
        start = await _write(db, workspace_id, piece, start, clock(), tally)
    return tally


def _check_size(message: Sequence[activities.ActivityInput], number: int) -> None:
    if len(message) > activities.MAX_BATCH:
        raise InvalidArgument.on(
            "activities",
            f"message {number} has {len(message)} activities, at most {activities.MAX_BATCH}"
            f" (the {number} messages before it were recorded)",
            reason="ACTIVITY_BATCH_SIZE",
        )


async def _write(
    db: Database,
    workspace_id: str,
    piece: bytes,
    start: int,
    now: datetime,
    tally: activities.StreamTally,
) -> int:
    async with db.transaction() as conn:
        recorded, refused = await write_lines(
            conn, workspace_id=workspace_id, lines=piece, start=start, now=now
        )
    tally.recorded += recorded
    tally.add(refused)
    return start + piece.count(b"\n")
