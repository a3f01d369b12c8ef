"""The segments benchmark of issue 4: `python -m bench.segments [--quick]`.

Everything runs on this machine in one go, against real processes: a fresh migrated
database (the embedded PostgreSQL under build/bench/, or CRM_BENCH_DATABASE_URL), a
`tnx-crm serve` process and the Envoy gateway in front of it. Two workspaces of the same
size (1,000,000 leads each, 2,000 companies, COPY-seeded straight into the tables); the
first gets 20 realistic rule segments (the ICP example, score bands, custom-field and
company conditions), built the way a client builds them: CreateSegment, then GetSegment
until every one is READY. The second has none. Then:

1. UpdateLead latency: single-lead score changes over gRPC, one call in flight, in
   alternating rounds between the workspace with the 20 segments (kept current in the
   writing transaction) and the one without. Target: p50 with segments <= 2x without.
2. A 10,000-lead batch: one UPDATE of 10,000 random leads' scores and
   `server.segments.membership.refresh` for those leads in the same transaction, timed.
   Target: the refresh (re-evaluating all 20 segments) <= 1 s.
3. Export of the 500,000-member segment ("score >= 50") as CSV through Envoy
   (GET /api/v1/crm/lists/{id}:export?format=CSV, streamed), against a plain
   `COPY (SELECT the same columns FROM leads JOIN segment_members ...) TO STDOUT` of the same
   rows through psycopg, alternating. Target: export rows/s >= 50% of COPY's. The server
   process's RSS is sampled (psutil) during every export; its growth over the RSS before
   the first export shows whether memory stays flat while streaming.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psutil
import psycopg
import requests
from google.protobuf import field_mask_pb2, json_format
from tnx.crm.v1 import (
    lead_pb2,
    lead_service_pb2,
    lead_service_pb2_grpc,
    segment_pb2,
    segment_service_pb2,
    segment_service_pb2_grpc,
)

from bench.procs import BENCH_DIR, fresh_database, machine_cpu_seconds
from bench.seed import COMPANIES, FIRST, INDUSTRIES, LAST, SOURCES, STATUSES, TITLES, lead_id
from server import ids
from server.config import REPO_ROOT
from server.db.engine import Database, make_engine
from server.db.url import libpq_url
from server.segments import export, membership
from tests.support import db, stack

OUT_DIR = REPO_ROOT / "bench" / "out"
WORK_DIR = BENCH_DIR / "segments"  # Envoy's config and log; other benchmarks use BENCH_DIR
Json = Any

UPDATE_TARGET = 2.0
BATCH_TARGET_S = 1.0
EXPORT_TARGET = 0.50
# "Flat": the server grows by less than this while streaming a file many times larger.
RSS_GROWTH_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class Plan:
    leads: int
    companies: int
    update_rounds: int
    updates_per_round: int
    batch: int
    batch_rounds: int
    export_rounds: int
    log_level: str
    keep_db: bool
    strict: bool


def parse_args(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(
        prog="python -m bench.segments",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="100,000 leads per workspace, fewer rounds: a smoke run of a few minutes",
    )
    parser.add_argument("--leads", type=int, help="leads in each of the two workspaces")
    parser.add_argument("--update-rounds", type=int, help="alternating rounds of UpdateLead")
    parser.add_argument("--updates", type=int, help="UpdateLead calls per workspace per round")
    parser.add_argument("--batch", type=int, default=10_000, help="leads in the batch update")
    parser.add_argument("--batch-rounds", type=int)
    parser.add_argument("--export-rounds", type=int)
    parser.add_argument("--log-level", default="WARNING", help="the server's CRM_LOG_LEVEL")
    parser.add_argument("--keep-db", action="store_true", help="keep the database afterwards")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    quick = args.quick
    leads = args.leads or (100_000 if quick else 1_000_000)
    return Plan(
        leads=leads,
        companies=max(leads // 500, 10),
        update_rounds=args.update_rounds or (3 if quick else 6),
        updates_per_round=args.updates or 50,
        batch=args.batch,
        batch_rounds=args.batch_rounds or (2 if quick else 3),
        export_rounds=args.export_rounds or (2 if quick else 3),
        log_level=args.log_level,
        keep_db=args.keep_db,
        strict=args.strict,
    )


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- seeding ------------------------------------------------------------------------------

LEAD_COLUMNS = [
    "id",
    "workspace_id",
    "email",
    "first_name",
    "last_name",
    "title",
    "phone",
    "company",
    "company_id",
    "company_path",
    "source",
    "score",
    "status",
    "custom_fields",
    "last_activity_at",
    "created_at",
    "updated_at",
]
COMPANY_COLUMNS = [
    "id",
    "workspace_id",
    "name",
    "domain",
    "industry",
    "employee_count",
    "annual_revenue",
    "annual_revenue_currency",
    "country",
    "city",
    "path",
    "created_at",
    "updated_at",
]
COUNTRIES = ["US", "US", "US", "GB", "DE", "FR", "AT", "CH", "CA", "NL"]
PLANS = ["free", "free", "starter", "pro", "pro", "enterprise"]
FREE_MAIL = ["gmail.com", "yahoo.com", "outlook.com"]
NULL = r"\N"


@dataclass(frozen=True)
class SeedCompany:
    id: str
    name: str
    domain: str
    path: str


@dataclass(frozen=True)
class Seeded:
    workspace_id: str
    key: str
    seconds: float
    pool: list[str]  # every 200th lead id, for UpdateLead


def _copy_text(value: object) -> str:
    """A value as COPY text: NULL as \\N, tabs and newlines escaped."""
    if value is None:
        return NULL
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _company_rows(
    workspace_id: str, count: int, rng: random.Random, stamp: str
) -> tuple[list[SeedCompany], list[str]]:
    companies: list[SeedCompany] = []
    lines: list[str] = []
    for i in range(count):
        company_id = ids.new_id("cmp")
        name = f"{rng.choice(COMPANIES)} {i}"
        domain = f"{name.lower().replace(' ', '-')}.example.com"
        employees = None if i % 10 == 0 else int(rng.lognormvariate(4.5, 1.6))
        revenue = None if i % 7 == 0 else rng.randrange(100_000, 2_000_000_000)
        row = (
            company_id,
            workspace_id,
            name,
            domain,
            rng.choice(INDUSTRIES),
            employees,
            revenue,
            "USD" if revenue is not None else "",
            rng.choice(COUNTRIES),
            "",
            f"{company_id}/",
            stamp,
            stamp,
        )
        lines.append("\t".join(_copy_text(v) for v in row) + "\n")
        companies.append(SeedCompany(company_id, name, domain, f"{company_id}/"))
    return companies, lines


def _lead_rows(
    workspace_id: str, count: int, companies: list[SeedCompany], rng: random.Random
) -> Iterator[str]:
    titles = [t for t, weight in TITLES for _ in range(weight)]
    now = datetime.now(UTC)
    base_ms = int(now.timestamp() * 1000) - count - 60_000
    for i in range(count):
        millis = base_ms + i
        stamp = datetime.fromtimestamp(millis / 1000, UTC).isoformat()
        first, last = rng.choice(FIRST), rng.choice(LAST)
        company = rng.choice(companies) if rng.random() < 0.7 else None
        domain = company.domain if company else rng.choice(FREE_MAIL)
        custom = {
            "industry": rng.choice(INDUSTRIES),
            "seats": rng.randrange(1, 5000),
            "country": rng.choice(COUNTRIES),
            "plan": rng.choice(PLANS),
            "newsletter": rng.random() < 0.3,
            "signup": (now - timedelta(days=rng.randrange(0, 720))).date().isoformat(),
        }
        activity = (now - timedelta(hours=rng.randrange(1, 24 * 120))).isoformat()
        row = (
            lead_id(millis, rng.getrandbits(80)),
            workspace_id,
            f"{first.lower()}.{last.lower()}.{i}@{domain}",
            first,
            last,
            rng.choice(titles),
            f"+1555{i:07d}",
            company.name if company else "",
            company.id if company else None,
            company.path if company else None,
            rng.choice(SOURCES),
            # Exactly half the leads score 50 or more: the 500,000-member export segment.
            (i * 37) % 100,
            rng.choice(STATUSES),
            json.dumps(custom),
            activity if i % 4 else None,
            stamp,
            stamp,
        )
        yield "\t".join(_copy_text(v) for v in row) + "\n"


def seed_workspace(url: str, name: str, plan: Plan, seed: int) -> Seeded:
    """A workspace with `plan.companies` companies and `plan.leads` leads, 70% linked."""
    started = time.perf_counter()
    created = db.create_workspace(url, name)
    workspace_id = created.workspace_id
    rng = random.Random(seed)
    stamp = datetime.now(UTC).isoformat()
    companies, company_lines = _company_rows(workspace_id, plan.companies, rng, stamp)
    pool: list[str] = []
    with psycopg.connect(libpq_url(url)) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY companies ({', '.join(COMPANY_COLUMNS)}) FROM STDIN") as copy:
            copy.write("".join(company_lines))
        chunk: list[str] = []
        with cur.copy(f"COPY leads ({', '.join(LEAD_COLUMNS)}) FROM STDIN") as copy:
            for i, line in enumerate(_lead_rows(workspace_id, plan.leads, companies, rng)):
                if i % 200 == 0:
                    pool.append(line.split("\t", 1)[0])
                chunk.append(line)
                if len(chunk) == 20_000:
                    copy.write("".join(chunk))
                    chunk.clear()
            if chunk:
                copy.write("".join(chunk))
        conn.commit()
    return Seeded(workspace_id, created.key, time.perf_counter() - started, pool)


def vacuum(url: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) leads, companies, segment_members, segments, events")


# -- the 20 rule segments ------------------------------------------------------------------


def cond(field_name: str, op: str, value: Json = None) -> dict[str, Json]:
    condition: dict[str, Json] = {"field": field_name, "op": op}
    if value is not None:
        condition["value"] = value
    return {"condition": condition}


def group(combinator: str, *rules: dict[str, Json]) -> dict[str, Json]:
    return {"combinator": combinator, "rules": list(rules)}


def nested(combinator: str, *rules: dict[str, Json]) -> dict[str, Json]:
    return {"group": group(combinator, *rules)}


EXPORT_SEGMENT = "Engaged (score >= 50)"
SEGMENTS: list[tuple[str, dict[str, Json]]] = [
    (
        "ICP - VP Growth, US, 50-500 FTE",
        group(
            "AND",
            nested("OR", cond("title", "contains", "growth"), cond("title", "starts_with", "VP")),
            cond("custom.country", "eq", "US"),
            cond("company.employee_count", "between", [50, 500]),
        ),
    ),
    (EXPORT_SEGMENT, group("AND", cond("score", "gte", 50))),
    ("Hot (score >= 80)", group("AND", cond("score", "gte", 80))),
    ("Warm (score 40-79)", group("AND", cond("score", "between", [40, 79]))),
    ("SaaS companies", group("AND", cond("company.industry", "eq", "SaaS"))),
    ("Enterprise (1000+ FTE)", group("AND", cond("company.employee_count", "gte", 1000))),
    ("Revenue over 100M", group("AND", cond("company.annual_revenue", "gt", 100_000_000))),
    (
        "Decision makers",
        group(
            "OR",
            cond("title", "starts_with", "head of"),
            cond("title", "starts_with", "vp"),
            cond("title", "contains", "chief"),
            cond("title", "eq", "founder"),
        ),
    ),
    (
        "Engineers, not customers",
        group("AND", cond("title", "contains", "engineer"), cond("status", "neq", "customer")),
    ),
    (
        "Pipeline",
        group(
            "AND",
            cond("status", "in", ["contacted", "qualified"]),
            cond("score", "gte", 40),
        ),
    ),
    ("Active in 30 days", group("AND", cond("last_activity_at", "within_last", 30))),
    ("Never active", group("AND", cond("last_activity_at", "not_exists"))),
    ("From forms", group("AND", cond("source", "eq", "form"))),
    (
        "Imported, no company",
        group("AND", cond("source", "eq", "import"), cond("company_id", "not_exists")),
    ),
    ("Personal email", group("AND", cond("email_domain", "in", FREE_MAIL))),
    ("DACH", group("AND", cond("custom.country", "in", ["DE", "AT", "CH"]))),
    ("1000+ seats", group("AND", cond("custom.seats", "gte", 1000))),
    ("Newsletter", group("AND", cond("custom.newsletter", "eq", True))),
    (
        "Pro plan in Europe",
        group(
            "AND",
            cond("custom.plan", "in", ["pro", "enterprise"]),
            cond("company.country", "in", ["DE", "FR", "GB", "NL"]),
        ),
    ),
    (
        "Signed up in 90 days, fintech or SaaS",
        group(
            "AND",
            cond("custom.signup", "within_last", 90),
            nested(
                "OR",
                cond("custom.industry", "eq", "fintech"),
                cond("company.industry", "eq", "saas"),
            ),
        ),
    ),
]


def metadata(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def create_segments(channel: grpc.Channel, key: str) -> dict[str, str]:
    """Creates the 20 rule segments; returns name -> id. They build in the background."""
    stub = segment_service_pb2_grpc.SegmentServiceStub(channel)
    made: dict[str, str] = {}
    for name, rules in SEGMENTS:
        message = segment_pb2.Segment(name=name, membership=segment_pb2.Segment.RULE)
        json_format.ParseDict(rules, message.rules)
        reply = stub.CreateSegment(
            segment_service_pb2.CreateSegmentRequest(segment=message), metadata=metadata(key)
        )
        made[name] = reply.id
    return made


def wait_until_ready(channel: grpc.Channel, key: str, segment_ids: list[str]) -> dict[str, int]:
    """Polls GetSegment until every segment is READY; returns id -> member_count."""
    stub = segment_service_pb2_grpc.SegmentServiceStub(channel)
    pending = set(segment_ids)
    counts: dict[str, int] = {}
    last_report = time.monotonic()
    while pending:
        for segment_id in sorted(pending):
            reply = stub.GetSegment(
                segment_service_pb2.GetSegmentRequest(id=segment_id), metadata=metadata(key)
            )
            if reply.state == segment_pb2.Segment.READY:
                counts[segment_id] = reply.member_count
                pending.discard(segment_id)
        if pending:
            if time.monotonic() - last_report > 30:
                say(f"  {len(segment_ids) - len(pending)} of {len(segment_ids)} segments READY")
                last_report = time.monotonic()
            time.sleep(1.0)
    return counts


# -- processes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    address: str
    port: int
    pid: int


@contextmanager
def serve(database_url: str, log_path: Path, log_level: str) -> Iterator[Server]:
    """`tnx-crm serve` as its own process, started as tests/support/stack.py does."""
    port = stack.free_port()
    env = {
        **os.environ,
        "CRM_DATABASE_URL": database_url,
        "CRM_GRPC_PORT": str(port),
        "CRM_LOG_LEVEL": log_level,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve"],
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


def machine_load(seconds: float = 1.0) -> float:
    busy0, total0 = machine_cpu_seconds()
    time.sleep(seconds)
    busy1, total1 = machine_cpu_seconds()
    return (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0


# -- 1. UpdateLead latency ------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Latencies:
    with_segments: list[float] = field(default_factory=list)
    without: list[float] = field(default_factory=list)
    round_ratios: list[float] = field(default_factory=list)


def timed_updates(
    stub: lead_service_pb2_grpc.LeadServiceStub,
    key: str,
    pool: list[str],
    count: int,
    rng: random.Random,
) -> list[float]:
    """`count` single-lead score changes, one call in flight; milliseconds each."""
    out: list[float] = []
    mask = field_mask_pb2.FieldMask(paths=["score"])
    for _ in range(count):
        lead = lead_pb2.Lead(id=rng.choice(pool), score=rng.randrange(0, 101))
        request = lead_service_pb2.UpdateLeadRequest(lead=lead, update_mask=mask)
        started = time.perf_counter()
        stub.UpdateLead(request, metadata=metadata(key))
        out.append((time.perf_counter() - started) * 1000)
    return out


def measure_updates(
    channel: grpc.Channel, plan: Plan, with_segments: Seeded, without: Seeded
) -> Latencies:
    stub = lead_service_pb2_grpc.LeadServiceStub(channel)
    rng = random.Random(4)
    for ws in (with_segments, without):  # warm-up: connections, caches, compiled rules
        timed_updates(stub, ws.key, ws.pool, 20, rng)
    result = Latencies()
    for r in range(plan.update_rounds):
        # Alternate which goes first, so a drift in the machine's load hits both alike.
        order = [(with_segments, True), (without, False)]
        if r % 2:
            order.reverse()
        p50: dict[bool, float] = {}
        for ws, has_segments in order:
            times = timed_updates(stub, ws.key, ws.pool, plan.updates_per_round, rng)
            (result.with_segments if has_segments else result.without).extend(times)
            p50[has_segments] = statistics.median(times)
        result.round_ratios.append(p50[True] / p50[False])
        say(
            f"  round {r + 1}/{plan.update_rounds}: UpdateLead p50 {p50[True]:.2f} ms with "
            f"20 segments, {p50[False]:.2f} ms without ({p50[True] / p50[False]:.2f}x)"
        )
    return result


# -- 2. the 10,000-lead batch ---------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    leads: int
    update_s: float
    refresh_s: float
    commit_s: float
    changes: int


async def _batch_rounds(url: str, workspace_id: str, plan: Plan) -> list[Batch]:
    database = Database(make_engine(url, pool_size=1))
    rounds: list[Batch] = []
    try:
        async with database.engine.connect() as warm:  # connect and prime the rule cache
            segments = await membership.rule_segments(warm, workspace_id=workspace_id)
            for segment in segments:
                membership.predicate_sql(segment)
        for _ in range(plan.batch_rounds):
            async with database.engine.connect() as conn:  # random leads, untimed
                result = await conn.exec_driver_sql(
                    "SELECT id FROM leads WHERE workspace_id = %(ws)s "
                    "ORDER BY random() LIMIT %(n)s",
                    {"ws": workspace_id, "n": plan.batch},
                )
                lead_ids = [row[0] for row in result]
            started = time.perf_counter()
            async with database.engine.connect() as conn:
                transaction = await conn.begin()
                await conn.exec_driver_sql(
                    "UPDATE leads SET score = (random() * 100)::int, updated_at = now() "
                    "WHERE workspace_id = %(ws)s AND id = ANY(%(ids)s)",
                    {"ws": workspace_id, "ids": lead_ids},
                )
                updated = time.perf_counter()
                changes = await membership.refresh(
                    conn, workspace_id=workspace_id, lead_ids=lead_ids, cause="bench.batch"
                )
                refreshed = time.perf_counter()
                await transaction.commit()
                committed = time.perf_counter()
            rounds.append(
                Batch(
                    leads=len(lead_ids),
                    update_s=updated - started,
                    refresh_s=refreshed - updated,
                    commit_s=committed - refreshed,
                    changes=len(changes),
                )
            )
            say(
                f"  batch of {len(lead_ids):,}: UPDATE {updated - started:.3f} s, refresh of "
                f"{len(segments)} segments {refreshed - updated:.3f} s "
                f"({len(changes):,} entries/exits), commit {committed - refreshed:.3f} s"
            )
    finally:
        await database.close()
    return rounds


def measure_batch(url: str, seeded: Seeded, plan: Plan) -> list[Batch]:
    return asyncio.run(_batch_rounds(url, seeded.workspace_id, plan))


# -- 3. export --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transfer:
    kind: str  # export | copy
    seconds: float
    bytes: int
    lines: int
    rss_before: int = 0
    rss_peak: int = 0


class RssSampler:
    """Samples a process's RSS every few milliseconds in a thread; keeps the peak."""

    def __init__(self, pid: int, interval_s: float = 0.01) -> None:
        self.process = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def export_through_envoy(base_url: str, key: str, segment_id: str, server_pid: int) -> Transfer:
    url = f"{base_url}/api/v1/crm/lists/{segment_id}:export"
    total = lines = 0
    with RssSampler(server_pid) as sampler:
        before = sampler.rss()
        started = time.perf_counter()
        with requests.get(
            url,
            params={"format": "CSV"},
            headers={"Authorization": f"Bearer {key}"},
            stream=True,
            timeout=600,
        ) as response:
            response.raise_for_status()
            for chunk in response.iter_content(chunk_size=1 << 20):
                total += len(chunk)
                lines += chunk.count(b"\n")
        seconds = time.perf_counter() - started
    return Transfer("export", seconds, total, lines, rss_before=before, rss_peak=sampler.peak)


