"""Drops events (workspace_id, id): since 0003 events are read in (txid, id) order through
events_workspace_position, and every segment entry or exit paid for the unused index.

Revision ID: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS events_workspace_id")


def downgrade() -> None:
    op.execute("CREATE INDEX events_workspace_id ON events (workspace_id, id)")
