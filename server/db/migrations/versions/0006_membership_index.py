"""Joins the imports (0004) and forms (0005) branches; a covering index for membership upkeep.

Revision ID: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = ("0004", "0005")
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Upkeep reads the current memberships of the written leads on every write and batch:
    # with segment_id in the index that read is index-only, not a heap visit per row.
    op.execute("CREATE INDEX segment_members_lead_segment ON segment_members (lead_id, segment_id)")
    op.execute("DROP INDEX segment_members_lead")


def downgrade() -> None:
    op.execute("CREATE INDEX segment_members_lead ON segment_members (lead_id)")
    op.execute("DROP INDEX segment_members_lead_segment")
