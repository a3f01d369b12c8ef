"""Import tables for SQLAlchemy Core queries, on the shared metadata. The schema is owned by
migration 0004; these mirror it and must be kept in step."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    SmallInteger,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from server.db.tables import metadata

import_jobs = Table(
    "import_jobs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("workspace_id", Text, ForeignKey("workspaces.id"), nullable=False),
    Column("status", Text, nullable=False),
    Column("format", Text, nullable=False),
    Column("mode", Text, nullable=False),
    Column("mapping", JSONB, nullable=False),
    Column("segment_ids", ARRAY(Text), nullable=False),
    Column("default_source", Text, nullable=False),
    Column("request_id", Text),
    Column("encoding", Text, nullable=False),
    Column("delimiter", Text, nullable=False),
    Column("source_columns", JSONB, nullable=False),
    Column("upload_session", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("chunk_count", Integer, nullable=False),
    Column("rows_total", BigInteger),
    Column("checkpoint", BigInteger, nullable=False),
    Column("rows_created", BigInteger, nullable=False),
    Column("rows_updated", BigInteger, nullable=False),
    Column("rows_skipped", BigInteger, nullable=False),
    Column("rows_failed", BigInteger, nullable=False),
    Column("cancel_requested", Boolean, nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("uploaded_at", DateTime(timezone=True)),
    Column("enqueued_at", DateTime(timezone=True)),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

import_chunks = Table(
    "import_chunks",
    metadata,
    Column("job_id", Text, ForeignKey("import_jobs.id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

import_row_errors = Table(
    "import_row_errors",
    metadata,
    Column("job_id", Text, ForeignKey("import_jobs.id"), primary_key=True),
    Column("row_number", BigInteger, primary_key=True),
    Column("position", SmallInteger, primary_key=True),
    Column("column_name", Text, nullable=False),
    Column("value", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("raw", JSONB),
)
