"""Processes and resources the benchmark runs against: a fresh database, the server
process, CPU accounting from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from server.config import REPO_ROOT, load_settings
from server.db import embedded
from server.db.url import libpq_url, normalise
from server.worker import declare_queues
from tests.support import db, stack

BENCH_DIR = REPO_ROOT / "build" / "bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@contextmanager
def database_server() -> Iterator[str]:
    """CRM_BENCH_DATABASE_URL, or the embedded PostgreSQL under build/bench/, which stops when
    the last run using it ends. Hold it around a run of several parts, so the server is not
    stopped and restarted (cold caches) between them."""
    configured = os.environ.get("CRM_BENCH_DATABASE_URL")
    if configured:
        yield normalise(configured)
        return
    with embedded.while_in_use(BENCH_DIR / "data", "postgres") as url:
        yield url


@contextmanager
def fresh_database(keep: bool = False) -> Iterator[str]:
    """A new migrated database for this run; dropped afterwards unless `keep`."""
    with database_server() as admin, db.database_on(admin, "tnx_bench", keep=keep) as url:
        yield url


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


@dataclass
class Workers:
    """`tnx-crm worker` processes a benchmark started."""

    processes: list[subprocess.Popen[bytes]]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def check(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise SystemExit(f"worker {process.pid} exited with {process.returncode}")


@contextmanager
def worker_processes(url: str, count: int, name: str, **env: str) -> Iterator[Workers]:
    """`count` workers on the database (logs in build/bench/<name>-worker-*.log), started,
    connected and ready when this yields; stopped after."""
    declare_queues(load_settings(), url)  # before they start together (server/worker.py)
    environment = {**os.environ, "CRM_DATABASE_URL": url, "CRM_LOG_LEVEL": "WARNING", **env}
    started = Workers([])
    try:
        for i in range(count):
            with (BENCH_DIR / f"{name}-worker-{i}.log").open("wb") as log:
                started.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "server.cli", "worker"],
                        env=environment,
                        stdout=log,
                        stderr=log,
                        cwd=REPO_ROOT,
                    )
                )
        time.sleep(6)  # started, connected, consuming and delivering
        started.check()
        yield started
    finally:
        for process in started.processes:
            stack.stop(process)


# -- CPU accounting -------------------------------------------------------------------
#
# A window's CPU is split into: the gRPC server process; PostgreSQL (every process of the
# cluster the benchmark's database lives in, when it runs on this machine); the rest of the
# benchmark's own process tree (load generator, Envoy, wrk); and `foreign`, whatever else
# ran on the machine meanwhile (another job's tests, say), which skews the figures.


def _processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of it and its reaped children) for every process."""
    table: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # After "pid (comm)": state, ppid, … then utime, stime, cutime, cstime (man proc).
        # cutime/cstime hold the CPU of children already reaped (PostgreSQL backends that
        # ended, say), so a tree's sum doesn't drop when one of its processes exits.
        fields = text.rsplit(")", 1)[1].split()
        ticks = sum(int(v) for v in fields[11:15])
        table[int(entry.name)] = (int(fields[1]), ticks / CLOCK_TICKS)
    return table


def _tree_cpu(table: dict[int, tuple[int, float]], root: int | None) -> float:
    if not root or root not in table:
        return 0.0
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += table[pid][1]
        todo.extend(children.get(pid, []))
    return total


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, summed over cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user..steal; guest time is already inside user
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def postmaster_pid(url: str) -> int | None:
    """The PostgreSQL server's pid when it runs on this machine (its backend's parent)."""
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        try:  # while the connection is open: the backend ends with it
            stat = Path(f"/proc/{row[0] if row else 0}/stat").read_text()
        except OSError:
            return None
    return int(stat.rsplit(")", 1)[1].split()[1])


@dataclass(frozen=True)
class Pids:
    """Whose CPU to attribute: the server, PostgreSQL's postmaster and the benchmark's root."""

    server: int
    postgres: int | None
    bench: int

    def as_args(self) -> list[str]:
        return [str(self.server), str(self.postgres or 0), str(self.bench)]

    @staticmethod
    def from_args(values: list[str]) -> Pids:
        server, postgres, bench = (int(v) for v in values)
        return Pids(server=server, postgres=postgres or None, bench=bench)


@dataclass(frozen=True)
class CpuSample:
    server: float
    postgres: float
    ours: float  # the benchmark's tree (server and clients included) plus PostgreSQL
    busy: float
    total: float


def cpu_sample(pids: Pids) -> CpuSample:
    table = _processes()
    busy, total = machine_cpu_seconds()
    postgres = _tree_cpu(table, pids.postgres)
    return CpuSample(
        server=_tree_cpu(table, pids.server),
        postgres=postgres,
        ours=_tree_cpu(table, pids.bench) + postgres,
        busy=busy,
        total=total,
    )


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds spent during a window, per part (see above)."""

    server: float
    postgres: float
    client: float
    foreign: float
    idle: float

    @staticmethod
    def between(start: CpuSample, end: CpuSample) -> CpuUse:
        server = end.server - start.server
        postgres = end.postgres - start.postgres
        ours = end.ours - start.ours
        busy = end.busy - start.busy
        return CpuUse(
            server=server,
            postgres=postgres,
            client=max(ours - server - postgres, 0.0),
            foreign=max(busy - ours, 0.0),
            idle=max((end.total - start.total) - busy, 0.0),
        )

    @property
    def foreign_share(self) -> float:
        """The share of the machine's capacity other jobs used during the window."""
        capacity = self.server + self.postgres + self.client + self.foreign + self.idle
        return self.foreign / capacity if capacity else 0.0

    @staticmethod
    def from_dict(data: dict[str, float]) -> CpuUse:
        names = ("server", "postgres", "client", "foreign", "idle")
        return CpuUse(**{name: float(data[name]) for name in names})


def wait_for_quiet(limit: float = 0.15, max_wait_s: float = 8.0) -> float:
    """Between runs our processes idle, so the machine's load is other jobs': wait (a while)
    until it drops under `limit`. Returns the last load seen."""
    deadline = time.monotonic() + max_wait_s
    while True:
        busy0, total0 = machine_cpu_seconds()
        time.sleep(0.5)
        busy1, total1 = machine_cpu_seconds()
        load = (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0
        if load < limit or time.monotonic() > deadline:
            return load
