"""`tnx-crm up` as a benchmark's subject (bench/scaleout.py, bench/soak.py): the whole
supervised stack started as an operator would, on the machine's PostgreSQL and Redis; its
processes by role (servers, workers, Envoy); CPU per role from /proc; RSS; Envoy's admin
socket; and a small HTTP/1.1 keep-alive client cheap enough to load the gateway from Python.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import psycopg

from bench.procs import BENCH_DIR, CLOCK_TICKS, machine_cpu_seconds
from bench.rest import ensure_wrk
from server.db.url import libpq_url

MACHINE_DATABASE = "postgresql://127.0.0.1:5432/test"
# A Redis database number of our own: the queues of a benchmark's stack meet nobody else's.
BROKER_URL = "redis://127.0.0.1:6379/12"


def code_version() -> str:
    """The commit measured, and whether the work tree differed from it."""
    described = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    )
    return described.stdout.strip() or "unknown"


def use_machine_services() -> None:
    """The machine's PostgreSQL (fresh databases made and dropped by bench.procs) and Redis,
    unless the caller set others; and wrk, which the loads need."""
    if ensure_wrk() is None:
        raise SystemExit("wrk is needed: apt-get install wrk (Debian package)")
    os.environ.setdefault("CRM_BENCH_DATABASE_URL", MACHINE_DATABASE)
    os.environ.setdefault("CRM_BENCH_BROKER_URL", BROKER_URL)


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> int:
    """The first of `count` consecutive free TCP ports (servers and metrics are numbered),
    below Linux's ephemeral range (32768 and up), where outgoing connections take ports."""
    bases = range(20000, 32768 - count, count)
    first = os.getpid() % len(bases)  # concurrent runs start their search apart
    candidates: list[int] = [*bases[first:], *bases[:first]]
    for base in candidates:
        if all(_bindable(port) for port in range(base, base + count)):
            return base
    raise RuntimeError("no free ports")


GATEWAY_COUNTERS = (
    "health_check.failure",
    "health_check.network_failure",
    "upstream_cx_none_healthy",
    "upstream_rq_retry",
    "outlier_detection.ejections_enforced_total",
    "upstream_rq_pending_overflow",
    "upstream_cx_protocol_error",
    "upstream_rq_tx_reset",
    "upstream_rq_503",
)


