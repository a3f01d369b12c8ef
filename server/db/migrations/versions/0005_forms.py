"""Capture forms, their submissions, and lead activities.

Revision ID: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0005"
# Side by side with 0004 (imports): both build on the segments schema; `migrate` applies
# every head.
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE forms (
            id text PRIMARY KEY,
            workspace_id text NOT NULL REFERENCES workspaces(id),
            -- Global: the public submission URL names a form by slug alone.
            slug text NOT NULL UNIQUE,
            name text NOT NULL,
            fields jsonb NOT NULL,
            segment_ids text[] NOT NULL DEFAULT '{}',
            source text NOT NULL DEFAULT 'form',
            allowed_origins text[] NOT NULL DEFAULT '{}',
            success_message text NOT NULL DEFAULT '',
            redirect_url text NOT NULL DEFAULT '',
            submit_label text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE UNIQUE INDEX forms_workspace_id ON forms (workspace_id, id)")
    op.execute(
        """
        CREATE TABLE form_submissions (
            id text PRIMARY KEY,
            workspace_id text NOT NULL REFERENCES workspaces(id),
            form_id text NOT NULL REFERENCES forms(id) ON DELETE CASCADE,
            lead_id text NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
            payload jsonb NOT NULL,
            origin text NOT NULL,
            page_url text NOT NULL DEFAULT '',
            user_agent text NOT NULL DEFAULT '',
            submitted_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    # A form's submissions, newest first (ids sort by creation time).
    op.execute("CREATE INDEX form_submissions_form ON form_submissions (form_id, id)")
    op.execute("CREATE INDEX form_submissions_lead ON form_submissions (lead_id)")
    # What a lead did, for the activity timeline and for behavioural scoring.
    op.execute(
        """
        CREATE TABLE activities (
            id text PRIMARY KEY,
            workspace_id text NOT NULL REFERENCES workspaces(id),
            lead_id text NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
            type text NOT NULL,
            data jsonb NOT NULL DEFAULT '{}'::jsonb,
            occurred_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX activities_lead ON activities (lead_id, occurred_at)")
    op.execute(
        "CREATE INDEX activities_workspace_type ON activities (workspace_id, type, occurred_at)"
    )


def downgrade() -> None:
    for table in ("activities", "form_submissions", "forms"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
