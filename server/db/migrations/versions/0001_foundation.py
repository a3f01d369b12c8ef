"""Foundation: workspaces, API keys, leads, the events outbox, server secrets.

Revision ID: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(
        """
        CREATE TABLE workspaces (
            id text PRIMARY KEY,
            name text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE api_keys (
            id text PRIMARY KEY,
            workspace_id text NOT NULL REFERENCES workspaces(id),
            name text NOT NULL DEFAULT '',
            prefix text NOT NULL UNIQUE,
            secret_hash bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz,
            last_used_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX api_keys_workspace ON api_keys (workspace_id)")
    # Secrets shared by every server process of a deployment (cursor signing, form tokens).
    op.execute("CREATE TABLE server_secrets (name text PRIMARY KEY, secret bytea NOT NULL)")
    op.execute(
        """
        CREATE TABLE leads (
            id text PRIMARY KEY,
            workspace_id text NOT NULL REFERENCES workspaces(id),
            email text NOT NULL,
            first_name text NOT NULL DEFAULT '',
            last_name text NOT NULL DEFAULT '',
            title text NOT NULL DEFAULT '',
            phone text NOT NULL DEFAULT '',
            company text NOT NULL DEFAULT '',
            company_id text,
            source text NOT NULL DEFAULT '',
            score integer NOT NULL DEFAULT 0,
            status text NOT NULL DEFAULT 'new',
            custom_fields jsonb NOT NULL DEFAULT '{}'::jsonb,
            last_activity_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            archived_at timestamptz,
            -- Ranked free-text search: names and title weigh most, then email parts and
            -- company, then custom field values. 'simple' keeps every word ("of" included).
            search_vector tsvector GENERATED ALWAYS AS (
                setweight(to_tsvector('simple'::regconfig,
                    coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' '
                    || coalesce(title, '')), 'A')
                || setweight(to_tsvector('simple'::regconfig,
                    coalesce(email, '') || ' ' || translate(coalesce(email, ''), '@.', '  ')
                    || ' ' || coalesce(company, '')), 'B')
                || setweight(jsonb_to_tsvector('simple'::regconfig, custom_fields,
                    '["string", "numeric"]'), 'C')
            ) STORED,
            CONSTRAINT leads_score_non_negative CHECK (score >= 0)
        )
        """
    )
    op.execute("CREATE UNIQUE INDEX leads_workspace_email ON leads (workspace_id, lower(email))")
    # Keyset pagination walks (workspace_id, id); the partial index serves the default
    # "not archived" listing without visiting archived rows.
    op.execute("CREATE UNIQUE INDEX leads_workspace_id ON leads (workspace_id, id)")
    op.execute(
        "CREATE INDEX leads_workspace_live ON leads (workspace_id, id) WHERE archived_at IS NULL"
    )
    op.execute("CREATE INDEX leads_search ON leads USING gin (search_vector)")
    op.execute("CREATE INDEX leads_email_trgm ON leads USING gin (lower(email) gin_trgm_ops)")
    op.execute("CREATE INDEX leads_workspace_score ON leads (workspace_id, score)")
    op.execute("CREATE INDEX leads_workspace_source ON leads (workspace_id, source)")
    op.execute("CREATE INDEX leads_custom_fields ON leads USING gin (custom_fields jsonb_path_ops)")
    op.execute(
        """
        CREATE TABLE events (
            id bigserial PRIMARY KEY,
            workspace_id text NOT NULL,
            type text NOT NULL,
            subject_id text NOT NULL,
            payload jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX events_workspace_id ON events (workspace_id, id)")


def downgrade() -> None:
    for table in ("events", "leads", "server_secrets", "api_keys", "workspaces"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
