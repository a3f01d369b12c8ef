"""Imports: jobs, their durable uploads (chunks in sequence) and their row errors.

Revision ID: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE import_jobs (
            id text PRIMARY KEY,
            workspace_id text NOT NULL REFERENCES workspaces(id),
            status text NOT NULL CHECK (status IN
                ('UPLOADING', 'QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
            format text NOT NULL CHECK (format IN ('CSV', 'JSON', 'NDJSON')),
            mode text NOT NULL CHECK (mode IN ('UPSERT', 'CREATE_ONLY', 'UPDATE_ONLY')),
            -- [[header, field], ...] as asked for; the worker resolves the rest.
            mapping jsonb NOT NULL DEFAULT '[]',
            segment_ids text[] NOT NULL DEFAULT '{}',
            default_source text NOT NULL DEFAULT '',
            request_id text,
            -- Declared, or detected and recorded by the first pass so a resumed job reads
            -- the file exactly as before.
            encoding text NOT NULL DEFAULT '',
            delimiter text NOT NULL DEFAULT '',
            -- The file's own header (CSV), for the error download.
            source_columns jsonb NOT NULL DEFAULT '[]',
            -- Which upload attempt owns the chunks: a retried upload takes over an
            -- interrupted one and the old stream's writes stop matching.
            upload_session text NOT NULL DEFAULT '',
            size_bytes bigint NOT NULL DEFAULT 0,
            chunk_count integer NOT NULL DEFAULT 0,
            rows_total bigint,
            -- Data rows committed (= processed): a resumed job skips this many.
            checkpoint bigint NOT NULL DEFAULT 0,
            rows_created bigint NOT NULL DEFAULT 0,
            rows_updated bigint NOT NULL DEFAULT 0,
            rows_skipped bigint NOT NULL DEFAULT 0,
            rows_failed bigint NOT NULL DEFAULT 0,
            cancel_requested boolean NOT NULL DEFAULT false,
            error text NOT NULL DEFAULT '',
            attempts integer NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now(),
            uploaded_at timestamptz,
            enqueued_at timestamptz,
            started_at timestamptz,
            finished_at timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now(),
            CHECK (checkpoint = rows_created + rows_updated + rows_skipped + rows_failed)
        )
        """
    )
    op.execute("CREATE INDEX import_jobs_workspace ON import_jobs (workspace_id, id)")
    op.execute(
        "CREATE UNIQUE INDEX import_jobs_request_id ON import_jobs (workspace_id, request_id) "
        "WHERE request_id IS NOT NULL"
    )
    # The sweeper looks only at unfinished jobs.
    op.execute(
        "CREATE INDEX import_jobs_unfinished ON import_jobs (status) "
        "WHERE status IN ('UPLOADING', 'QUEUED', 'RUNNING')"
    )
    op.execute(
        """
        CREATE TABLE import_chunks (
            job_id text NOT NULL REFERENCES import_jobs(id) ON DELETE CASCADE,
            seq integer NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (job_id, seq)
        )
        """
    )
    # CSV is compressible, but pglz on every 1 MB chunk costs more upload throughput than
    # the disk it saves for a table that is emptied when the job ends.
    op.execute("ALTER TABLE import_chunks ALTER COLUMN data SET STORAGE EXTERNAL")
    op.execute(
        """
        CREATE TABLE import_row_errors (
            job_id text NOT NULL REFERENCES import_jobs(id) ON DELETE CASCADE,
            row_number bigint NOT NULL,
            position smallint NOT NULL,
            column_name text NOT NULL DEFAULT '',
            value text NOT NULL DEFAULT '',
            reason text NOT NULL,
            -- The row as uploaded (CSV: the fields as a JSON array; JSON: the record),
            -- on the row's first error only.
            raw jsonb,
            PRIMARY KEY (job_id, row_number, position)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS import_row_errors")
    op.execute("DROP TABLE IF EXISTS import_chunks")
    op.execute("DROP TABLE IF EXISTS import_jobs")
