"""Segment exports: CSV for people and the ad platforms' audience files.

PostgreSQL renders the file (`COPY (SELECT …) TO STDOUT WITH CSV`): one statement, so one
consistent snapshot (a lead changing mid-export neither vanishes nor appears twice), and
the rows stream out at close to COPY speed in chunks, never held whole in memory.

Every text cell is neutralised against spreadsheet formula injection (OWASP): a cell that
starts with =, +, -, @, tab, CR or LF gets a leading apostrophe. Ad formats normalise each
identifier as the platform specifies and hash it with SHA-256 in SQL; phones use the E.164
form kept on the lead (parsed with the phonenumbers library when the lead is written).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from server import ids
from server.db.engine import Database
from server.errors import InvalidArgument, NotFound
from server.filtering.fields import CUSTOM_KEY, CUSTOM_PREFIX

CHUNK_BYTES = 256 * 1024

DEFAULT_CSV_FIELDS = (
    "id",
    "email",
    "first_name",
    "last_name",
    "title",
    "phone",
    "company",
    "source",
    "score",
    "status",
    "created_at",
    "last_activity_at",
)
LEAD_COLUMNS = frozenset({*DEFAULT_CSV_FIELDS, "company_id", "updated_at", "archived_at"})


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def safe(expression: str) -> str:
    """The cell as text, with a leading apostrophe where a spreadsheet would see a formula."""
    return (
        f"(CASE WHEN left(({expression})::text, 1) IN ('=', '+', '-', '@', E'\\t', E'\\r', E'\\n')"
        f" THEN '''' || ({expression})::text ELSE ({expression})::text END)"
    )


def sha256(expression: str) -> str:
    """Hex SHA-256 of a normalised value; empty stays empty (no hash of nothing)."""
    return (
        f"(CASE WHEN coalesce({expression}, '') = '' THEN '' "
        f"ELSE encode(sha256(convert_to({expression}, 'UTF8')), 'hex') END)"
    )


def custom(key: str) -> str:
    return f"coalesce(l.custom_fields->>{_literal(key)}, '')"


# Where location identifiers come from: the lead's custom fields, else its company.
COUNTRY = f"upper(coalesce(nullif({custom('country')}, ''), c.country, ''))"
CITY = f"coalesce(nullif({custom('city')}, ''), c.city, '')"
STATE = custom("state")
ZIP = f"coalesce(nullif({custom('zip')}, ''), {custom('postal_code')})"
EMAIL = "lower(trim(l.email))"
# Google: for gmail.com / googlemail.com, dots in the local part are not significant.
GOOGLE_EMAIL = (
    f"(CASE WHEN split_part({EMAIL}, '@', 2) IN ('gmail.com', 'googlemail.com') "
    f"THEN replace(split_part({EMAIL}, '@', 1), '.', '') || '@' || split_part({EMAIL}, '@', 2) "
    f"ELSE {EMAIL} END)"
)


def _meta_letters(expression: str) -> str:
    """Meta: lowercase, no punctuation or spaces (letters of any script are kept)."""
    return f"regexp_replace(lower(trim({expression})), '[^[:alpha:]]', '', 'g')"


FORMATS: dict[str, list[tuple[str, str]]] = {
    # Google Ads Customer Match: hashed Email, Phone (E.164), names; plain Country and Zip.
    "google_ads": [
        ("Email", sha256(GOOGLE_EMAIL)),
        ("Phone", sha256("l.phone_e164")),
        ("First Name", sha256("lower(trim(l.first_name))")),
        ("Last Name", sha256("lower(trim(l.last_name))")),
        ("Country", safe(COUNTRY)),
        ("Zip", safe(f"trim({ZIP})")),
    ],
    # Meta Custom Audiences: every key normalised then hashed; phone as digits with country code.
    "meta": [
        ("EMAIL", sha256(EMAIL)),
        ("PHONE", sha256("ltrim(l.phone_e164, '+')")),
        ("FN", sha256(_meta_letters("l.first_name"))),
        ("LN", sha256(_meta_letters("l.last_name"))),
        ("CT", sha256(_meta_letters(CITY))),
        ("ST", sha256(_meta_letters(STATE))),
        ("ZIP", sha256(f"regexp_replace(lower({ZIP}), '[^[:alnum:]]', '', 'g')")),
        ("COUNTRY", sha256(f"lower({COUNTRY})")),
    ],
    # LinkedIn Matched Audiences contact template (plain values; LinkedIn hashes on upload).
    "linkedin": [
        ("email", safe(EMAIL)),
        ("googleaid", "''"),
        ("firstname", safe("l.first_name")),
        ("lastname", safe("l.last_name")),
        ("jobtitle", safe("l.title")),
        ("employeecompany", safe("coalesce(nullif(l.company, ''), c.name, '')")),
        ("country", safe(COUNTRY)),
    ],
}


@dataclass(frozen=True)
class ExportPlan:
    segment_id: str
    workspace_id: str
    columns: list[tuple[str, str]]  # (header, SQL expression)


def csv_columns(fields: Sequence[str]) -> list[tuple[str, str]]:
    columns = []
    for i, name in enumerate(fields or DEFAULT_CSV_FIELDS):
        if name in LEAD_COLUMNS:
            expression = f"l.{name}"
            if name.endswith("_at"):
                expression = (
                    f"to_char(l.{name} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                )
            columns.append((name, safe(f"coalesce(({expression})::text, '')")))
        elif name.startswith(CUSTOM_PREFIX) and CUSTOM_KEY.match(name[len(CUSTOM_PREFIX) :]):
            columns.append((name, safe(custom(name[len(CUSTOM_PREFIX) :]))))
        else:
            raise InvalidArgument.on(
                f"fields[{i}]", f"unknown export field {name!r}", reason="EXPORT_INVALID"
            )
    return columns


def plan(
    *, workspace_id: str, segment_id: str, export_format: str, fields: Sequence[str]
) -> ExportPlan:
    if export_format == "csv":
        columns = csv_columns(fields)
    elif export_format in FORMATS:
        if fields:
            raise InvalidArgument.on(
                "fields", "only the CSV format takes a field list", reason="EXPORT_INVALID"
            )
        columns = FORMATS[export_format]
    else:
        raise InvalidArgument.on(
            "format", "must be CSV, GOOGLE_ADS, META or LINKEDIN", reason="EXPORT_INVALID"
        )
    return ExportPlan(segment_id=segment_id, workspace_id=workspace_id, columns=columns)


def copy_sql(export: ExportPlan) -> str:
    # COPY takes no bind parameters: ids are checked to be well-formed and quoted.
    select_list = ", ".join(f"{expr} AS {_identifier(header)}" for header, expr in export.columns)
    return (
        f"COPY (SELECT {select_list} FROM segment_members m "
        f"JOIN leads l ON l.id = m.lead_id "
        f"LEFT JOIN companies c ON c.id = l.company_id AND c.workspace_id = l.workspace_id "
        f"WHERE m.segment_id = {_literal(export.segment_id)} "
        f"AND l.workspace_id = {_literal(export.workspace_id)} ORDER BY m.lead_id) "
        f"TO STDOUT WITH (FORMAT csv, HEADER true)"
    )


async def export_segment(
    db: Database, *, workspace_id: str, segment_id: str, export_format: str, fields: Sequence[str]
) -> AsyncIterator[bytes]:
    """Yields the file in chunks of about CHUNK_BYTES. Bad input raises before the first chunk."""
    export = plan(
        workspace_id=workspace_id, segment_id=segment_id, export_format=export_format, fields=fields
    )
    async with db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        pg = raw.driver_connection
        assert pg is not None
        async with pg.transaction(), pg.cursor() as cursor:
            found = await (
                await cursor.execute(
                    "SELECT 1 FROM segments WHERE id = %s AND workspace_id = %s",
                    (segment_id, workspace_id),
                )
            ).fetchone()
            if not ids.looks_like("seg", segment_id) or found is None:
                raise NotFound.resource("segment", segment_id)
            buffer = bytearray()
            async with cursor.copy(copy_sql(export)) as copy:
                async for data in copy:
                    buffer += data
                    if len(buffer) >= CHUNK_BYTES:
                        yield bytes(buffer)
                        buffer.clear()
            if buffer:
                yield bytes(buffer)
