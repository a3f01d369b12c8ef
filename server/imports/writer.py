"""One batch of an import, written set-based inside the caller's transaction: COPY into a
staging table, companies linked by email domain and by name, one INSERT … ON CONFLICT (or
UPDATE) with RETURNING to tell created from updated, lead events, target static segments
with their counts and events, rule segments refreshed, row errors, and the checkpoint.

The caller commits all of it at once, so a batch is either wholly in or wholly out, and a
resumed job starts exactly after the last committed batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection as PgConnection
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from server.companies import linking
from server.events import catalogue
from server.events.catalogue import EventType
from server.imports.enums import JobStatus, Mode
from server.leads.model import DEFAULT_STATUS
from server.scoring import rescoring
from server.segments import membership

STAGE_COLUMNS = [
    "ord",
    "id",
    "email",
    "first_name",
    "last_name",
    "title",
    "phone",
    "phone_e164",
    "company",
    "source",
    "score",
    "status",
    "custom",
    "domain",
    "given",
]
STAGE_TABLE = "import_stage"
STAGE_DDL = f"""
CREATE TEMP TABLE IF NOT EXISTS {STAGE_TABLE} (
    ord integer NOT NULL, id text NOT NULL, email text NOT NULL,
    first_name text, last_name text, title text, phone text, phone_e164 text, company text,
    source text, score integer, status text, custom jsonb, domain text,
    given smallint NOT NULL, company_id text, company_path text, company_name text
) ON COMMIT DELETE ROWS
"""
TEXT_FIELDS = ("first_name", "last_name", "title")
CAUSE = "import"  # why an import moved a lead in or out of a segment (event payloads)
# Fields whose "not given" can't travel in EXCLUDED (a default or 0 stands in for it): rows
# are upserted in groups by which of them they give (`given`, a bit per field).
FLAGGED = ("source", "score", "status")


def given_mask(source: str | None, score: int | None, status: str | None) -> int:
    return (source is not None) | (score is not None) << 1 | (status is not None) << 2


def _given_fields(mask: int) -> frozenset[str]:
    return frozenset(name for bit, name in enumerate(FLAGGED) if mask >> bit & 1)


def _escaped(value: Any) -> str:
    if value is None:
        return "\\N"
    text = value if isinstance(value, str) else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy_text(rows: list[tuple[Any, ...]]) -> bytes:
    """Rows in COPY's text format. Built by the parser thread, so the writer sends one
    buffer per batch; most rows need no escaping, which a few scans of the joined line tell."""
    lines = []
    for row in rows:
        line = "\t".join(["\\N" if v is None else v if type(v) is str else str(v) for v in row])
        if (
            line.count("\t") != len(row) - 1
            or line.count("\\") != row.count(None)
            or "\n" in line
            or "\r" in line
        ):
            line = "\t".join([_escaped(v) for v in row])
        lines.append(line)
    lines.append("")
    return "\n".join(lines).encode("utf-8")


@dataclass
class Batch:
    """What the parser hands the writer: staged rows (one per distinct email), how many
    later rows of the same email each absorbed, row errors, and the data rows it covers."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    staged: bytes = b""  # the rows in COPY text format
    duplicates: list[int] = field(default_factory=list)
    errors: list[tuple[Any, ...]] = field(default_factory=list)  # for import_row_errors
    data_rows: int = 0
    failed_rows: int = 0


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    workspace_id: str
    mode: Mode
    segment_ids: list[str]
    default_source: str
    mapped: frozenset[str]  # lead fields some column feeds ("custom" for custom fields)


@dataclass(frozen=True)
class Outcome:
    created: int
    updated: int
    skipped: int
    failed: int
    status: JobStatus  # after the batch: RUNNING, or CANCELLED at this boundary


class LostOwnership(Exception):
    """The job moved on without this worker (another run of it, or it was finished)."""


def _sets(spec: JobSpec, new: Callable[[str], str], flagged: dict[str, str]) -> dict[str, str]:
    """Column → new value for an existing lead: only fields the row gives a value, so an
    import fills and updates but never wipes; a linked lead keeps its company."""
    sets = {name: f"coalesce({new(name)}, l.{name})" for name in TEXT_FIELDS}
    sets["phone"] = f"coalesce({new('phone')}, l.phone)"
    sets["phone_e164"] = (
        f"CASE WHEN {new('phone')} IS NULL THEN l.phone_e164 ELSE {new('phone_e164_raw')} END"
    )
    sets["company_id"] = f"coalesce(l.company_id, {new('company_id')})"
    sets["company_path"] = (
        "CASE WHEN l.company_id IS NULL THEN " + new("company_path") + " ELSE l.company_path END"
    )
    sets["company"] = (
        f"CASE WHEN l.company_id IS NOT NULL THEN l.company "
        f"WHEN {new('company_id')} IS NOT NULL THEN {new('company_name')} "
        f"ELSE coalesce({new('company')}, l.company) END"
    )
    sets["custom_fields"] = f"l.custom_fields || coalesce({new('custom')}, '{{}}'::jsonb)"
    sets.update(flagged)
    return sets


