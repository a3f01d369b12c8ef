"""A fresh, migrated database for the test session, and helpers that read it directly."""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from server.auth import service as auth
from server.db import embedded, migrate
from server.db.engine import Database, run_with_database
from server.db.url import libpq_url, normalise

T = TypeVar("T")
TEST_DATA_DIR = Path(__file__).resolve().parents[2] / "build" / "test-data"


@contextmanager
def _admin_url() -> Iterator[str]:
    """CRM_TEST_DATABASE_URL (CI: the machine's PostgreSQL) or the embedded server, which
    stops when the last test session using it at the same time ends."""
    configured = os.environ.get("CRM_TEST_DATABASE_URL")
    if configured:
        yield normalise(configured)
        return
    with embedded.while_in_use(TEST_DATA_DIR, "postgres") as url:
        yield url


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    root = base.rsplit("/", 1)[0]
    return f"{root}/{name}" + (f"?{query}" if query else "")


@contextmanager
def database_on(admin: str, prefix: str, *, keep: bool = False) -> Iterator[str]:
    """A new migrated database on the server `admin` reaches, dropped afterwards unless
    `keep` (tests and benchmarks each get their own)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(admin, name)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        if not keep:
            with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_database() -> Iterator[str]:
    with _admin_url() as admin, database_on(admin, "tnx_test") as url:
        yield url


def run_with_db(url: str, action: Callable[[Database], Awaitable[T]]) -> T:
    return run_with_database(url, action)


def create_workspace(url: str, name: str = "acme") -> auth.CreatedKey:
    return run_with_db(url, lambda db: auth.create_workspace(db, name=name))


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq_url(url)) as conn:
        return conn.execute(sql, params).fetchall()


def execute(url: str, sql: str, *params: Any) -> None:
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute(sql, params)


def snapshot(url: str, workspace_id: str) -> list[tuple[Any, ...]]:
    """Everything a workspace owns, to show that a refused request changed nothing."""
    leads = query(
        url,
        "SELECT id, email, updated_at, archived_at, custom_fields::text, company_id, company "
        "FROM leads WHERE workspace_id = %s ORDER BY id",
        workspace_id,
    )
    companies = query(
        url,
        "SELECT id, name, domain, parent_company_id, updated_at, archived_at, "
        "custom_fields::text FROM companies WHERE workspace_id = %s ORDER BY id",
        workspace_id,
    )
    events = query(url, "SELECT count(*) FROM events WHERE workspace_id = %s", workspace_id)
    return [*leads, *companies, *events]
