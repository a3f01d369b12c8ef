"""Batch enrichment benchmark (`make bench-enrichment`): how fast a BatchEnrich run of N
leads goes through an HTTP_JSON connector whose provider answers in 50 ms, against what the
connector's rate limit allows and what a bare HTTP client reaches on the same provider with
as many lookups in flight as the runner keeps (runner.CONCURRENCY), both in the same run;
then how many provider calls a second run over the same leads makes (the cache's share).

1. baseline: one process sending the leads' lookups to the fake provider with httpcore (the
   library the product sends with), CONCURRENCY in flight, no database;
2. first run: an HTTP_JSON connector (rate_limit_per_minute R, created in process with the
   service) and `service.batch_enrich` over every lead (filter `email:*`), sent to the
   `tnx-crm worker` processes through the broker as the API sends it; its rate is the run's
   leads over finished_at - created_at (queueing included). The connector's token bucket is
   emptied just before (the state of a connector in steady use: a new one holds a minute's
   worth, R calls, which would let a run of fewer than R leads go unthrottled);
   `--full-bucket` keeps what the bucket holds;
3. second run: the same BatchEnrich again; its provider calls (the run's count, and the
   fake provider's) over N should be near zero: every answer is in the cache.

A run is one Celery task, carried by one worker process at a time (the runner does not
split a run across workers): of the two workers started, one carries the run, the other
idles. The fake provider (bench/fake_provider.py) runs in a process of its own on
127.0.0.2 and answers every lookup after a fixed delay, whatever the number in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import httpcore
from sqlalchemy import text

from bench import report
from bench.leads import say
from bench.procs import (
    BENCH_DIR,
    CpuSample,
    CpuUse,
    Pids,
    Workers,
    cpu_sample,
    fresh_database,
    worker_processes,
)
from bench.procs import postmaster_pid as find_postmaster
from bench.scoring import OUT_DIR
from bench.seed import seed_leads
from server.config import REPO_ROOT, load_settings
from server.db.engine import Database
from server.enrichment import service, tasks
from server.enrichment.model import ConnectorInput, ConnectorKind, HttpJson, Run, RunState
from server.enrichment.runner import CONCURRENCY
from server.outbound import AllowList
from server.worker import broker_url, make_app
from tests.support import db, stack

HOST = "127.0.0.2"
ALLOW = f"{HOST}/32"
TARGET_SHARE = 0.80  # of min(rate limit, bare client)
TARGET_CACHE = 0.05  # provider calls of the second run over its leads
FIELD_MAP = {
    "$.data.first_name": "first_name",
    "$.data.last_name": "last_name",
    "$.data.job_title": "title",
    "$.data.job_company_size": "custom.company_size",
}
FILTER = "email:*"


@dataclass(frozen=True)
class Plan:
    leads: int
    rate_per_minute: int
    delay_ms: float
    workers: int
    full_bucket: bool


@dataclass
class RunFigures:
    run_id: str = ""
    seconds: float = 0.0
    leads_per_s: float = 0.0
    total: int = 0
    processed: int = 0
    changed: int = 0
    provider_calls: int = 0  # as the run counted them
    cache_hits: int = 0
    error_count: int = 0
    errors: list[str] = field(default_factory=list)  # the first few
    provider_counted: int = 0  # as the fake provider counted them
    calls_per_s: float = 0.0  # the provider's arrivals, first to last
    peak_calls_1s: int = 0  # the most arrivals within any second
    worker_cpu_s: float = 0.0  # the worker that carried the run
    other_worker_cpu_s: float = 0.0
    postgres_cpu_s: float = 0.0
    foreign_share: float = 0.0  # of the machine, used by other jobs meanwhile


@dataclass
class Result:
    limit_per_s: float = 0.0
    bare_per_s: float = 0.0
    bare_concurrency: int = CONCURRENCY
    first: RunFigures = field(default_factory=RunFigures)
    second: RunFigures = field(default_factory=RunFigures)


# -- the fake provider ----------------------------------------------------------------------


@dataclass(frozen=True)
class Provider:
    port: int
    out: Path

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def calls(self) -> int:
        """Lookups answered so far (`GET /calls`, not counted itself)."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            conn.request("GET", "/calls")
            return int(json.loads(conn.getresponse().read())["calls"])
        finally:
            conn.close()

    def arrivals(self) -> list[float]:
        """After the process ended: the arrival time of every lookup."""
        return [float(line) for line in self.out.read_text().splitlines()[1:]]


@contextmanager
def fake_provider(name: str, delay_ms: float) -> Iterator[Provider]:
    port = stack.free_port()
    out = BENCH_DIR / f"provider-{name}.txt"
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_provider", HOST, str(port), str(out), str(delay_ms)],
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    assert process.stdout is not None
    try:
        process.stdout.readline()  # "ready"
        yield Provider(port, out)
    finally:
        process.terminate()
        process.wait(timeout=30)


# -- 1. the bare client ---------------------------------------------------------------------


