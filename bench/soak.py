"""Load and soak through the gateway (issue 16), against `tnx-crm up` (1 server and 2
workers, its defaults) on the machine's PostgreSQL and Redis.

1. The maximum rate of a REST mix (GetLead 40%, ListLeads 15%, SearchLeads 15%, CreateLead
   15%, UpdateLead 15%): wrk, closed loop, 32 connections.
2. 60 s of the same mix at 80% of that rate, paced (open loop: each call is sent at its
   scheduled time whatever the earlier ones are doing, and its latency counts from that
   time): errors (target 0), p50/p95/p99, server and worker RSS at the start and the end.
3. The soak: one import always running (a 50,000-row CSV, two versions in turn, into one
   workspace) and 16 REST clients (wrk, the same mix) for 10 minutes (--quick: 2): errors
   and the RSS growth of the server and the workers (target < 10%).

    .venv/bin/python -m bench.soak           # ~15 min
    .venv/bin/python -m bench.soak --quick   # ~5 min
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.imports import generate
from bench.load import percentile
from bench.procs import BENCH_DIR, fresh_database, wait_for_quiet
from bench.scaleout import import_file
from bench.seed import seed_leads
from bench.upstack import (
    CpuMeter,
    HttpConnection,
    Stack,
    WrkRun,
    code_version,
    http_request,
    rss_mb,
    run_stack,
    run_wrk,
    use_machine_services,
)
from server.config import REPO_ROOT
from tests.support import db

OUT_DIR = REPO_ROOT / "bench" / "out"
WORK = BENCH_DIR / "soak"
MIX = (("get", 40), ("list", 15), ("search", 15), ("create", 15), ("update", 15))
QUERIES = ("head of growth", "engineer", "lovelace", "saas", "chief operating")


def say(text: str) -> None:
    print(text, flush=True)


@dataclass(frozen=True)
class Plan:
    seed_leads: int
    max_s: float
    paced_s: float
    soak_s: float
    import_rows: int
    servers: int
    workers: int


# -- the paced (open-loop) mix ----------------------------------------------------------------


class Mix:
    """Prebuilt HTTP requests of the mix, in a seeded random order."""

    def __init__(self, key: str, ids: list[str], seed: int = 16) -> None:
        self.key, self.ids, self.rng = key, ids, random.Random(seed)
        self.token, self.n = uuid.uuid4().hex[:10], 0
        self.kinds = [kind for kind, weight in MIX for _ in range(weight)]

    def next(self) -> tuple[str, bytes]:
        kind = self.rng.choice(self.kinds)
        lead = self.rng.choice(self.ids)
        if kind == "get":
            return kind, http_request("GET", f"/api/v1/crm/leads/{lead}", self.key)
        if kind == "list":
            return kind, http_request("GET", "/api/v1/crm/leads?limit=50", self.key)
        if kind == "search":
            body = {"query": self.rng.choice(QUERIES), "limit": 20}
            return kind, self._json("POST", "/api/v1/crm/leads:search", body)
        if kind == "create":
            self.n += 1
            email = f"p{self.token}-{self.n}@bench-{self.n % 97}.example.com"
            body = {"email": email, "first_name": "Paced", "title": "Marketing Manager"}
            return kind, self._json("POST", "/api/v1/crm/leads", body)
        path = f"/api/v1/crm/leads/{lead}?update_mask=score"
        return kind, self._json("PATCH", path, {"score": self.rng.randrange(101)})

    def _json(self, method: str, path: str, body: object) -> bytes:
        return http_request(method, path, self.key, json.dumps(body).encode())


@dataclass
class Paced:
    rate: float
    seconds: float
    sent: int = 0
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    connections: int = 0  # opened: how many calls were in flight at once, at most
    client_cpu_s: float = 0.0
    # Second of the run (by schedule) -> calls that failed / took over a second then.
    failed_at: dict[int, int] = field(default_factory=dict)
    slow_at: dict[int, int] = field(default_factory=dict)

    def all_latencies(self) -> list[float]:
        return [v for values in self.latencies_ms.values() for v in values]

    def summary(self) -> dict[str, object]:
        every = self.all_latencies()
        return {
            "rate": self.rate,
            "seconds": self.seconds,
            "sent": self.sent,
            "ok": len(every),
            "errors": self.errors,
            "connections": self.connections,
            "failed_at_second": self.failed_at,
            "over_1s_at_second": self.slow_at,
            "client_cores": self.client_cpu_s / self.seconds,
            **{f"p{q}_ms": percentile(every, q) for q in (50, 95, 99)},
            "by_kind_p50_p99_ms": {
                k: [percentile(v, 50), percentile(v, 99)] for k, v in self.latencies_ms.items()
            },
        }


async def paced(port: int, mix: Mix, rate: float, seconds: float) -> Paced:
    """Sends `rate` calls a second for `seconds`, each at its scheduled time on an idle
    connection (a new one when none is idle); latency counts from the scheduled time, so a
    stall shows up in every call that should have gone out meanwhile."""
    result = Paced(rate, seconds)
    idle: list[HttpConnection] = []
    running: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()

    async def call(kind: str, request: bytes, scheduled: float) -> None:
        if idle:
            conn = idle.pop()
        else:
            conn = HttpConnection(port)
            result.connections += 1
        status, _ = await conn.send(request)
        elapsed, second = loop.time() - scheduled, int(scheduled - start)
        if status == 200:
            result.latencies_ms.setdefault(kind, []).append(elapsed * 1000)
            if elapsed > 1:
                result.slow_at[second] = result.slow_at.get(second, 0) + 1
        else:
            name = f"{kind} {status}"
            result.errors[name] = result.errors.get(name, 0) + 1
            result.failed_at[second] = result.failed_at.get(second, 0) + 1
        idle.append(conn)

    cpu0 = time.process_time()
    start = loop.time() + 0.1
    for i in range(int(rate * seconds)):
        scheduled = start + i / rate
        if (delay := scheduled - loop.time()) > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(call(*mix.next(), scheduled))
        running.add(task)
        task.add_done_callback(running.discard)
        result.sent += 1
    await asyncio.gather(*running)
    result.client_cpu_s = time.process_time() - cpu0
    for conn in idle:
        conn.close()
    return result


# -- memory over time ---------------------------------------------------------------------------


class RssLog(threading.Thread):
    """Every `every` seconds: (seconds since start, {role: [RSS MiB of each process]})."""

    def __init__(self, stack: Stack, every: float) -> None:
        super().__init__(daemon=True)
        self.stack, self.every = stack, every
        self.samples: list[tuple[float, dict[str, list[float]]]] = []
        self.stop = threading.Event()
        self.started = time.monotonic()

    def sample(self) -> None:
        roles = self.stack.roles
        at = time.monotonic() - self.started
        self.samples.append((at, {r: [rss_mb(p) for p in roles[r]] for r in ("server", "worker")}))

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.sample()

    def growth(self, warmup_s: float) -> dict[str, dict[str, float]]:
        """Per role (the sum over its processes): RSS before any load, the median over the
        first window after the warm-up, the median over the last window (each a fifth of the
        rest, at least one sample), the peak; growth = last / first - 1."""
        later = [(t, s) for t, s in self.samples if t >= warmup_s]
        width = max(len(later) // 5, 1)
        result = {}
        for role in ("server", "worker"):
            totals = [sum(s[role]) for _, s in later]
            first = statistics.median(totals[:width])
            last = statistics.median(totals[-width:])
            result[role] = {
                "before_mb": round(sum(self.samples[0][1][role]), 1),
                "first_mb": round(first, 1),
                "last_mb": round(last, 1),
                "peak_mb": round(max(totals), 1),
                "growth": round(last / first - 1, 4),
            }
        return result


class ImportLoop(threading.Thread):
    """One import running at all times: the two files in turn into one workspace (the
    second version updates every row the first created, and so on)."""

    def __init__(self, stack: Stack, key: str, files: list[Path], rows: int) -> None:
        super().__init__(daemon=True)
        self.stack, self.key, self.files, self.rows = stack, key, files, rows
        self.stop = threading.Event()
        self.done = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                import_file(self.stack.base_url, self.key, self.files[self.done % 2], self.rows)
                self.done += 1
            except (SystemExit, Exception) as exc:  # counted and reported, not fatal
                self.failures.append(repr(exc))
                time.sleep(1)


# -- the run ----------------------------------------------------------------------------------


def _restarts(stack: Stack, before: dict[str, list[int]]) -> dict[str, int]:
    """Processes of each role that are not the ones the phase started with."""
    after = stack.refresh_roles()
    return {r: len(set(before[r]) ^ set(after[r])) // 2 for r in ("server", "worker", "envoy")}


def max_and_paced(
    stack: Stack, url: str, key: str, ids: list[str], ids_file: Path, plan: Plan
) -> dict[str, object]:
    run_wrk(stack, key, ids_file, "mix", 32, 3)  # warm-up
    top = run_wrk(stack, key, ids_file, "mix", 32, plan.max_s)
    wrk_cores = top.wrk_cpu_s / top.seconds
    say(
        f"max: {top.calls_per_s:,.0f} calls/s at 32 connections, p50 {top.p50_ms:.1f} ms, "
        f"p99 {top.p99_ms:.1f} ms, errors {top.errors}, wrk {wrk_cores:.2f} cores"
    )
    rate = 0.8 * top.calls_per_s
    roles = {r: list(p) for r, p in stack.refresh_roles().items()}
    rss_start = {r: [rss_mb(p) for p in roles[r]] for r in ("server", "worker")}
    counters = stack.gateway_counters()
    load: dict[str, float] = {}
    with CpuMeter(stack, url).window(load) as window:
        run = asyncio.run(paced(stack.http_port, Mix(key, ids), rate, plan.paced_s))
    rss_end = {r: [rss_mb(p) for p in roles[r]] for r in ("server", "worker")}
    gateway = {k: v - counters.get(k, 0) for k, v in stack.gateway_counters().items()}
    summary = run.summary()
    cores = {r: round(window.share(r), 3) for r in window.seconds}
    say(f"paced at {rate:,.0f}/s for {plan.paced_s:.0f} s: {summary}")
    say(f"  RSS MiB start {rss_start} end {rss_end}; restarts {_restarts(stack, roles)}")
    say(f"  gateway counters {gateway}; cores {cores}")
    return {
        "max": {**asdict(top), "calls_per_s": top.calls_per_s},
        "paced": summary,
        "paced_cores": cores,
        "gateway_counters": gateway,
        "rss_start_mb": rss_start,
        "rss_end_mb": rss_end,
        "restarts": _restarts(stack, roles),
    }


def soak(
    stack: Stack, url: str, key: str, ids_file: Path, files: list[Path], plan: Plan
) -> dict[str, object]:
    imports_key = db.create_workspace(url, name="soak-imports").key
    roles = {r: list(p) for r, p in stack.refresh_roles().items()}
    rss = RssLog(stack, every=5.0 if plan.soak_s >= 300 else 2.0)
    rss.sample()
    rss.start()
    counters = stack.gateway_counters()
    loop = ImportLoop(stack, imports_key, files, plan.import_rows)
    loop.start()
    load: dict[str, float] = {}
    with CpuMeter(stack, url).window(load) as window:
        clients: WrkRun = run_wrk(stack, key, ids_file, "mix", 16, plan.soak_s)
        load["wrk"] = clients.wrk_cpu_s
    loop.stop.set()
    loop.join()
    rss.stop.set()
    rss.join()
    rss.sample()
    growth = rss.growth(warmup_s=min(60.0, plan.soak_s / 5))
    gateway = {k: v - counters.get(k, 0) for k, v in stack.gateway_counters().items()}
    result = {
        "gateway_counters": gateway,
        "clients": {**asdict(clients), "calls_per_s": clients.calls_per_s},
        "imports_done": loop.done,
        "import_rows_per_s": loop.done * plan.import_rows / plan.soak_s,
        "import_failures": loop.failures,
        "rss": growth,
        "rss_samples": rss.samples,
        "cores": {r: round(window.share(r), 3) for r in window.seconds},
        "restarts": _restarts(stack, roles),
    }
    say(
        f"soak {plan.soak_s:.0f} s: {clients.calls_per_s:,.0f} calls/s, errors {clients.errors},"
        f" p99 {clients.p99_ms:.1f} ms; {loop.done} imports, failures {loop.failures};"
        f" RSS {growth}; cores {result['cores']}; restarts {result['restarts']};"
        f" gateway counters {gateway}"
    )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a 2-minute soak instead of 10")
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    plan = Plan(
        seed_leads=50_000,
        max_s=6 if args.quick else 15,
        paced_s=60,
        soak_s=120 if args.quick else 600,
        import_rows=50_000,
        servers=args.servers,
        workers=args.workers,
    )
    use_machine_services()
    WORK.mkdir(parents=True, exist_ok=True)
    files = [WORK / f"soak-{plan.import_rows}-{v}.csv" for v in ("a", "b")]
    for path, variant in zip(files, ("", "+"), strict=True):
        if not path.exists():
            generate(path, plan.import_rows, seed=7, variant=variant)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    results: dict[str, object] = {"plan": asdict(plan), "started": started}
    results["code"] = code_version()
    results["load_average_before"] = os.getloadavg()
    with fresh_database() as url:
        workspace = db.create_workspace(url, name="soak")
        seeded = seed_leads(url, workspace.workspace_id, plan.seed_leads, samples=20_000)
        ids_file = WORK / "lead-ids.txt"
        ids_file.write_text("\n".join(seeded.sample_ids) + "\n")
        say(f"machine load before: {wait_for_quiet():.0%}")
        with run_stack(url, plan.servers, plan.workers, "soak-stack") as stack:
            time.sleep(2)
            results["load"] = max_and_paced(
                stack, url, workspace.key, seeded.sample_ids, ids_file, plan
            )
            results["soak"] = soak(stack, url, workspace.key, ids_file, files, plan)
            failed_checks = stack.failed_health_checks()
            results["failed_health_checks"] = failed_checks
    results["load_average_after"] = os.getloadavg()
    for line in failed_checks:
        say(f"failed health check: {line}")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    say(f"wrote {out}")


if __name__ == "__main__":
    main()