# The lead events of an import, shaped as the catalogue says (server.events.catalogue).
_CREATED_PAYLOAD = catalogue.sql_payload(
    EventType.LEAD_CREATED, email="email", import_id="CAST(:job AS text)"
)
_UPDATED_PAYLOAD = catalogue.sql_payload(
    EventType.LEAD_UPDATED, fields="CAST(:fields AS jsonb)", import_id="CAST(:job AS text)"
)


def _upsert_sql(spec: JobSpec, given: frozenset[str]) -> str:
    """The statement that writes the staged rows (those giving exactly the `given` flagged
    fields, in UPSERT mode) to leads and logs lead events."""
    insert = f"""
        INSERT INTO leads AS l (id, workspace_id, email, first_name, last_name, title, phone,
            phone_e164, company, company_id, company_path, source, score, status, custom_fields)
        SELECT s.id, :ws, s.email, coalesce(s.first_name, ''), coalesce(s.last_name, ''),
            coalesce(s.title, ''), coalesce(s.phone, ''), coalesce(s.phone_e164, ''),
            coalesce(s.company_name, s.company, ''), s.company_id, s.company_path,
            coalesce(s.source, :default_source), coalesce(s.score, 0),
            coalesce(s.status, '{DEFAULT_STATUS}'),
            coalesce(s.custom, '{{}}'::jsonb)
        FROM import_stage s WHERE s.given = :given OR NOT :grouped ORDER BY s.email
        ON CONFLICT (workspace_id, lower(email))"""
    if spec.mode == Mode.CREATE_ONLY:
        write = f"{insert} DO NOTHING RETURNING l.id, lower(l.email) AS email, true AS created"
    elif spec.mode == Mode.UPSERT:
        # EXCLUDED holds '' for text the row left empty (NOT NULL columns): '' is "not given".
        excluded = {
            "phone_e164_raw": "EXCLUDED.phone_e164",
            "company_id": "EXCLUDED.company_id",
            "company_path": "EXCLUDED.company_path",
            "company_name": "EXCLUDED.company",
            "custom": "EXCLUDED.custom_fields",
        }

        def new(name: str) -> str:
            return excluded.get(name, f"nullif(EXCLUDED.{name}, '')")

        sets = _sets(spec, new, {name: f"EXCLUDED.{name}" for name in sorted(given)})
        write = (
            f"{insert} DO UPDATE SET {_assign(sets)}, updated_at = now() "
            f"WHERE {_changed(sets)} "
            "RETURNING l.id, lower(l.email) AS email, (l.xmax = 0) AS created"
        )
    else:
        aliases = {"phone_e164_raw": "s.phone_e164", "company_name": "s.company_name"}

        def column(name: str) -> str:
            return aliases.get(name, f"s.{name}")

        flagged = {n: f"coalesce(s.{n}, l.{n})" for n in FLAGGED if n in spec.mapped}
        sets = _sets(spec, column, flagged)
        write = (
            f"UPDATE leads l SET {_assign(sets)}, updated_at = now() FROM import_stage s "
            f"WHERE l.workspace_id = :ws AND lower(l.email) = s.email AND {_changed(sets)} "
            "RETURNING l.id, lower(l.email) AS email, false AS created"
        )
    return f"""
    WITH written AS ({write}),
    logged AS (
        INSERT INTO events (workspace_id, type, subject_id, payload)
        SELECT :ws,
               CASE WHEN created THEN '{EventType.LEAD_CREATED}'
                    ELSE '{EventType.LEAD_UPDATED}' END,
               id,
               CASE WHEN created THEN {_CREATED_PAYLOAD} ELSE {_UPDATED_PAYLOAD} END
        FROM written
    )
    SELECT id, email, created FROM written
    """


def _assign(sets: dict[str, str]) -> str:
    return ", ".join(f"{name} = {value}" for name, value in sets.items())


def _changed(sets: dict[str, str]) -> str:
    # A row equal to its lead writes nothing (no event, no updated_at): it is skipped.
    names = [n for n in sets if n not in ("phone_e164", "company_path")]
    return (
        f"({', '.join(f'l.{n}' for n in names)}) IS DISTINCT FROM "
        f"({', '.join(sets[n] for n in names)})"
    )


STAGED_LEAD_IDS = """
SELECT l.id FROM import_stage s
JOIN leads l ON l.workspace_id = :ws AND lower(l.email) = s.email
ORDER BY l.id
"""
CHECKPOINT = text(
    """
    UPDATE import_jobs SET
        checkpoint = checkpoint + :rows, rows_created = rows_created + :created,
        rows_updated = rows_updated + :updated, rows_skipped = rows_skipped + :skipped,
        rows_failed = rows_failed + :failed, updated_at = now(),
        status = CASE WHEN cancel_requested THEN 'CANCELLED' ELSE status END,
        finished_at = CASE WHEN cancel_requested THEN now() ELSE finished_at END
    WHERE id = :id AND status = 'RUNNING' AND checkpoint = :expected
    RETURNING status
    """
)


