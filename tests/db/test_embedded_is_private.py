"""The embedded PostgreSQL trusts whoever connects, so nobody but the stack's user may reach
it (issue 16, fault 10): no TCP listener even after a plain restart, TCP refused in
pg_hba.conf, and the socket only in the owner-only data directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psycopg
import pytest

from server.db import embedded
from server.db.url import libpq_url
from tests.support import db

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("CRM_TEST_DATABASE_URL")), reason="the session uses an external server"
)


def _file_setting(conn: psycopg.Connection[tuple[str]], name: str) -> str | None:
    row = conn.execute(
        "SELECT setting FROM pg_file_settings WHERE name = %s"
        " AND sourcefile LIKE '%%postgresql.auto.conf' ORDER BY seqno DESC LIMIT 1",
        (name,),
    ).fetchone()
    return row[0].strip('"') if row else None


def test_embedded_server_listens_on_no_tcp_port_even_after_a_plain_restart() -> None:
    with (
        embedded.while_in_use(db.TEST_DATA_DIR, "postgres") as url,
        psycopg.connect(libpq_url(url), autocommit=True) as conn,
    ):
        live = conn.execute("SHOW listen_addresses").fetchone()
        assert live == ("",)
        # What a restart without the wheel's options reads: postgresql.auto.conf.
        assert _file_setting(conn, "listen_addresses") == ""
        socket_dir = _file_setting(conn, "unix_socket_directories")
        assert socket_dir is not None
        assert _file_setting(conn, "unix_socket_permissions") == "0700"
        tcp_rules = conn.execute(
            "SELECT auth_method FROM pg_hba_file_rules WHERE type LIKE 'host%%'"
        ).fetchall()
    assert tcp_rules, "initdb writes host rules; they must be there, refusing"
    assert {method for (method,) in tcp_rules} == {"reject"}
    mode = stat.S_IMODE(Path(socket_dir).stat().st_mode)
    assert mode & 0o077 == 0, oct(mode)
