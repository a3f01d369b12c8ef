"""The failed rows of an import as CSV: the file's own columns as uploaded plus an
`import_error` column, ready to fix and upload again (that column is skipped on re-import).

Cells that a spreadsheet would run as a formula get a leading apostrophe (as exports do),
except plain numbers and phone numbers such as +1 415 555 0100, which must survive a
round trip unchanged."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from server.db.engine import Database
from server.errors import NotFound
from server.imports import queries
from server.imports.mapping import ERROR_COLUMN

CHUNK_CHARS = 256 * 1024
_NUMBER_LIKE = re.compile(r"[+-]?[0-9][0-9 ().-]*")


def _safe(cell: str) -> str:
    if cell[:1] in ("=", "+", "-", "@", "\t", "\r") and not _NUMBER_LIKE.fullmatch(cell):
        return "'" + cell
    return cell


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _cells(file_format: str, columns: list[str], raw: Any) -> list[str]:
    if file_format == "CSV":
        cells = [_text(c) for c in raw] if isinstance(raw, list) else []
        return cells + [""] * (len(columns) - len(cells))
    if isinstance(raw, dict):
        return [_text(raw.get(c)) for c in columns]
    # An NDJSON line that was not JSON (or not an object): the text as it came, first column.
    return [_text(raw)] + [""] * (len(columns) - 1)


async def failed_rows_csv(db: Database, *, workspace_id: str, job_id: str) -> AsyncIterator[bytes]:
    async with db.transaction() as conn:
        job = await queries.get_job(conn, workspace_id=workspace_id, job_id=job_id)
        if job is None:
            raise NotFound.resource("import", job_id)
        columns = [str(c) for c in job.source_columns] or ["record"]
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([*columns, ERROR_COLUMN])
        result = await conn.stream(queries.FAILED_ROWS_SQL, {"job_id": job_id})
        async for row in result:
            cells = _cells(job.format, columns, row.raw)
            writer.writerow([*(_safe(c) for c in cells), row.reasons])
            if buffer.tell() >= CHUNK_CHARS:
                yield buffer.getvalue().encode("utf-8")
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode("utf-8")
