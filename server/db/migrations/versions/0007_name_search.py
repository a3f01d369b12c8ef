"""A names-and-title search vector, so search can rank those matches first without
ranking every match.

Revision ID: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The same words as the A-weighted part of search_vector. Its own GIN index finds the
    # leads whose names or title hold every word, even when those words are common elsewhere.
    op.execute(
        """
        ALTER TABLE leads ADD COLUMN name_vector tsvector GENERATED ALWAYS AS (
            to_tsvector('simple'::regconfig,
                coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' '
                || coalesce(title, ''))
        ) STORED
        """
    )
    op.execute("CREATE INDEX leads_name_search ON leads USING gin (name_vector)")


def downgrade() -> None:
    op.execute("DROP INDEX leads_name_search")
    op.execute("ALTER TABLE leads DROP COLUMN name_vector")
