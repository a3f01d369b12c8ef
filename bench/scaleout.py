"""Scale-out on one machine (issue 16): `tnx-crm up --servers 2 --workers 2` against
`--servers 1 --workers 1`, in the same run, on the machine's PostgreSQL and Redis.

1. Unary calls/s through Envoy: REST GetLead and CreateLead at 16 and 64 connections (wrk).
2. Import rows/s end to end (a CSV POSTed through Envoy, until SUCCEEDED): one file of N
   rows, and two files of N/2 rows at once (one import runs in one worker: only the second
   can use two).
3. With 2 + 2 only: SIGKILL one server under a steady CreateLead load through Envoy (3
   times, --quick once); count the failed calls, time how long the gateway kept sending to
   it, check that every acknowledged (200) lead is in the database.

Rounds alternate the two stacks (1+1, 2+2, 2+2, 1+1, …); ratios are 2+2 / 1+1 of the
medians. CPU per role (servers, workers, Envoy, PostgreSQL, wrk) comes from /proc.

    .venv/bin/python -m bench.scaleout           # 2 rounds, 200,000-row imports (~10 min)
    .venv/bin/python -m bench.scaleout --quick   # 1 round, 50,000 rows (~4 min)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import os
import signal
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from bench.imports import generate
from bench.procs import BENCH_DIR, fresh_database, wait_for_quiet
from bench.seed import seed_leads
from bench.upstack import (
    CpuMeter,
    CpuWindow,
    HttpConnection,
    Stack,
    code_version,
    http_request,
    run_stack,
    run_wrk,
    use_machine_services,
)
from server.config import REPO_ROOT
from tests.support import db

OUT_DIR = REPO_ROOT / "bench" / "out"
WORK = BENCH_DIR / "scaleout"
SHAPES = ((1, 1), (2, 2))


@dataclass(frozen=True)
class Plan:
    rounds: int
    warmup_s: float
    duration_s: float
    import_rows: int
    kills: int
    concurrencies: tuple[int, ...] = (16, 64)


@dataclass
class Fixture:
    url: str
    key: str
    ids_file: Path
    files: dict[int, Path]


@dataclass
class Sample:
    shape: str  # "1+1" | "2+2"
    part: str  # get@16, create@64, import-1x200000, import-2x100000
    rate: float  # calls/s or rows/s
    errors: int
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # cores in use, per role
    round: int = 0


def say(text: str) -> None:
    print(text, flush=True)


def _cores(window: CpuWindow) -> dict[str, float]:
    """Cores in use per role; `load` is the load side: wrk, or this process's upload client."""
    cores = {role: round(window.share(role), 3) for role in window.seconds}
    cores["load"] = round(window.share("wrk") + window.share("bench"), 3)
    return cores


def measure_unary(stack: Stack, fx: Fixture, plan: Plan, meter: CpuMeter) -> list[Sample]:
    samples = []
    shape = f"{stack.servers}+{stack.workers}"
    for mode in ("get", "create"):
        for c in plan.concurrencies:
            run_wrk(stack, fx.key, fx.ids_file, mode, c, plan.warmup_s)
            load: dict[str, float] = {}
            with meter.window(load) as window:
                run = run_wrk(stack, fx.key, fx.ids_file, mode, c, plan.duration_s)
                load["wrk"] = run.wrk_cpu_s
            cores = _cores(window)
            part = f"{mode}@{c}"
            samples.append(
                Sample(shape, part, run.calls_per_s, run.errors, run.p50_ms, run.p99_ms, cores)
            )
            say(
                f"  {shape} {part}: {run.calls_per_s:,.0f} calls/s, p50 {run.p50_ms:.1f} ms,"
                f" p99 {run.p99_ms:.1f} ms, errors {run.errors}, cores {cores}"
            )
    return samples


def import_file(base_url: str, key: str, path: Path, rows: int) -> float:
    """POST the CSV through Envoy, poll until SUCCEEDED with every row created or updated;
    returns the time it finished."""
    headers = {"Authorization": f"Bearer {key}"}
    with (
        httpx.Client(base_url=base_url, headers=headers, timeout=600) as client,
        path.open("rb") as body,
    ):
        chunks = iter(lambda: body.read(1 << 20), b"")
        reply = client.post(
            "/api/v1/crm/imports", content=chunks, headers={"Content-Type": "text/csv"}
        )
        reply.raise_for_status()
        job = reply.json()
        while job["status"] not in ("SUCCEEDED", "FAILED", "CANCELLED"):
            time.sleep(0.1)
            job = client.get(f"/api/v1/crm/imports/{job['id']}").json()
    if job["status"] != "SUCCEEDED" or int(job["rows_created"]) + int(job["rows_updated"]) != rows:
        raise SystemExit(f"import did not succeed: {job}")
    return time.monotonic()