@dataclass
class Stack:
    servers: int
    workers: int
    data_dir: Path
    http_port: int
    grpc_port: int
    process: subprocess.Popen[bytes]
    log_start: int = 0  # where this run's lines begin in up.log (kept across runs)
    roles: dict[str, list[int]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def admin_socket(self) -> Path:
        return self.data_dir / f"envoy-admin-{self.http_port}.sock"

    def admin(self, path: str, method: str = "GET") -> str:
        transport = httpx.HTTPTransport(uds=str(self.admin_socket))
        with httpx.Client(transport=transport, timeout=2) as client:
            return client.request(method, f"http://envoy{path}").text

    def gateway_counters(self) -> dict[str, int]:
        """The gateway's counters that explain failed calls (README, "Metrics")."""
        counters = {}
        for line in self.admin("/stats?filter=^cluster\\.crm_grpc\\.").splitlines():
            name, _, value = line.removeprefix("cluster.crm_grpc.").partition(": ")
            if name in GATEWAY_COUNTERS:
                counters[name] = int(value)
        return counters

    def trace_health_checks(self) -> None:
        """Envoy logs every health check's answer (its `hc` logger at debug) to up.log."""
        self.admin("/logging?hc=debug", method="POST")

    def failed_health_checks(self) -> list[str]:
        """up.log's health check lines that are not a SERVING answer, with their time."""
        with (self.data_dir / "up.log").open("rb") as log:
            log.seek(self.log_start)
            lines = log.read().decode(errors="replace").splitlines()
        ok = "hc grpc_status=0 service_status=serving"
        return [x for x in lines if "[hc]" in x and ok not in x]

    def healthy_servers(self) -> int:
        for line in self.admin("/stats?filter=crm_grpc.membership_healthy").splitlines():
            if line.startswith("cluster.crm_grpc.membership_healthy:"):
                return int(line.split(":")[1])
        return 0

    def refresh_roles(self) -> dict[str, list[int]]:
        """Pids of the stack's processes by role: server, worker, envoy, other (scheduler,
        MCP, the supervisor itself)."""
        roles: dict[str, list[int]] = {"server": [], "worker": [], "envoy": [], "other": []}
        top = psutil.Process(self.process.pid)
        for proc in [top, *top.children(recursive=True)]:
            try:
                argv = proc.cmdline()
            except psutil.Error:
                continue
            if "envoy" in Path(argv[0]).name:
                roles["envoy"].append(proc.pid)
            elif argv[-1:] == ["serve"]:
                roles["server"].append(proc.pid)
            elif argv[-1:] == ["worker"]:
                roles["worker"].append(proc.pid)
            else:
                roles["other"].append(proc.pid)
        self.roles = roles
        return roles

    def server_pid(self, index: int) -> int:
        """The pid of the server listening on the index-th gRPC port."""
        port = self.grpc_port + index
        for conn in psutil.net_connections(kind="tcp"):
            listening = conn.status == psutil.CONN_LISTEN
            if listening and getattr(conn.laddr, "port", None) == port and conn.pid:
                return conn.pid
        raise RuntimeError(f"nothing listens on {port}")


def _wait_ready(stack: Stack, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stack.process.poll() is not None:
            raise SystemExit(f"tnx-crm up exited with {stack.process.returncode}")
        try:
            ready = httpx.get(f"{stack.base_url}/readyz", timeout=1).status_code == 200
            if ready and stack.healthy_servers() == stack.servers:
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"the stack was not ready after {timeout_s:.0f}s")


@contextmanager
def run_stack(url: str, servers: int, workers: int, name: str, **env: str) -> Iterator[Stack]:
    """`tnx-crm up --servers N --workers M` on `url`, its own data directory and ports; ready
    (every server healthy in the gateway) when this yields, stopped (SIGTERM) after."""
    data_dir = BENCH_DIR / name
    data_dir.mkdir(parents=True, exist_ok=True)
    base = _free_ports(24)
    ports = {
        "CRM_HTTP_PORT": base,
        "CRM_MCP_PORT": base + 1,
        "CRM_METRICS_PORT": base + 2,  # servers: base+2 …
        "CRM_WORKER_METRICS_PORT": base + 10,  # workers: base+10 …
        "CRM_GRPC_PORT": base + 18,  # servers: base+18 …
    }
    environment = {
        **os.environ,
        **{k: str(v) for k, v in ports.items()},
        "CRM_DATABASE_URL": url,
        "CRM_BROKER_URL": os.environ.get("CRM_BENCH_BROKER_URL", BROKER_URL),
        "CRM_DATA_DIR": str(data_dir),
        "CRM_LOG_LEVEL": "WARNING",
        **env,
    }
    log = (data_dir / "up.log").open("ab")
    log_start = log.tell()
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "up", f"--servers={servers}", f"--workers={workers}"],
        env=environment,
        cwd=data_dir,  # the scheduler keeps its schedule file in its working directory
        stdout=log,
        stderr=log,
    )
    http, grpc = ports["CRM_HTTP_PORT"], ports["CRM_GRPC_PORT"]
    stack = Stack(servers, workers, data_dir, http, grpc, process, log_start)
    try:
        _wait_ready(stack, 120)
        stack.refresh_roles()
        stack.trace_health_checks()
        yield stack
    finally:
        _stop(process)
        log.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        family = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        family = []
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for child in family:  # only what the supervisor failed to stop
        with suppress(psutil.Error):
            child.kill()


# -- CPU and memory per role -------------------------------------------------------------


def _pid_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(v) for v in fields[11:15]) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error:
        return 0.0


# The backends of the benchmark's database, plus the cluster's own background processes
# (WAL writer, checkpointer, …): other databases' backends are someone else's work.
POSTGRES_PIDS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    " OR backend_type <> 'client backend'"
)


@dataclass
class CpuWindow:
    """CPU seconds per role over a window; `foreign` is the rest of the machine's busy time
    (other jobs), `idle` what nobody used. The load generator's share is added by the caller
    (wrk via RUSAGE_CHILDREN, the in-process client via RUSAGE_SELF)."""

    seconds: dict[str, float]
    wall_s: float

    def share(self, role: str) -> float:
        """The role's CPU as cores in use (1.0 = one core all the time)."""
        return self.seconds.get(role, 0.0) / self.wall_s if self.wall_s else 0.0


class CpuMeter:
    """CPU per role over a window. PostgreSQL backends come and go (an import's connections
    live as long as its job), so the window samples every 0.25 s: a process's CPU counts from
    its first sample (from 0 when it started during the window) to its last."""

    def __init__(self, stack: Stack, url: str) -> None:
        self.stack, self.url = stack, url

    def _read(self, conn: psycopg.Connection[tuple[int]]) -> dict[str, dict[int, float]]:
        pids = dict(self.stack.roles)
        pids["postgres"] = [int(r[0]) for r in conn.execute(POSTGRES_PIDS).fetchall()]
        found: dict[str, dict[int, float]] = {}
        for role, members in pids.items():
            found[role] = {}
            for pid in members:
                cpu = _pid_cpu(pid)
                if cpu is not None:
                    found[role][pid] = cpu
        return found

    @contextmanager
    def window(self, load_side: dict[str, float]) -> Iterator[CpuWindow]:
        """Measures the `with` block; `load_side` ({name: seconds}) is filled in by the block
        and counted as ours, not foreign; this process's own CPU is `bench`."""
        result = CpuWindow({}, 0.0)
        stop = threading.Event()
        with psycopg.connect(libpq_url(self.url), autocommit=True) as conn:
            first = self._read(conn)
            last = {role: dict(pids) for role, pids in first.items()}

            def sample() -> None:
                while not stop.wait(0.25):
                    for role, pids in self._read(conn).items():
                        last[role].update(pids)

            busy0, total0 = machine_cpu_seconds()
            t0, own0 = time.monotonic(), time.process_time()
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            try:
                yield result
            finally:
                stop.set()
                sampler.join()
            for role, pids in self._read(conn).items():
                last[role].update(pids)
        busy1, total1 = machine_cpu_seconds()
        result.wall_s = time.monotonic() - t0
        result.seconds["bench"] = time.process_time() - own0
        for role, pids in last.items():
            spent = sum(v - first[role].get(pid, 0.0) for pid, v in pids.items())
            result.seconds[role] = max(spent, 0.0)
        result.seconds.update(load_side)
        ours = sum(result.seconds.values())
        result.seconds["foreign"] = max((busy1 - busy0) - ours, 0.0)
        result.seconds["idle"] = max((total1 - total0) - (busy1 - busy0), 0.0)