class Writer:
    """Writes batches of one job on one connection (the one holding the job's lock)."""

    def __init__(self, conn: AsyncConnection, spec: JobSpec) -> None:
        self.conn = conn
        self.spec = spec
        # UPSERT rows go in groups by the flagged fields they give, when any are mapped.
        self.grouped = spec.mode == Mode.UPSERT and bool(spec.mapped & set(FLAGGED))
        self._statements: dict[int, Any] = {}
        self.fields = json.dumps(sorted(spec.mapped))

    async def prepare(self) -> None:
        await self.conn.execute(text(STAGE_DDL))
        await self.conn.commit()

    async def _raw(self) -> PgConnection[Any]:
        raw = await self.conn.get_raw_connection()
        driver: PgConnection[Any] = raw.driver_connection  # type: ignore[assignment]
        return driver

    async def write(self, batch: Batch, *, expected: int) -> Outcome:
        """Everything of one batch; the caller's transaction commits it."""
        ws = self.spec.workspace_id
        driver = await self._raw()
        written: list[Any] = []
        if batch.rows:
            async with driver.cursor() as cursor:
                columns = ", ".join(STAGE_COLUMNS)
                async with cursor.copy(f"COPY import_stage ({columns}) FROM STDIN") as copy:
                    await copy.write(batch.staged)
            await linking.link_staged(
                self.conn,
                workspace_id=self.spec.workspace_id,
                stage=STAGE_TABLE,
                by_name="company" in self.spec.mapped,
            )
            params: dict[str, Any] = {
                "ws": ws,
                "default_source": self.spec.default_source,
                "job": self.spec.job_id,
                "fields": self.fields,
            }
            masks = sorted({row[-1] for row in batch.rows}) if self.grouped else [0]
            for mask in masks:
                params.update(given=mask, grouped=self.grouped)
                result = await self.conn.execute(self._statement(mask), params)
                written.extend(result.all())
            # Rule segments first, then static ones: the order every lead writer keeps
            # (server.leads.writes), so no two wait on each other's segment rows.
            changed = [r.id for r in written]
            # Under a scoring model, imported leads are scored (a file's score is replaced).
            await rescoring.rescore(
                self.conn, workspace_id=ws, lead_ids=changed, cause=CAUSE, refresh=False
            )
            await membership.refresh(conn=self.conn, workspace_id=ws, lead_ids=changed, cause=CAUSE)
            if self.spec.segment_ids:
                await self._add_to_segments()
        if batch.errors:
            async with (
                driver.cursor() as cursor,
                cursor.copy(
                    "COPY import_row_errors (job_id, row_number, position, column_name, value, "
                    "reason, raw) FROM STDIN"
                ) as copy,
            ):
                for error in batch.errors:
                    await copy.write_row((self.spec.job_id, *error))
        outcome = self._count(batch, written)
        status = (
            await self.conn.execute(
                CHECKPOINT,
                {
                    "rows": batch.data_rows,
                    "created": outcome.created,
                    "updated": outcome.updated,
                    "skipped": outcome.skipped,
                    "failed": outcome.failed,
                    "id": self.spec.job_id,
                    "expected": expected,
                },
            )
        ).scalar()
        if status is None:
            raise LostOwnership
        after = JobStatus(status)
        return Outcome(outcome.created, outcome.updated, outcome.skipped, outcome.failed, after)

    def _statement(self, mask: int) -> Any:
        found = self._statements.get(mask)
        if found is None:
            sql = _upsert_sql(self.spec, _given_fields(mask))
            found = self._statements[mask] = text(sql)
        return found

    async def _add_to_segments(self) -> None:
        """Every lead the batch names (written or not) goes into the target segments."""
        ws = self.spec.workspace_id
        lead_ids = (await self.conn.scalars(text(STAGED_LEAD_IDS), {"ws": ws})).all()
        await membership.add_static(
            self.conn,
            workspace_id=ws,
            lead_ids=lead_ids,
            segment_ids=self.spec.segment_ids,
            cause=CAUSE,
            import_id=self.spec.job_id,
        )

    def _count(self, batch: Batch, written: list[Any]) -> Outcome:
        """Every data row lands in exactly one counter. A later row of an email already in
        the batch was merged into the first: it counts as an update of that lead (skipped
        when nothing changed, or in CREATE_ONLY where the lead exists by then)."""
        outcome = {r.email: r.created for r in written}
        created = updated = skipped = 0
        for row, extra in zip(batch.rows, batch.duplicates, strict=True):
            result = outcome.get(row[2])
            if result is None:
                skipped += 1 + extra
            elif result:
                created += 1
                if self.spec.mode == Mode.CREATE_ONLY:
                    skipped += extra
                else:
                    updated += extra
            else:
                updated += 1 + extra
        return Outcome(created, updated, skipped, batch.failed_rows, JobStatus.RUNNING)