def baseline_copy_sql(workspace_id: str, segment_id: str) -> str:
    """The same rows and columns as the CSV export, as plain columns (no neutralisation)."""
    columns = ", ".join(f"l.{name}" for name in export.DEFAULT_CSV_FIELDS)
    return (
        f"COPY (SELECT {columns} FROM segment_members m JOIN leads l ON l.id = m.lead_id "
        f"WHERE m.segment_id = '{segment_id}' AND l.workspace_id = '{workspace_id}' "
        f"ORDER BY m.lead_id) TO STDOUT WITH (FORMAT csv, HEADER true)"
    )


def plain_copy(url: str, workspace_id: str, segment_id: str) -> Transfer:
    total = lines = 0
    with psycopg.connect(libpq_url(url)) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        with cur.copy(baseline_copy_sql(workspace_id, segment_id)) as copy:
            for data in copy:
                total += len(data)
                lines += bytes(data).count(b"\n")
        seconds = time.perf_counter() - started
    return Transfer("copy", seconds, total, lines)


def measure_export(
    url: str, base_url: str, seeded: Seeded, segment_id: str, server: Server, plan: Plan
) -> tuple[list[Transfer], int]:
    rss_idle = psutil.Process(server.pid).memory_info().rss
    transfers: list[Transfer] = []
    for r in range(plan.export_rounds):
        pair: list[Callable[[], Transfer]] = [
            lambda: plain_copy(url, seeded.workspace_id, segment_id),
            lambda: export_through_envoy(base_url, seeded.key, segment_id, server.pid),
        ]
        if r % 2:
            pair.reverse()
        for run in pair:
            t = run()
            transfers.append(t)
            extra = (
                f", server RSS {t.rss_before / 2**20:.0f} -> peak {t.rss_peak / 2**20:.0f} MiB"
                if t.kind == "export"
                else ""
            )
            say(
                f"  round {r + 1}/{plan.export_rounds} {t.kind:<6} {t.lines - 1:,} rows, "
                f"{t.bytes / 2**20:.1f} MiB in {t.seconds:.2f} s "
                f"({(t.lines - 1) / t.seconds:,.0f} rows/s){extra}"
            )
    if len({t.lines for t in transfers}) != 1:
        raise SystemExit(f"export and COPY disagree on the rows: {[t.lines for t in transfers]}")
    return transfers, int(rss_idle)