def measure_imports(stack: Stack, fx: Fixture, plan: Plan, meter: CpuMeter) -> list[Sample]:
    """One file of N rows; then two files of N/2 at once. Each into an empty workspace."""
    shape = f"{stack.servers}+{stack.workers}"
    samples = []
    for count in (1, 2):
        rows = plan.import_rows // count
        path = fx.files[rows]
        finished: list[float] = []
        failures: list[str] = []

        def one(
            key: str,
            path: Path = path,
            rows: int = rows,
            finished: list[float] = finished,
            failures: list[str] = failures,
        ) -> None:
            try:
                finished.append(import_file(stack.base_url, key, path, rows))
            except (SystemExit, Exception) as exc:  # a thread would swallow it silently
                failures.append(str(exc))

        keys = [db.create_workspace(fx.url, name=f"imp-{i}").key for i in range(count)]
        with meter.window({}) as window:
            started = time.monotonic()
            threads = [threading.Thread(target=one, args=(key,)) for key in keys]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if failures:
            raise SystemExit(f"an import failed: {failures}")
        rate = plan.import_rows / (max(finished) - started)
        part = f"import-{count}x{rows}"
        samples.append(Sample(shape, part, rate, 0, cpu=_cores(window)))
        say(f"  {shape} {part}: {rate:,.0f} rows/s, cores {_cores(window)}")
    return samples


# -- killing a server under load -------------------------------------------------------------


@dataclass
class KillResult:
    calls: int
    acknowledged: int
    failed: dict[str, int]  # status -> count (0: connection error)
    failures_after_kill_s: list[float]  # when each failed call ended, seconds after the kill
    out_of_rotation_s: float | None  # first admin sample showing the host not healthy
    last_request_to_it_s: float | None  # last increase of its rq_total before the restart
    restarted_s: float | None  # a new server listens on its port
    healthy_again_s: float | None  # Envoy sends to it again
    lost_acknowledged: int  # 200s whose lead is not in the database
    failed_but_stored: int  # failed calls whose lead was written all the same
    retries: int  # the gateway's upstream_rq_retry over the run
    ejections: int


def _host_stats(stack: Stack, socket_name: str) -> dict[str, str]:
    stats = {}
    for line in stack.admin("/clusters").splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == "crm_grpc" and parts[1].endswith(socket_name):
            stats[parts[2]] = parts[3]
    return stats


def _cluster_stat(stack: Stack, name: str) -> int:
    for line in stack.admin(f"/stats?filter=^cluster.crm_grpc.{name}$").splitlines():
        if ":" in line:
            return int(line.split(":")[1])
    return 0