# -- a minimal HTTP/1.1 client -------------------------------------------------------------
#
# httpx costs about half a millisecond of CPU per request: at the rates measured here the
# client would take a core. Requests are prebuilt bytes; responses are read, not parsed.


def http_request(method: str, path: str, key: str, body: bytes = b"") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class HttpConnection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """(status, body); status 0 when the connection failed (it reopens on next use)."""
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None
            self.writer.write(request)
            return await self._response(self.reader)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.close()
            return 0, b""

    async def _response(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        status = int((await reader.readline()).split(b" ", 2)[1])
        length, chunked, close = 0, False, False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        if chunked:
            parts = []
            while size := int((await reader.readline()).split(b";")[0], 16):
                parts.append(await reader.readexactly(size + 2))
            await reader.readline()
            body = b"".join(p[:-2] for p in parts)
        else:
            body = await reader.readexactly(length)
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# -- wrk through the gateway ---------------------------------------------------------------
#
# One script for every load: `get` (GetLead of a random seeded lead), `create` (CreateLead, a
# new email each call) and `mix` (GetLead 40%, ListLeads 15%, SearchLeads 15%, CreateLead
# 15%, UpdateLead 15%). `done` prints one JSON line.
WRK_SCRIPT = r"""
local ids, mode, token, n = {}, "get", "x", 0
local queries = {"head of growth", "engineer", "lovelace", "saas", "chief operating"}
function init(args)
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  mode, token = args[2], args[3]
  math.randomseed(tonumber(args[4]))
  wrk.headers["Content-Type"] = "application/json"
end
local function get() return wrk.format("GET", "/api/v1/crm/leads/" .. ids[math.random(#ids)]) end
local function create()
  n = n + 1
  return wrk.format("POST", "/api/v1/crm/leads", nil, string.format(
    '{"email":"w%s-%d@bench-%d.example.com","first_name":"Load","last_name":"T%d",' ..
    '"title":"Marketing Manager","company":"Bench Co %d","source":"bench","score":%d,' ..
    '"custom_fields":{"industry":"SaaS"}}', token, n, n % 97, n, n % 97, n % 100))
end
local function list() return wrk.format("GET", "/api/v1/crm/leads?limit=50") end
local function search()
  return wrk.format("POST", "/api/v1/crm/leads:search", nil,
    '{"query":"' .. queries[math.random(#queries)] .. '","limit":20}')
end
local function update()
  return wrk.format("PATCH", "/api/v1/crm/leads/" .. ids[math.random(#ids)] ..
    "?update_mask=score", nil, '{"score":' .. math.random(0, 100) .. '}')
end
function request()
  if mode == "get" then return get() elseif mode == "create" then return create() end
  local r = math.random(100)
  if r <= 40 then return get() elseif r <= 55 then return list()
  elseif r <= 70 then return search() elseif r <= 85 then return create() end
  return update()
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p95_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


@dataclass
class WrkRun:
    mode: str
    connections: int
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    wrk_cpu_s: float  # wrk's own CPU (its share of the machine is the load side's cost)

    @property
    def calls_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


def run_wrk(
    stack: Stack, key: str, ids_file: Path, mode: str, connections: int, seconds: float
) -> WrkRun:
    script = stack.data_dir / "load.lua"
    script.write_text(WRK_SCRIPT)
    token = uuid.uuid4().hex[:12]
    argv = [
        "wrk", "-t1", f"-c{connections}", f"-d{max(round(seconds), 1)}s", "--timeout", "10s",
        "-H", f"Authorization: Bearer {key}", "-s", str(script), stack.base_url,
        "--", str(ids_file), mode, token, str(int(time.time() * 1000) % 2**31),
    ]  # fmt: skip
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    data = json.loads([x for x in out.splitlines() if x.startswith("{")][-1])
    return WrkRun(
        mode=mode,
        connections=connections,
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        non_2xx=data["non_2xx"],
        socket_errors=data["socket_errors"],
        p50_ms=data["p50_us"] / 1000,
        p95_ms=data["p95_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        wrk_cpu_s=(cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
    )
