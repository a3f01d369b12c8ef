"""Triggers: events fanned out to webhooks, Slack and enrichments, with a delivery log that
is also the delivery queue.

- `triggers`: what a workspace wants done with which events. Webhook secrets live in
  `secrets` (never returned after the reply that made them); `send_after` paces Slack
  (one message a second per trigger).
- `trigger_cursors`: per workspace with triggers, the (txid, event id) position fan-out has
  read the outbox up to; fan-out writes deliveries and moves the cursor in one transaction,
  so an event fans out exactly once.
- `deliveries`: one event (or test event) for one trigger. PostgreSQL is the queue: due
  rows are claimed with SKIP LOCKED and a lease (`next_attempt_at` moves forward before the
  attempt), so a worker killed mid-attempt leaves a row that another worker retries, and the
  three-day retry schedule needs no broker that keeps delayed messages.

Revision ID: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE triggers (
            id text PRIMARY KEY,
            workspace_id text NOT NULL REFERENCES workspaces(id),
            name text NOT NULL,
            enabled boolean NOT NULL,
            event_types text[] NOT NULL,
            condition jsonb NOT NULL,
            action_kind text NOT NULL CHECK (action_kind IN ('webhook', 'slack', 'enrichment')),
            action jsonb NOT NULL,
            secrets jsonb NOT NULL DEFAULT '[]',
            disabled_reason text NOT NULL DEFAULT '',
            send_after timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX triggers_workspace ON triggers (workspace_id, id)")
    op.execute(
        """
        CREATE TABLE trigger_cursors (
            workspace_id text PRIMARY KEY REFERENCES workspaces(id),
            txid xid8 NOT NULL,
            event_row bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE deliveries (
            id text PRIMARY KEY,
            workspace_id text NOT NULL,
            trigger_id text NOT NULL REFERENCES triggers(id) ON DELETE CASCADE,
            event_id text NOT NULL,
            event_type text NOT NULL,
            lead_id text,
            body text NOT NULL,
            status text NOT NULL
                CHECK (status IN ('pending', 'succeeded', 'failed', 'dead')),
            attempts integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz,
            last_attempt_at timestamptz,
            last_http_status integer NOT NULL DEFAULT 0,
            last_error text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE INDEX deliveries_due ON deliveries (next_attempt_at)"
        " WHERE status IN ('pending', 'failed')"
    )
    op.execute("CREATE INDEX deliveries_by_trigger ON deliveries (trigger_id, id)")
    # Slack sends a trigger's waiting deliveries together (one digest message a second).
    op.execute(
        "CREATE INDEX deliveries_waiting_by_trigger ON deliveries (trigger_id, next_attempt_at)"
        " WHERE status IN ('pending', 'failed')"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS deliveries")
    op.execute("DROP TABLE IF EXISTS trigger_cursors")
    op.execute("DROP TABLE IF EXISTS triggers")
