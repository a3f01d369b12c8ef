"""Processes and resources the benchmark runs against: a fresh database, the server
process, CPU accounting from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from server.config import REPO_ROOT
from server.db import embedded, migrate
from server.db.url import libpq_url, normalise
from tests.support import stack

BENCH_DIR = REPO_ROOT / "build" / "bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _admin_url() -> str:
    """CRM_BENCH_DATABASE_URL, or the embedded PostgreSQL under build/bench/."""
    configured = os.environ.get("CRM_BENCH_DATABASE_URL")
    if configured:
        return normalise(configured)
    return embedded.ensure_running(BENCH_DIR / "data", "postgres")


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


@contextmanager
def fresh_database(keep: bool = False) -> Iterator[str]:
    """A new migrated database for this run; dropped afterwards unless `keep`."""
    admin = _admin_url()
    name = f"tnx_bench_{uuid.uuid4().hex[:10]}"
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


@dataclass(frozen=True)
class Server:
    address: str
    port: int
    pid: int


@contextmanager
def bench_server(database_url: str, log_path: Path, log_level: str) -> Iterator[Server]:
    """`python -m bench.echo_server` (= `tnx-crm serve` + the echo) as its own process."""
    port = stack.free_port()
    env = {
        **os.environ,
        "CRM_DATABASE_URL": database_url,
        "CRM_GRPC_PORT": str(port),
        "CRM_LOG_LEVEL": log_level,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.echo_server"],
            env=env,
            stdout=log,
            stderr=log,
            cwd=REPO_ROOT,
        )
        try:
            stack.wait_until_serving(f"127.0.0.1:{port}")
            yield Server(address=f"127.0.0.1:{port}", port=port, pid=process.pid)
        finally:
            stack.stop(process)


# -- CPU accounting -------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man proc).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, summed over cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user..steal; guest time is already inside user
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


@dataclass(frozen=True)
class CpuSample:
    server: float
    client: float
    busy: float
    total: float


def cpu_sample(server_pid: int, client_pid: int | None = None) -> CpuSample:
    busy, total = machine_cpu_seconds()
    client = process_cpu_seconds(client_pid) if client_pid else 0.0
    return CpuSample(server=process_cpu_seconds(server_pid), client=client, busy=busy, total=total)


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds spent during a window, per part; `other` is PostgreSQL, Envoy and the rest."""

    server: float
    client: float
    other: float
    idle: float

    @staticmethod
    def between(start: CpuSample, end: CpuSample) -> CpuUse:
        server = end.server - start.server
        client = end.client - start.client
        busy = end.busy - start.busy
        return CpuUse(
            server=server,
            client=client,
            other=max(busy - server - client, 0.0),
            idle=max((end.total - start.total) - busy, 0.0),
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "server": self.server,
            "client": self.client,
            "other": self.other,
            "idle": self.idle,
        }

    @staticmethod
    def from_dict(data: dict[str, float]) -> CpuUse:
        return CpuUse(
            server=data["server"], client=data["client"], other=data["other"], idle=data["idle"]
        )
