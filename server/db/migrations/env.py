"""Alembic environment: runs migrations over the URL the caller puts in the config."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

# Several processes may start at once (servers, workers): one migrates, the others wait.
MIGRATION_LOCK = 74110001

url = context.config.get_main_option("sqlalchemy.url")
assert url, "server.db.migrate sets sqlalchemy.url"
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    connection.execute(text(f"SELECT pg_advisory_lock({MIGRATION_LOCK})"))
    connection.commit()
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