class Watch(threading.Thread):
    """Samples the killed host's Envoy stats and its port every 50 ms."""

    def __init__(self, stack: Stack, index: int) -> None:
        super().__init__(daemon=True)
        self.stack, self.index = stack, index
        self.socket_name = f"grpc-{stack.grpc_port + index}.sock"
        self.samples: list[tuple[float, str, int]] = []  # (time, health_flags, rq_total)
        self.listening: list[tuple[float, int | None]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            try:
                stats = _host_stats(self.stack, self.socket_name)
                self.samples.append((now, stats["health_flags"], int(stats["rq_total"])))
            except (httpx.HTTPError, KeyError, OSError):
                pass
            try:
                self.listening.append((now, self.stack.server_pid(self.index)))
            except RuntimeError:
                self.listening.append((now, None))
            self.stop.wait(0.05)


async def _create_load(
    stack: Stack, key: str, seconds: float, kill: Callable[[], None], kill_after_s: float
) -> list[tuple[float, int, str]]:
    """16 connections, each keeping one CreateLead in flight; (end time, status, email)."""
    token = uuid.uuid4().hex[:10]
    records: list[tuple[float, int, str]] = []
    stop_at = time.monotonic() + seconds

    async def client(i: int) -> None:
        conn, n = HttpConnection(stack.http_port), 0
        while time.monotonic() < stop_at:
            n += 1
            email = f"kill-{token}-{i}-{n}@bench.example.com"
            body = json.dumps({"email": email, "first_name": "Kill", "source": "bench"})
            status, _ = await conn.send(
                http_request("POST", "/api/v1/crm/leads", key, body.encode())
            )
            records.append((time.monotonic(), status, email))
        conn.close()

    asyncio.get_running_loop().call_later(kill_after_s, kill)
    await asyncio.gather(*(client(i) for i in range(16)))
    return records


def kill_one_server(stack: Stack, fx: Fixture, index: int, seconds: float = 12.0) -> KillResult:
    """CreateLead at 16 in flight through Envoy for `seconds`; SIGKILL the index-th server a
    third of the way in."""
    deadline = time.monotonic() + 30
    while stack.healthy_servers() < stack.servers and time.monotonic() < deadline:
        time.sleep(0.2)  # the previous victim is back
    victim = stack.server_pid(index)
    workspace = db.create_workspace(fx.url, name=f"kill-{uuid.uuid4().hex[:6]}")
    ejected = "outlier_detection.ejections_enforced_total"
    retries0 = _cluster_stat(stack, "upstream_rq_retry")
    ejections0 = _cluster_stat(stack, ejected)
    watch = Watch(stack, index)
    watch.start()
    killed_at: list[float] = []

    def kill() -> None:
        os.kill(victim, signal.SIGKILL)
        killed_at.append(time.monotonic())

    records = asyncio.run(_create_load(stack, workspace.key, seconds, kill, seconds / 3))
    time.sleep(1)
    watch.stop.set()
    watch.join()
    t = killed_at[0]
    failed = [(end, status, email) for end, status, email in records if status != 200]
    acknowledged = [email for _, status, email in records if status == 200]
    rows = db.query(
        fx.url, "SELECT email FROM leads WHERE workspace_id = %s", workspace.workspace_id
    )
    stored = {row[0] for row in rows}
    restarted = next((s for s, pid in watch.listening if s > t and pid not in (None, victim)), None)
    out = next((s for s, flags, _ in watch.samples if s > t and flags != "healthy"), None)
    healthy = next(
        (s for s, flags, _ in watch.samples if out and s > out and flags == "healthy"), None
    )
    before_restart = [x for x in watch.samples if x[0] >= t and (not restarted or x[0] < restarted)]
    last_increase = None
    for previous, current in itertools.pairwise(before_restart):
        if current[2] > previous[2]:
            last_increase = current[0]
    statuses: dict[str, int] = {}
    for _, status, _ in failed:
        statuses[str(status)] = statuses.get(str(status), 0) + 1

    def since(moment: float | None) -> float | None:
        return round(moment - t, 3) if moment is not None else None

    return KillResult(
        calls=len(records),
        acknowledged=len(acknowledged),
        failed=statuses,
        failures_after_kill_s=[round(end - t, 3) for end, _, _ in failed],
        out_of_rotation_s=since(out),
        last_request_to_it_s=since(last_increase),
        restarted_s=since(restarted),
        healthy_again_s=since(healthy),
        lost_acknowledged=sum(1 for email in acknowledged if email not in stored),
        failed_but_stored=sum(1 for _, _, email in failed if email in stored),
        retries=_cluster_stat(stack, "upstream_rq_retry") - retries0,
        ejections=_cluster_stat(stack, ejected) - ejections0,
    )


# -- the run ---------------------------------------------------------------------------------


def prepare(url: str, plan: Plan) -> Fixture:
    WORK.mkdir(parents=True, exist_ok=True)
    workspace = db.create_workspace(url, name="api")
    seeded = seed_leads(url, workspace.workspace_id, 20_000, samples=20_000)
    ids_file = WORK / "lead-ids.txt"
    ids_file.write_text("\n".join(seeded.sample_ids) + "\n")
    files = {}
    for rows in (plan.import_rows, plan.import_rows // 2):
        files[rows] = WORK / f"leads-{rows}.csv"
        if not files[rows].exists():
            generate(files[rows], rows, seed=rows)
    return Fixture(url, workspace.key, ids_file, files)


def measure(plan: Plan) -> tuple[list[Sample], list[KillResult]]:
    samples: list[Sample] = []
    # 1+1, 2+2, then 2+2, 1+1: drift in the machine's speed falls on both sides alike.
    order = [s for r in range(plan.rounds) for s in (SHAPES if r % 2 == 0 else SHAPES[::-1])]
    kills: list[KillResult] = []
    with fresh_database() as url:
        fx = prepare(url, plan)
        for i, (servers, workers) in enumerate(order):
            load = wait_for_quiet()
            say(f"round {i // 2 + 1}: {servers}+{workers} (machine load before: {load:.0%})")
            with run_stack(url, servers, workers, "scaleout-stack") as stack:
                meter = CpuMeter(stack, url)
                time.sleep(2)  # the workers connect and the scheduler settles
                measured = measure_unary(stack, fx, plan, meter)
                measured += measure_imports(stack, fx, plan, meter)
                for sample in measured:
                    sample.round = i // 2
                samples += measured
                if servers == 2 and i == max(j for j, s in enumerate(order) if s == (2, 2)):
                    for k in range(plan.kills):  # server 2, server 1, server 2, …
                        say(f"  SIGKILL server {2 - k % 2} under CreateLead load, 16 in flight")
                        kills.append(kill_one_server(stack, fx, index=1 - k % 2))
                        say(f"  {kills[-1]}")
    return samples, kills


# Other jobs' CPU (cores of the 2) above which a round's pair is noisy: 10% of the machine.
NOISY_FOREIGN = 0.2


def _pairs(samples: list[Sample], part: str) -> list[tuple[Sample, Sample]]:
    """(1+1, 2+2) of each round: run one after the other, they saw much the same machine."""
    rounds: dict[int, dict[str, Sample]] = {}
    for s in samples:
        if s.part == part:
            rounds.setdefault(s.round, {})[s.shape] = s
    return [(r["1+1"], r["2+2"]) for _, r in sorted(rounds.items()) if len(r) == 2]


def _noisy(pair: tuple[Sample, Sample]) -> bool:
    return max(s.cpu.get("foreign", 0.0) for s in pair) > NOISY_FOREIGN


def report(samples: list[Sample], kills: list[KillResult]) -> list[str]:
    roles = ("server", "worker", "envoy", "postgres", "load", "foreign")
    lines = [
        f"{'part':<16} {'1+1':>7} {'2+2':>7} {'ratio':>5}  {'rounds':<12} cores in use 1+1 -> 2+2"
        f" ({' '.join(roles)})"
    ]
    for part in dict.fromkeys(s.part for s in samples):
        pairs = _pairs(samples, part)
        quiet = [p for p in pairs if not _noisy(p)] or pairs

        one = statistics.median(a.rate for a, _ in quiet)
        two = statistics.median(b.rate for _, b in quiet)
        ratio = statistics.median(b.rate / a.rate for a, b in quiet)
        rounds = " ".join(f"{b.rate / a.rate:.2f}{'*' if _noisy((a, b)) else ''}" for a, b in pairs)
        cores = [
            " ".join(f"{statistics.median(p[i].cpu.get(r, 0.0) for p in quiet):.2f}" for r in roles)
            for i in (0, 1)
        ]
        errors = sum(s.errors for s in samples if s.part == part)
        lines.append(
            f"{part:<16} {one:>7,.0f} {two:>7,.0f} {ratio:>5.2f}  {rounds:<12} "
            f"{cores[0]} -> {cores[1]}" + (f"  ERRORS {errors}" if errors else "")
        )
    lines += [
        "calls/s (unary, wrk through Envoy) or rows/s (imports, end to end); ratio = 2+2 / 1+1,",
        "the median of the rounds' paired ratios (each round's 1+1 and 2+2 run back to back);",
        "* = other jobs took over 10% of the machine during that round: left out of the medians",
        "when a quieter round exists. cores: CPU seconds per second per role (2.00 = the whole",
        "machine).",
    ]
    for n, kill in enumerate(kills, 1):
        last_failure = max(kill.failures_after_kill_s, default=None)
        lines += [
            "",
            f"kill {n}: one of 2 servers (SIGKILL) under CreateLead load: {kill.calls:,} calls, "
            f"{kill.acknowledged:,} acknowledged, failed {kill.failed or 0} (the last "
            f"{last_failure} s after the kill; {kill.failed_but_stored} of them written)",
            f"  out of rotation after {kill.out_of_rotation_s} s (target <= 2 s); the last"
            f" request Envoy sent to it after the kill: {kill.last_request_to_it_s} s (None: none)",
            f"  restarted (listening) after {kill.restarted_s} s, healthy in the gateway after "
            f"{kill.healthy_again_s} s; gateway retries {kill.retries}, ejections {kill.ejections}",
            f"  acknowledged writes missing from the database: {kill.lost_acknowledged} (target 0)",
        ]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaleout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="1 round, 50,000-row imports")
    parser.add_argument("--rounds", type=int, help="rounds of 1+1 and 2+2 (default 2, quick 1)")
    args = parser.parse_args(argv)
    plan = (
        Plan(rounds=1, warmup_s=1, duration_s=4, import_rows=50_000, kills=1)
        if args.quick
        else Plan(rounds=2, warmup_s=2, duration_s=8, import_rows=200_000, kills=3)
    )
    if args.rounds:
        plan = dataclasses.replace(plan, rounds=args.rounds)
    use_machine_services()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_before = os.getloadavg()
    samples, kills = measure(plan)
    lines = report(samples, kills)
    say(f"\nbench.scaleout {started}, load average {load_before} -> {os.getloadavg()}")
    say("\n".join(lines))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"scaleout-{time.strftime('%Y%m%d-%H%M%S')}.json"
    results = {
        "plan": asdict(plan),
        "started": started,
        "code": code_version(),
        "load_average": [load_before, os.getloadavg()],
        "samples": [asdict(s) for s in samples],
        "kills": [asdict(k) for k in kills],
    }
    out.write_text(json.dumps(results, indent=2))
    say(f"wrote {out}")


if __name__ == "__main__":
    main()
