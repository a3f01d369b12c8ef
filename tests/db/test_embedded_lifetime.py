"""Test sessions and benchmarks stop the embedded PostgreSQL they use (issue 16, fault 11:
each left a server with gigabytes of shared buffers running), but never while another
session still uses the same one."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from server.db import embedded
from server.db.url import libpq_url

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("CRM_TEST_DATABASE_URL")), reason="the session uses an external server"
)


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=3) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


def test_embedded_server_stops_when_its_last_user_is_done(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg-users"
    with embedded.while_in_use(data_dir, "postgres") as first:
        with embedded.while_in_use(data_dir, "postgres") as second:
            assert _answers(second)
        assert _answers(first), "the first user's server was stopped under it"
    assert not _answers(first)
    assert not (data_dir / "pg" / "postmaster.pid").exists()