async def bare_lookups(base: str, emails: list[str], concurrency: int) -> float:
    """Seconds for one GET per email, `concurrency` in flight, over pools of eight
    connections each (as the product's outbound client pools them)."""
    slots = asyncio.Semaphore(concurrency)
    pools = [httpcore.AsyncConnectionPool(max_connections=8) for _ in range(-(-concurrency // 8))]
    headers = [(b"accept", b"application/json"), (b"x-api-key", b"bench")]

    async def lookup(i: int, email: str) -> None:
        url = f"{base}/v5/person/enrich?email={urllib.parse.quote(email, safe='')}"
        async with slots:
            response = await pools[i % len(pools)].request("GET", url, headers=headers)
            json.loads(response.content)

    started = time.perf_counter()
    await asyncio.gather(*(lookup(i, email) for i, email in enumerate(emails)))
    seconds = time.perf_counter() - started
    for pool in pools:
        await pool.aclose()
    return seconds


# -- the workers and the runs ---------------------------------------------------------------


def create_connector(url: str, workspace_id: str, provider: Provider, plan: Plan) -> str:
    data = ConnectorInput(
        name="bench provider",
        kind=ConnectorKind.HTTP_JSON,
        http_json=HttpJson(
            url_template=f"{provider.base}/v5/person/enrich?email={{email}}",
            headers={"X-Api-Key": "bench"},
        ),
        field_map=FIELD_MAP,
        rate_limit_per_minute=plan.rate_per_minute,
    )
    connector = db.run_with_db(
        url,
        lambda d: service.create_connector(
            d, AllowList.parse(ALLOW), workspace_id=workspace_id, data=data
        ),
    )
    return connector.id


EMPTY_BUCKET = text("UPDATE connectors SET tokens = 0, tokens_at = now() WHERE id = :id")


async def run_to_the_end(
    d: Database,
    enqueue: service.Enqueue,
    workspace_id: str,
    connector_id: str,
    *,
    empty: bool,
    check: Callable[[], None],
) -> Run:
    if empty:  # a connector in steady use: no calls saved up
        async with d.transaction() as conn:
            await conn.execute(EMPTY_BUCKET, {"id": connector_id})
    run = await service.batch_enrich(
        d,
        enqueue,
        workspace_id=workspace_id,
        filter_text=FILTER,
        segment_id="",
        connector_ids=[connector_id],
    )
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        check()
        run = await service.get_run(d, workspace_id=workspace_id, run_id=run.id)
        if run.state in (RunState.SUCCEEDED, RunState.FAILED):
            return run
    raise SystemExit(f"run {run.id} not done in time: {run.processed}/{run.total}")


def cpu_samples(worker_pids: list[int], postgres: int | None) -> list[CpuSample]:
    return [
        cpu_sample(Pids(server=pid, postgres=postgres, bench=os.getpid())) for pid in worker_pids
    ]


def one_run(
    url: str,
    workspace_id: str,
    connector_id: str,
    provider: Provider,
    started: Workers,
    *,
    empty_bucket: bool,
) -> RunFigures:
    settings = load_settings()
    app = make_app(broker_url(settings, url))
    postgres = find_postmaster(url)
    try:
        calls_before = provider.calls()
        before = cpu_samples(started.pids, postgres)
        enqueue = partial(tasks.enqueue, app)
        run = db.run_with_db(
            url,
            lambda d: run_to_the_end(
                d, enqueue, workspace_id, connector_id, empty=empty_bucket, check=started.check
            ),
        )
        after = cpu_samples(started.pids, postgres)
        calls_after = provider.calls()
    finally:
        app.close()
    if run.state != RunState.SUCCEEDED:
        raise SystemExit(f"run {run.id} ended {run.state}: {run.errors[:3]}")
    assert run.finished_at is not None
    uses = sorted(
        (CpuUse.between(b, a) for b, a in zip(before, after, strict=True)),
        key=lambda u: u.server,
        reverse=True,
    )
    seconds = (run.finished_at - run.created_at).total_seconds()
    return RunFigures(
        run_id=run.id,
        seconds=seconds,
        leads_per_s=run.processed / seconds if seconds else 0.0,
        total=run.total,
        processed=run.processed,
        changed=run.changed,
        provider_calls=run.provider_calls,
        cache_hits=run.cache_hits,
        error_count=run.error_count,
        errors=[f"{e.lead_id} {e.reason}: {e.message}" for e in run.errors[:5]],
        provider_counted=calls_after - calls_before,
        worker_cpu_s=uses[0].server,
        other_worker_cpu_s=sum(u.server for u in uses[1:]),
        postgres_cpu_s=uses[0].postgres,
        foreign_share=uses[0].foreign_share,
    )


def arrival_rates(figures: RunFigures, times: list[float]) -> None:
    """The provider's view of a run: its mean and its busiest second."""
    if len(times) < 2:
        return
    figures.calls_per_s = (len(times) - 1) / (times[-1] - times[0])
    start = 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        figures.peak_calls_1s = max(figures.peak_calls_1s, end - start + 1)


def describe(name: str, f: RunFigures) -> str:
    return (
        f"{name}: {f.processed:,}/{f.total:,} leads in {f.seconds:.1f} s = "
        f"{f.leads_per_s:,.0f} leads/s; {f.changed:,} changed, {f.provider_calls:,} provider "
        f"calls ({f.provider_counted:,} by the provider's count), "
        f"{f.cache_hits:,} cache hits, {f.error_count} errors; CPU: worker "
        f"{f.worker_cpu_s:.1f} s ({f.worker_cpu_s / f.seconds if f.seconds else 0:.0%} of a "
        f"core), other worker {f.other_worker_cpu_s:.1f} s, PostgreSQL {f.postgres_cpu_s:.1f} s "
        f"({f.postgres_cpu_s / f.seconds if f.seconds else 0:.0%}); other jobs "
        f"{f.foreign_share:.0%} of the machine"
    )


def checks(plan: Plan, result: Result) -> list[report.Check]:
    baseline = min(result.limit_per_s, result.bare_per_s)
    share = result.first.leads_per_s / baseline if baseline else 0.0
    cached = result.second.provider_calls / plan.leads if plan.leads else 0.0
    counted = result.second.provider_counted / plan.leads if plan.leads else 0.0
    return [
        report.Check(
            f"first run, {plan.leads:,} leads",
            f"{result.first.leads_per_s:,.0f} leads/s",
            f">= {TARGET_SHARE * baseline:,.0f}/s",
            share >= TARGET_SHARE,
            f"{share:.0%} of min(limit {result.limit_per_s:,.0f}/s, "
            f"bare client {result.bare_per_s:,.0f}/s at {result.bare_concurrency} in flight)",
        ),
        report.Check(
            "second run, provider calls",
            f"{max(cached, counted):.1%}",
            f"<= {TARGET_CACHE:.0%}",
            max(cached, counted) <= TARGET_CACHE,
            f"{result.second.provider_calls:,} by the run, {result.second.provider_counted:,} "
            f"by the provider, of {plan.leads:,}; {result.second.leads_per_s:,.0f} leads/s",
        ),
    ]


def parse_args(argv: list[str]) -> Plan:
    parser = argparse.ArgumentParser(prog="make bench-enrichment", description=__doc__)
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument(
        "--rate-per-minute", type=int, default=12_000, help="the connector's rate limit"
    )
    parser.add_argument("--delay-ms", type=float, default=50.0, help="the provider's answer time")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--full-bucket", action="store_true", help="keep a new connector's burst")
    parser.add_argument("--quick", action="store_true", help="2,000 leads")
    args = parser.parse_args(argv)
    leads = 2_000 if args.quick else args.leads
    return Plan(leads, args.rate_per_minute, args.delay_ms, args.workers, args.full_bucket)


def main(argv: list[str] | None = None) -> int:
    plan = parse_args(sys.argv[1:] if argv is None else argv)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    result = Result(limit_per_s=plan.rate_per_minute / 60)
    say(f"plan: {plan}; {os.cpu_count()} CPUs; runner concurrency {CONCURRENCY}")
    with fresh_database() as url:
        workspace_id = db.create_workspace(url, "bench-enrichment").workspace_id
        seeded = seed_leads(url, workspace_id, plan.leads, samples=plan.leads)
        say(f"seeded {seeded.count:,} leads in {seeded.seconds:.1f} s")
        emails = [row[0] for row in db.query(url, "SELECT email FROM leads ORDER BY id")]
        with fake_provider("baseline", plan.delay_ms) as provider:
            seconds = asyncio.run(bare_lookups(provider.base, emails, CONCURRENCY))
        result.bare_per_s = len(emails) / seconds
        say(
            f"1. bare client: {result.bare_per_s:,.0f} lookups/s at {CONCURRENCY} in flight "
            f"(the limit allows {result.limit_per_s:,.0f}/s)"
        )
        with fake_provider("runs", plan.delay_ms) as provider:
            connector_id = create_connector(url, workspace_id, provider, plan)
            with worker_processes(
                url, plan.workers, "enrichment", CRM_OUTBOUND_ALLOW=ALLOW
            ) as started:
                result.first = one_run(
                    url,
                    workspace_id,
                    connector_id,
                    provider,
                    started,
                    empty_bucket=not plan.full_bucket,
                )
                say(describe("2. first run", result.first))
                result.second = one_run(
                    url, workspace_id, connector_id, provider, started, empty_bucket=False
                )
                say(describe("3. second run", result.second))
        times = provider.arrivals()
        split = len(times) - result.second.provider_counted
        arrival_rates(result.first, times[:split])
        arrival_rates(result.second, times[split:])
        say(
            f"   the provider saw {result.first.calls_per_s:,.0f} calls/s in the first run "
            f"(first to last call; the busiest second {result.first.peak_calls_1s})"
        )
    found = checks(plan, result)
    print("\n".join(["", "== targets ==", *report.checks_table(found)]), flush=True)
    for name, figures in (("first", result.first), ("second", result.second)):
        for line in figures.errors:
            say(f"{name} run error: {line}")
    path = OUT_DIR / f"enrichment-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"plan": asdict(plan), "result": asdict(result)}, indent=1))
    say(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
