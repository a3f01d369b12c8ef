"""The words an import job is described by, as the database stores them (migration 0004's
CHECK constraints list the same values). StrEnum members are str, so they compare equal
to the text read back from PostgreSQL and bind as that text; naming them lets mypy catch
a misspelt status where a bare string would silently never match."""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    UPLOADING = "UPLOADING"  # the bytes are arriving
    QUEUED = "QUEUED"  # stored whole, waiting for a worker
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class FileFormat(enum.StrEnum):
    CSV = "CSV"
    JSON = "JSON"  # one array of objects
    NDJSON = "NDJSON"  # one object per line


class Mode(enum.StrEnum):
    UPSERT = "UPSERT"
    CREATE_ONLY = "CREATE_ONLY"
    UPDATE_ONLY = "UPDATE_ONLY"
