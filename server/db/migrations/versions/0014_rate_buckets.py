"""Rate-limit buckets shared by every server process (public form submissions per client IP
and per form), instead of one set per process, which let N servers allow N times the limit.
UNLOGGED: a crash may forget them (they refill within a minute anyway), and no WAL is written
for a counter that changes on every submission. Also merges the two heads 0012 and 0013.

Revision ID: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = ("0012", "0013")
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE UNLOGGED TABLE rate_buckets (
            key text PRIMARY KEY,
            tokens double precision NOT NULL,
            at timestamptz NOT NULL,
            allowed boolean NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX rate_buckets_at ON rate_buckets (at)")


def downgrade() -> None:
    op.execute("DROP TABLE rate_buckets")
