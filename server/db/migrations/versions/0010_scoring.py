"""Behavioural scoring: activities become a timeline (source, idempotency key, recorded
time), each workspace gets a scoring model, and each scored lead its score's parts, its
thresholds and when its score next changes by decay.

`activities_lead_timeline` serves both the timeline (newest first) and the scoring engine
(a lead's activities of a type since a horizon); the (workspace, type, time) index had no
reader and only slowed every insert, as did a second foreign key check per row.

Revision ID: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE activities
            ADD COLUMN source text NOT NULL DEFAULT '',
            ADD COLUMN idempotency_key text,
            ADD COLUMN created_at timestamptz NOT NULL DEFAULT now()
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX activities_idempotency ON activities (workspace_id, idempotency_key)"
        " WHERE idempotency_key IS NOT NULL"
    )
    op.execute("DROP INDEX IF EXISTS activities_lead")
    op.execute("DROP INDEX IF EXISTS activities_workspace_type")
    op.execute("CREATE INDEX activities_lead_timeline ON activities (lead_id, occurred_at, id)")
    # An activity's workspace is its lead's, whose own key to workspaces already holds it:
    # checking it again for every row cost bulk ingest a quarter of its time.
    op.execute("ALTER TABLE activities DROP CONSTRAINT IF EXISTS activities_workspace_id_fkey")
    op.execute(
        """
        CREATE TABLE scoring_models (
            workspace_id text PRIMARY KEY REFERENCES workspaces(id),
            version bigint NOT NULL,
            state text NOT NULL CHECK (state IN ('building', 'ready')),
            model jsonb NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE lead_scores (
            lead_id text PRIMARY KEY REFERENCES leads(id) ON DELETE CASCADE,
            workspace_id text NOT NULL REFERENCES workspaces(id),
            fit integer NOT NULL,
            engagement integer NOT NULL,
            model_version bigint NOT NULL,
            computed_at timestamptz NOT NULL,
            next_change_at timestamptz,
            above text[] NOT NULL DEFAULT '{}'
        )
        """
    )
    op.execute(
        "CREATE INDEX lead_scores_due ON lead_scores (next_change_at)"
        " WHERE next_change_at IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS lead_scores")
    op.execute("DROP TABLE IF EXISTS scoring_models")
    op.execute("DROP INDEX IF EXISTS activities_lead_timeline")
    op.execute(
        "ALTER TABLE activities ADD CONSTRAINT activities_workspace_id_fkey"
        " FOREIGN KEY (workspace_id) REFERENCES workspaces(id)"
    )
    op.execute("DROP INDEX IF EXISTS activities_idempotency")
    op.execute("CREATE INDEX activities_lead ON activities (lead_id, occurred_at)")
    op.execute(
        "CREATE INDEX activities_workspace_type ON activities (workspace_id, type, occurred_at)"
    )
    op.execute(
        "ALTER TABLE activities DROP COLUMN source, DROP COLUMN idempotency_key,"
        " DROP COLUMN created_at"
    )
