"""Webhook delivery benchmark (`make bench-triggers`): how many webhooks a second two worker
processes deliver to a local receiver, and how long after an event's commit its delivery
starts, against the rate a bare HTTP client reaches on the same receiver in the same run.

1. baseline: one process posting webhook-sized bodies to the receiver with httpcore (the
   library the product sends with), 64 in flight, no database, no signing;
2. throughput: N lead.created events committed at once into the outbox; two `tnx-crm worker`
   processes fan them out and deliver them (signed, each recorded in the delivery log);
   the rate is N over the time from the commit to the last arrival;
3. latency under load: events committed steadily at the target rate (500 a second, in
   transactions of 10) while the workers deliver; per event, arrival minus commit.

Events are written straight into the outbox, as the product's writers do, because no API
call of the product writes 500 events a second one at a time; fan-out, matching, the lead
snapshot and delivery are the product's own code in the worker processes.
The receiver (bench/receiver.py) runs in a process of its own on 127.0.0.2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpcore
import psycopg

from bench import report
from bench.leads import say
from bench.procs import BENCH_DIR, fresh_database, worker_processes
from bench.scoring import OUT_DIR
from bench.seed import seed_leads
from server.config import REPO_ROOT
from server.db.url import libpq_url
from server.events.catalogue import event_id
from server.outbound import AllowList
from server.triggers import service
from server.triggers.model import Action, ActionKind, TriggerInput
from tests.support import db, stack

HOST = "127.0.0.2"
ALLOW = f"{HOST}/32"
TARGET_RATE = 500.0  # webhooks a second
TARGET_P50 = 1.0  # seconds from commit to delivery start


@dataclass(frozen=True)
class Plan:
    events: int
    rate: float
    seconds: float
    workers: int


@dataclass
class Result:
    baseline_per_s: float = 0.0
    throughput_per_s: float = 0.0
    fan_out_s: float = 0.0
    delivered: int = 0
    duplicates: int = 0
    load_events: int = 0
    load_rate: float = 0.0
    p50_s: float = 0.0
    p95_s: float = 0.0
    max_s: float = 0.0


@contextmanager
def receiver(name: str) -> Iterator[tuple[str, Path]]:
    """The receiver process; yields its URL and the file its arrivals land in on exit."""
    port = stack.free_port()
    out = BENCH_DIR / f"receiver-{name}.tsv"
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.receiver", HOST, str(port), str(out)],
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    assert process.stdout is not None
    process.stdout.readline()  # "ready"
    try:
        yield f"http://{HOST}:{port}/hook", out
    finally:
        process.terminate()
        process.wait(timeout=30)


def arrivals(out: Path) -> list[tuple[str, float]]:
    found = []
    for line in out.read_text().splitlines():
        webhook_id, _, at = line.partition("\t")
        found.append((webhook_id, float(at)))
    return found


async def bare_posts(url: str, count: int, concurrency: int = 64) -> float:
    """Seconds for `count` POSTs of a webhook-sized body, `concurrency` in flight, over
    pools of eight connections (one big httpcore pool is several times slower)."""
    body = json.dumps({"type": "lead.created", "data": {"x": "y" * 1200}}).encode()
    slots = asyncio.Semaphore(concurrency)
    pools = [httpcore.AsyncConnectionPool(max_connections=8) for _ in range(concurrency // 8)]

    async def post(i: int) -> None:
        async with slots:
            headers = [(b"content-type", b"application/json"), (b"webhook-id", b"b%d" % i)]
            await pools[i % len(pools)].request("POST", url, headers=headers, content=body)

    started = time.perf_counter()
    await asyncio.gather(*(post(i) for i in range(count)))
    seconds = time.perf_counter() - started
    for pool in pools:
        await pool.aclose()
    return seconds


def create_trigger(url: str, workspace_id: str, target: str) -> str:
    data = TriggerInput(
        name="bench",
        event_types=("lead.created",),
        action=Action(ActionKind.WEBHOOK, {"url": target}),
    )
    trigger = db.run_with_db(
        url,
        lambda d: service.create_trigger(
            d, AllowList.parse(ALLOW), workspace_id=workspace_id, data=data
        ),
    )
    return trigger.id


INSERT_EVENTS = (
    "INSERT INTO events (workspace_id, type, subject_id, payload) "
    "SELECT %s, 'lead.created', id, jsonb_build_object('email', email) FROM leads "
    "WHERE workspace_id = %s AND id = ANY(%s) RETURNING id"
)


def count_succeeded(url: str, trigger_id: str) -> tuple[int, int]:
    rows = db.query(
        url,
        "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded') FROM deliveries "
        "WHERE trigger_id = %s",
        trigger_id,
    )
    return int(rows[0][0]), int(rows[0][1])


def wait_delivered(url: str, trigger_id: str, total: int, started: float) -> float:
    """Seconds from `started` until every delivery exists (fan-out done); waits for all to
    succeed."""
    fanned_at = 0.0
    deadline = time.time() + 600
    while time.time() < deadline:
        made, succeeded = count_succeeded(url, trigger_id)
        if made >= total and not fanned_at:
            fanned_at = time.time() - started
        if succeeded >= total:
            return fanned_at
        time.sleep(0.05)
    raise SystemExit(f"not every delivery succeeded in time: {count_succeeded(url, trigger_id)}")


def throughput(url: str, plan: Plan, lead_ids: list[str], result: Result) -> None:
    workspace_id = db.query(url, "SELECT workspace_id FROM leads WHERE id = %s", lead_ids[0])[0][0]
    with receiver("throughput") as (target, out):
        trigger_id = create_trigger(url, workspace_id, target)
        with worker_processes(url, plan.workers, "triggers", CRM_OUTBOUND_ALLOW=ALLOW):
            with psycopg.connect(libpq_url(url)) as conn:
                conn.execute(INSERT_EVENTS, (workspace_id, workspace_id, lead_ids[: plan.events]))
                conn.commit()
            committed = time.time()
            result.fan_out_s = wait_delivered(url, trigger_id, plan.events, committed)
    got = arrivals(out)
    result.delivered = len({i for i, _ in got})
    result.duplicates = len(got) - result.delivered
    result.throughput_per_s = plan.events / (max(t for _, t in got) - committed)


def under_load(url: str, plan: Plan, lead_ids: list[str], result: Result) -> None:
    workspace_id = db.query(url, "SELECT workspace_id FROM leads WHERE id = %s", lead_ids[0])[0][0]
    commits: dict[str, float] = {}
    with receiver("latency") as (target, out):
        trigger_id = create_trigger(url, workspace_id, target)
        with (
            worker_processes(url, plan.workers, "triggers", CRM_OUTBOUND_ALLOW=ALLOW),
            psycopg.connect(libpq_url(url)) as conn,
        ):
            step, per_tx = 0, 10
            started = time.time()
            while time.time() - started < plan.seconds:
                due = started + step * per_tx / plan.rate
                if (pause := due - time.time()) > 0:
                    time.sleep(pause)
                chosen = [lead_ids[(step * per_tx + i) % len(lead_ids)] for i in range(per_tx)]
                rows = conn.execute(INSERT_EVENTS, (workspace_id, workspace_id, chosen)).fetchall()
                conn.commit()
                at = time.time()
                commits.update((event_id(row[0]), at) for row in rows)
                step += 1
            result.load_rate = len(commits) / (time.time() - started)
            wait_delivered(url, trigger_id, len(commits), started)
    first: dict[str, float] = {}
    for webhook_id, at in arrivals(out):
        first.setdefault(webhook_id, at)
    delays = sorted(first[i] - commits[i] for i in commits)
    result.load_events = len(commits)
    result.p50_s = statistics.median(delays)
    result.p95_s = delays[int(len(delays) * 0.95) - 1]
    result.max_s = delays[-1]


def checks(result: Result) -> list[report.Check]:
    ratio = result.throughput_per_s / result.baseline_per_s if result.baseline_per_s else 0
    return [
        report.Check(
            "delivery throughput, 2 workers",
            f"{result.throughput_per_s:,.0f}/s",
            f">= {TARGET_RATE:.0f}/s",
            result.throughput_per_s >= TARGET_RATE,
            f"{ratio:.0%} of a bare client's {result.baseline_per_s:,.0f}/s",
        ),
        report.Check(
            "commit -> delivery start, p50",
            f"{result.p50_s * 1000:,.0f} ms",
            f"<= {TARGET_P50 * 1000:.0f} ms",
            result.p50_s <= TARGET_P50,
            f"p95 {result.p95_s * 1000:,.0f} ms, at {result.load_rate:,.0f} events/s",
        ),
    ]


def parse_args(argv: list[str]) -> Plan:
    parser = argparse.ArgumentParser(prog="make bench-triggers", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="the throughput backlog")
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="events/s under load")
    parser.add_argument("--seconds", type=float, default=20, help="how long the load runs")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    return Plan(args.events, args.rate, args.seconds, args.workers)


def main(argv: list[str] | None = None) -> int:
    plan = parse_args(sys.argv[1:] if argv is None else argv)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    result = Result()
    say(f"plan: {plan}; {os.cpu_count()} CPUs")
    with fresh_database() as url:
        workspace_id = db.create_workspace(url, "bench-triggers").workspace_id
        seeded = seed_leads(url, workspace_id, plan.events, samples=plan.events)
        lead_ids = seeded.sample_ids
        with receiver("baseline") as (target, _):
            seconds = asyncio.run(bare_posts(target, plan.events))
        result.baseline_per_s = plan.events / seconds
        say(f"1. bare client: {result.baseline_per_s:,.0f} posts/s")
        throughput(url, plan, lead_ids, result)
        say(
            f"2. throughput: {result.throughput_per_s:,.0f} webhooks/s "
            f"(fan-out of {plan.events:,} done after {result.fan_out_s:.1f} s; "
            f"{result.duplicates} duplicates)"
        )
        under_load(url, plan, lead_ids, result)
        say(
            f"3. under load ({result.load_rate:,.0f} events/s): p50 {result.p50_s * 1000:.0f} ms, "
            f"p95 {result.p95_s * 1000:.0f} ms, max {result.max_s * 1000:.0f} ms"
        )
    found = checks(result)
    print("\n".join(["", "== targets ==", *report.checks_table(found)]), flush=True)
    path = OUT_DIR / f"triggers-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"plan": asdict(plan), "result": asdict(result)}, indent=1))
    say(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
