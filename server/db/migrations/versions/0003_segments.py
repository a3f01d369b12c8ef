"""Segments and their memberships; commit-ordered event positions for the outbox.

Revision ID: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE segments (
            id text PRIMARY KEY,
            workspace_id text NOT NULL REFERENCES workspaces(id),
            name text NOT NULL,
            description text NOT NULL DEFAULT '',
            membership text NOT NULL CHECK (membership IN ('static', 'rule')),
            rules jsonb,
            state text NOT NULL DEFAULT 'ready' CHECK (state IN ('building', 'ready')),
            member_count bigint NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CHECK ((membership = 'rule') = (rules IS NOT NULL))
        )
        """
    )
    op.execute("CREATE INDEX segments_workspace_id ON segments (workspace_id, id)")
    op.execute(
        "CREATE INDEX segments_workspace_rule ON segments (workspace_id) WHERE membership = 'rule'"
    )
    op.execute(
        """
        CREATE TABLE segment_members (
            segment_id text NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
            lead_id text NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
            added_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (segment_id, lead_id)
        )
        """
    )
    # A lead's segments (segment_ids on every lead read, membership upkeep on every write).
    op.execute("CREATE INDEX segment_members_lead ON segment_members (lead_id)")
    # Ad-platform exports need phones in E.164; parsing needs a real library (Python), so the
    # normalised form is kept beside the raw one at write time and hashed in SQL on export.
    op.execute("ALTER TABLE leads ADD COLUMN phone_e164 text NOT NULL DEFAULT ''")
    # Events are delivered in the order their transactions became visible: position is
    # (txid, id), and readers only go up to the oldest transaction still running, so an
    # event that commits late can never land behind a consumer's cursor.
    op.execute("ALTER TABLE events ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id()")
    op.execute("CREATE INDEX events_workspace_position ON events (workspace_id, txid, id)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS events_workspace_position")
    op.execute("ALTER TABLE events DROP COLUMN IF EXISTS txid")
    op.execute("ALTER TABLE leads DROP COLUMN IF EXISTS phone_e164")
    op.execute("DROP TABLE IF EXISTS segment_members")
    op.execute("DROP TABLE IF EXISTS segments")
