"""Events by subject: `ListEvents`/`WatchEvents` filter on `subject_id` (a lead's own
history), read in (txid, id) order like the unfiltered feed.

Subject ids are globally unique (type-prefixed random ids), so the workspace is checked on
the rows found rather than carried in the index, keeping it narrow for every event insert.

Revision ID: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX events_subject_position ON events (subject_id, txid, id)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS events_subject_position")