# -- report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    measured: str
    target: str
    ok: bool
    note: str = ""


def checks_table(checks: list[Check]) -> list[str]:
    head = f"{'check':<44} {'measured':>12} {'target':>9}  result"
    lines = [head, "-" * (len(head) + 2)]
    for c in checks:
        note = f"   {c.note}" if c.note else ""
        lines.append(
            f"{c.name:<44} {c.measured:>12} {c.target:>9}  {'PASS' if c.ok else 'MISS'}{note}"
        )
    return lines


def median_of(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def build_checks(
    latencies: Latencies, batches: list[Batch], transfers: list[Transfer], rss_idle: int
) -> tuple[list[Check], list[str]]:
    with_p50 = percentile(latencies.with_segments, 0.50)
    without_p50 = percentile(latencies.without, 0.50)
    with_p95 = percentile(latencies.with_segments, 0.95)
    without_p95 = percentile(latencies.without, 0.95)
    ratio = with_p50 / without_p50 if without_p50 else 0.0
    p95_ratio = with_p95 / without_p95 if without_p95 else 0.0
    refresh = median_of([b.refresh_s for b in batches])
    whole = median_of([b.update_s + b.refresh_s + b.commit_s for b in batches])
    exports = [t for t in transfers if t.kind == "export"]
    copies = [t for t in transfers if t.kind == "copy"]
    export_rate = median_of([(t.lines - 1) / t.seconds for t in exports])
    copy_rate = median_of([(t.lines - 1) / t.seconds for t in copies])
    export_ratio = export_rate / copy_rate if copy_rate else 0.0
    rss_before = min((t.rss_before for t in exports), default=rss_idle)
    rss_peak = max((t.rss_peak for t in exports), default=0)
    growth = rss_peak - rss_idle
    size = max((t.bytes for t in exports), default=0)
    rows = exports[0].lines - 1 if exports else 0
    round_ratios = latencies.round_ratios
    checks = [
        Check(
            "UpdateLead p50, 20 segments / none",
            f"{ratio:.2f}x",
            f"<= {UPDATE_TARGET:.0f}x",
            ratio <= UPDATE_TARGET,
            f"{with_p50:.2f} vs {without_p50:.2f} ms; per round "
            f"{min(round_ratios, default=0):.2f}-{max(round_ratios, default=0):.2f}x",
        ),
        Check(
            "UpdateLead p95, 20 segments / none",
            f"{p95_ratio:.2f}x",
            "(info)",
            True,
            f"{with_p95:.2f} vs {without_p95:.2f} ms",
        ),
        Check(
            f"batch of {batches[0].leads if batches else 0:,}: refresh of 20 segments",
            f"{refresh:.3f} s",
            f"<= {BATCH_TARGET_S:.0f} s",
            refresh <= BATCH_TARGET_S,
            f"whole transaction (UPDATE + refresh + commit) {whole:.3f} s",
        ),
        Check(
            f"CSV export via Envoy / plain COPY ({rows:,} rows)",
            f"{export_ratio:.0%}",
            f">= {EXPORT_TARGET:.0%}",
            export_ratio >= EXPORT_TARGET,
            f"{export_rate:,.0f} vs {copy_rate:,.0f} rows/s",
        ),
        Check(
            "server RSS growth while exporting",
            f"+{growth / 2**20:.1f} MiB",
            f"<= {RSS_GROWTH_LIMIT // 2**20} MiB",
            growth <= RSS_GROWTH_LIMIT,
            f"idle {rss_idle / 2**20:.0f} MiB, before {rss_before / 2**20:.0f}, "
            f"peak {rss_peak / 2**20:.0f} MiB; file {size / 2**20:.0f} MiB",
        ),
    ]
    figures = [
        f"{'figure':<44} {'value':>14}",
        "-" * 60,
        f"{'UpdateLead p50 with 20 segments (ms)':<44} {with_p50:>14.2f}",
        f"{'UpdateLead p50 without segments (ms)':<44} {without_p50:>14.2f}",
        f"{'UpdateLead p95 with 20 segments (ms)':<44} {with_p95:>14.2f}",
        f"{'UpdateLead p95 without segments (ms)':<44} {without_p95:>14.2f}",
        f"{'UpdateLead calls per workspace':<44} {len(latencies.with_segments):>14,}",
        f"{'batch UPDATE (s, median)':<44} {median_of([b.update_s for b in batches]):>14.3f}",
        f"{'batch refresh, 20 segments (s, median)':<44} {refresh:>14.3f}",
        f"{'batch commit (s, median)':<44} {median_of([b.commit_s for b in batches]):>14.3f}",
        f"{'export through Envoy (rows/s, median)':<44} {export_rate:>14,.0f}",
        f"{'plain COPY (rows/s, median)':<44} {copy_rate:>14,.0f}",
        f"{'export MiB/s (median)':<44} "
        f"{median_of([t.bytes / t.seconds / 2**20 for t in exports]):>14.1f}",
        f"{'COPY MiB/s (median)':<44} "
        f"{median_of([t.bytes / t.seconds / 2**20 for t in copies]):>14.1f}",
        f"{'server RSS idle / peak during export (MiB)':<44} "
        f"{f'{rss_idle / 2**20:.0f} / {rss_peak / 2**20:.0f}':>14}",
    ]
    return checks, figures


# -- main -------------------------------------------------------------------------------------


def timed(label: str, action: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = action()
    say(f"{label} in {time.perf_counter() - started:.1f} s")
    return result


def main(argv: list[str] | None = None) -> int:
    plan = parse_args(argv)
    started = time.monotonic()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    database = "CRM_BENCH_DATABASE_URL" if os.environ.get("CRM_BENCH_DATABASE_URL") else "embedded"
    say(
        f"plan: 2 workspaces x {plan.leads:,} leads, {plan.companies:,} companies each, "
        f"{len(SEGMENTS)} rule segments; {os.cpu_count()} CPUs; database: {database}"
    )
    load = machine_load()
    if load > 0.2:
        say(f"warning: the machine was {load:.0%} busy before the run; figures will suffer")
    with fresh_database(keep=plan.keep_db) as url:
        with_segments = seed_workspace(url, "bench-segments", plan, seed=1)
        say(f"seeded {plan.leads:,} leads (with segments) in {with_segments.seconds:.1f} s")
        without = seed_workspace(url, "bench-no-segments", plan, seed=2)
        say(f"seeded {plan.leads:,} leads (no segments) in {without.seconds:.1f} s")
        timed("VACUUM ANALYZE", lambda: vacuum(url))

        with (
            serve(url, OUT_DIR / "segments-server.log", plan.log_level) as server,
            grpc.insecure_channel(server.address) as channel,
        ):
            say(f"creating {len(SEGMENTS)} rule segments; they build in the background")
            build_started = time.perf_counter()
            made = create_segments(channel, with_segments.key)
            counts = wait_until_ready(channel, with_segments.key, list(made.values()))
            build_s = time.perf_counter() - build_started
            say(f"all {len(made)} segments READY in {build_s:.1f} s")
            for name, segment_id in made.items():
                say(f"  {counts[segment_id]:>9,}  {name}")
            timed("VACUUM ANALYZE after the builds", lambda: vacuum(url))

            # The export first, while the segment holds exactly half the leads; the
            # updates that follow change scores.
            say("3. CSV export through Envoy vs plain COPY")
            with stack.envoy_gateway(server.port, WORK_DIR) as base_url:
                transfers, rss_idle = measure_export(
                    url, base_url, with_segments, made[EXPORT_SEGMENT], server, plan
                )
            say("1. UpdateLead latency, alternating workspaces")
            latencies = measure_updates(channel, plan, with_segments, without)
            say(f"2. {plan.batch:,}-lead batch update + membership.refresh")
            batches = measure_batch(url, with_segments, plan)

    checks, figures = build_checks(latencies, batches, transfers, rss_idle)
    lines = [
        "",
        f"== segments: {plan.leads:,} leads per workspace, {len(SEGMENTS)} rule segments "
        f"(built in {build_s:.0f} s) ==",
        *figures,
        "",
        "== targets ==",
        *checks_table(checks),
    ]
    met = sum(c.ok for c in checks)
    lines += ["", f"{met} of {len(checks)} checks met; {time.monotonic() - started:.0f} s in all"]
    print("\n".join(lines), flush=True)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = {
        "plan": asdict(plan),
        "build_seconds": build_s,
        "member_counts": {name: counts[sid] for name, sid in made.items()},
        "update_ms": {"with_segments": latencies.with_segments, "without": latencies.without},
        "batches": [asdict(b) for b in batches],
        "transfers": [asdict(t) for t in transfers],
        "rss_idle": rss_idle,
        "checks": [asdict(c) for c in checks],
    }
    (OUT_DIR / f"segments-{stamp}.json").write_text(json.dumps(results, indent=1))
    return 1 if plan.strict and met < len(checks) else 0


if __name__ == "__main__":
    sys.exit(main())
