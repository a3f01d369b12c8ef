"""Activities lose their foreign key to leads.

Every writer of activities finds the lead in the activity's workspace before inserting
(proto activities by `queries.find_leads`, NDJSON lines by the ingest statement's lookup),
and leads are never deleted (archiving keeps the row), so the key only repeated that
lookup for every row: about 8 µs of the 20 a bulk-ingested activity costs PostgreSQL. The
same reasoning dropped the workspace key in 0010. lead_scores keeps its key to leads.

Revision ID: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE activities DROP CONSTRAINT IF EXISTS activities_lead_id_fkey")


def downgrade() -> None:
    op.execute(
        "ALTER TABLE activities ADD CONSTRAINT activities_lead_id_fkey"
        " FOREIGN KEY (lead_id) REFERENCES leads(id) ON DELETE CASCADE"
    )
