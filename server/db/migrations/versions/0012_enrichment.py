"""Enrichment: connectors, the shared lookup cache, runs, and where each value came from.

- `connectors`: a workspace's sources of data. `headers` holds the write-only secrets;
  `tokens`/`tokens_at` are the rate limiter every worker process shares (a token bucket
  refilled at rate_limit_per_minute, taken under the row's lock); `budget_month` and
  `calls_this_month` count provider calls against monthly_budget.
- `enrichment_cache`: a provider's answer (or miss) per (connector, lookup key) until it
  expires, written as soon as the call returns, so a retried batch pays no call twice.
- `enrichment_runs`: one request to enrich a lead or a selection; `after_lead` is the
  checkpoint of a batch run, committed with the batch's writes.
- `lead_enrichment`: per lead and field, the value a connector set, which connector, when.

Revision ID: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE connectors (
            id text PRIMARY KEY,
            workspace_id text NOT NULL REFERENCES workspaces(id),
            name text NOT NULL,
            kind text NOT NULL,
            config jsonb NOT NULL DEFAULT '{}',
            headers jsonb NOT NULL DEFAULT '{}',
            field_map jsonb NOT NULL DEFAULT '{}',
            overwrite text NOT NULL CHECK (overwrite IN ('fill_empty', 'overwrite')),
            enabled boolean NOT NULL,
            rate_limit_per_minute integer NOT NULL,
            monthly_budget integer NOT NULL,
            cache_ttl_seconds integer NOT NULL,
            tokens double precision NOT NULL DEFAULT 0,
            tokens_at timestamptz,
            budget_month date,
            calls_this_month integer NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX connectors_workspace ON connectors (workspace_id, id)")
    op.execute(
        """
        CREATE TABLE enrichment_cache (
            connector_id text NOT NULL,
            lookup_key text NOT NULL,
            found boolean NOT NULL,
            answer jsonb NOT NULL,
            expires_at timestamptz NOT NULL,
            PRIMARY KEY (connector_id, lookup_key)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE enrichment_runs (
            id text PRIMARY KEY,
            workspace_id text NOT NULL REFERENCES workspaces(id),
            state text NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
            connector_ids text[] NOT NULL,
            lead_id text,
            filter text NOT NULL DEFAULT '',
            segment_id text NOT NULL DEFAULT '',
            total integer NOT NULL DEFAULT 0,
            processed integer NOT NULL DEFAULT 0,
            changed integer NOT NULL DEFAULT 0,
            provider_calls integer NOT NULL DEFAULT 0,
            cache_hits integer NOT NULL DEFAULT 0,
            error_count integer NOT NULL DEFAULT 0,
            errors jsonb NOT NULL DEFAULT '[]',
            after_lead text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz
        )
        """
    )
    op.execute(
        "CREATE INDEX enrichment_runs_unfinished ON enrichment_runs (created_at)"
        " WHERE state IN ('queued', 'running')"
    )
    op.execute(
        """
        CREATE TABLE lead_enrichment (
            lead_id text NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
            field text NOT NULL,
            value jsonb NOT NULL,
            connector_id text NOT NULL,
            enriched_at timestamptz NOT NULL,
            PRIMARY KEY (lead_id, field)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS lead_enrichment")
    op.execute("DROP TABLE IF EXISTS enrichment_runs")
    op.execute("DROP TABLE IF EXISTS enrichment_cache")
    op.execute("DROP TABLE IF EXISTS connectors")
