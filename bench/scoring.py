"""The activities and scoring benchmark (`make bench-scoring`, or
`python -m bench.scoring [--quick]`).

Everything runs on this machine in one go, and every target is a ratio against a physical
baseline measured in the same run:

1. Ingest: N activities (1,000,000; --quick 100,000) for N/10 existing leads through
   StreamActivities, chunks of 1,000, from a client that partitions its leads over a few
   concurrent streams (4 by default, --streams), timed from the first byte sent to the
   last response; rows/s against PostgreSQL's own COPY of the same rows into a plain table
   with only a primary key. In a workspace without a scoring model (the target) as proto
   messages and again as NDJSON bytes (`ndjson`, when the stubs have it), then in one with
   an active model of a few engagement rules (informative).
2. CreateActivity (a new lead every call) against CreateLead on the same server, from the
   same load generator (bench.load, one grpc.aio channel, N calls in flight) at 16 and 64
   in flight, in alternating rounds with the bare echo.
3. Rescoring a workspace of 1,000,000 leads (--quick 100,000; 3 activities each), in
   process: `tasks.rebuild` after a model change and one decay pass (`tasks.tick` at a
   moment when every lead is due), against `UPDATE leads SET score = score + 1` over the
   same leads (and its undo, `- 1`, timed too: the baseline is their mean).

See bench/README.md for how each part measures and what the last runs found.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
from google.protobuf import struct_pb2
from tnx.crm.v1 import scoring_pb2, scoring_service_pb2

from bench import load, report
from bench.echo_server import ECHO_METHOD
from bench.leads import background_load, say
from bench.procs import (
    BENCH_DIR,
    CpuUse,
    Pids,
    Server,
    bench_server,
    cpu_sample,
    database_server,
    fresh_database,
    postmaster_pid,
    wait_for_quiet,
)
from bench.seed import seed_leads
from server import ids
from server.auth.service import CreatedKey
from server.config import REPO_ROOT
from server.db.engine import Database
from server.db.url import libpq_url
from server.scoring import activities, model, service, tasks
from server.scoring.enums import ModelState
from tests.support import db

OUT_DIR = REPO_ROOT / "bench" / "out"
SCORING_SERVICE = "/tnx.crm.v1.ScoringService"
CREATE_ACTIVITY = f"{SCORING_SERVICE}/CreateActivity"
STREAM_ACTIVITIES = f"{SCORING_SERVICE}/StreamActivities"
CHUNK = activities.MAX_BATCH  # activities per message of a stream
ACTIVITY_KIND = "activity"  # the load generator's name for CreateActivity
# The shared table and load generator know the Leads API's calls; this one joins them.
report.LABELS.setdefault(ACTIVITY_KIND, "CreateActivity gRPC")
load.METHODS.setdefault(ACTIVITY_KIND, CREATE_ACTIVITY)

Json = dict[str, Any]

# -- the scoring models -------------------------------------------------------------------

ENGAGEMENT_MODEL: Json = {
    "engagement_rules": [
        {
            "id": "pricing_views",
            "activity_type": "page_view",
            "conditions": [{"property": "url", "op": "contains", "value": "/pricing"}],
            "points": 5,
            "half_life_days": 14,
            "max_per_day": 3,
        },
        {"id": "page_views", "activity_type": "page_view", "points": 1, "half_life_days": 7,
         "max_per_day": 10},
        {"id": "email_clicks", "activity_type": "email_click", "points": 8, "half_life_days": 14,
         "max_per_day": 5},
        {
            "id": "demo_requests",
            "activity_type": "form_submitted",
            "conditions": [{"property": "form", "op": "eq", "value": "demo-request"}],
            "points": 25,
            "half_life_days": 30,
        },
        {
            "id": "webinars",
            "activity_type": "webinar_attended",
            "conditions": [{"property": "minutes", "op": "gte", "value": 30}],
            "points": 15,
            "half_life_days": 30,
        },
    ],
    "engagement_cap": 100,
    "thresholds": [
        {"name": "MQL", "score": 50, "hysteresis": 5},
        {"name": "SQL", "score": 80, "hysteresis": 5},
    ],
}  # fmt: skip


def _fit(rule_id: str, field_name: str, op: str, value: str, points: int) -> Json:
    tree = {"combinator": "AND", "rules": [{"field": field_name, "op": op, "value": value}]}
    return {"id": rule_id, "rules": tree, "points": points}


# The change that is timed: two fit rules added, the pricing rule worth a point more.
CHANGED_MODEL: Json = {
    **ENGAGEMENT_MODEL,
    "fit_rules": [
        _fit("head_of", "title", "contains", "Head of", 20),
        _fit("saas", "custom.industry", "eq", "SaaS", 10),
    ],
    "fit_cap": 30,
    "engagement_rules": [
        {**ENGAGEMENT_MODEL["engagement_rules"][0], "points": 6},
        *ENGAGEMENT_MODEL["engagement_rules"][1:],
    ],
}


async def publish(database: Database, workspace_id: str, document: Json) -> model.ScoringModel:
    """A new model version, set in process; the rebuild it asks for is left to the caller."""
    return await service.update_model(
        database,
        lambda _workspace: None,
        workspace_id=workspace_id,
        data=model.from_json(document),
        paths=service.PARTS,
    )


async def timed_rebuild(database: Database, workspace_id: str) -> tuple[int, float]:
    started = time.perf_counter()
    count = await tasks.rebuild(database, workspace_id)
    return count, time.perf_counter() - started


# -- the plan -----------------------------------------------------------------------------

PARTS = ("ingest", "api", "rescore")


@dataclass(frozen=True)
class Plan:
    activities: int
    ingest_leads: int
    streams: int
    rescore_leads: int
    rounds: int
    warmup_s: float
    duration_s: float
    concurrencies: tuple[int, ...]
    parts: tuple[str, ...]
    log_level: str
    keep_db: bool
    strict: bool


def parse_args(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scoring",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="100,000 activities, 100,000 leads to rescore, 1 round of 3 s (~3 min)",
    )
    parser.add_argument("--activities", type=int, help="activities streamed per ingest run")
    parser.add_argument("--streams", type=int, default=4, help="concurrent ingest streams")
    parser.add_argument("--rescore-leads", type=int, help="leads in the rescored workspace")
    parser.add_argument("--rounds", type=int, help="rounds of the CreateActivity comparison")
    parser.add_argument("--duration", type=float, help="seconds measured per load run")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each run")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"which parts to run (of {','.join(PARTS)})"
    )
    parser.add_argument("--log-level", default="WARNING", help="the server's CRM_LOG_LEVEL")
    parser.add_argument("--keep-db", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    quick = args.quick
    count = args.activities or (100_000 if quick else 1_000_000)
    parts = tuple(p for p in args.parts.split(",") if p)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part {unknown[0]!r}")
    return Plan(
        activities=count,
        ingest_leads=max(count // 10, 1),
        streams=max(args.streams, 1),
        rescore_leads=args.rescore_leads or (100_000 if quick else 1_000_000),
        rounds=args.rounds or (1 if quick else 3),
        warmup_s=args.warmup if args.warmup is not None else 1.0,
        duration_s=args.duration or (3.0 if quick else 5.0),
        concurrencies=(16, 64),
        parts=parts,
        log_level=args.log_level,
        keep_db=args.keep_db,
        strict=args.strict,
    )


# -- shared --------------------------------------------------------------------------------


def settle(url: str, *tables: str) -> None:
    """Before a timed phase: VACUUM ANALYZE what the last phase wrote (as autovacuum would,
    but not in the middle of the next measurement) and a CHECKPOINT, so no phase pays for
    the dirty pages of another."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        if tables:
            conn.execute(f"VACUUM (ANALYZE) {', '.join(tables)}")
        # Without the right (CRM_BENCH_DATABASE_URL), the phases share checkpoints.
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")


def cpu_note(cpu: CpuUse, rows: int, unit: str = "row") -> str:
    return (
        f"CPU µs/{unit}: server {cpu.server / rows * 1e6:,.0f}, PostgreSQL "
        f"{cpu.postgres / rows * 1e6:,.0f}, client {cpu.client / rows * 1e6:,.0f}; "
        f"foreign {cpu.foreign_share:.0%}"
    )


# -- 1. ingest ----------------------------------------------------------------------------

# (type, weight, property variants): what a product's tracking sends most is page views.
TYPES: list[tuple[str, int, list[Json]]] = [
    ("page_view", 55, [{"url": "/pricing"}, {"url": "/"}, {"url": "/blog/lead-scoring-101"},
                       {"url": "/docs/api"}, {"url": "/pricing?plan=team"}]),
    ("email_open", 20, [{"campaign": "spring-launch"}, {"campaign": "newsletter-42"}]),
    ("email_click", 12, [{"campaign": "spring-launch", "url": "/pricing"},
                         {"campaign": "newsletter-42", "url": "/blog/lead-scoring-101"}]),
    ("form_submitted", 5, [{"form": "demo-request"}, {"form": "newsletter"}]),
    ("webinar_attended", 5, [{"webinar": "growth-101", "minutes": 45},
                             {"webinar": "growth-101", "minutes": 12}]),
    ("meeting_booked", 3, [{"with": "sales"}]),
]  # fmt: skip
VARIANTS: list[tuple[str, Json]] = [
    (kind, props) for kind, _, options in TYPES for props in options
]
VARIANT_WEIGHTS = [weight / len(options) for _, weight, options in TYPES for _ in options]
MAX_AGE_S = 30 * 86400


@dataclass
class Workload:
    """N generated activities, by lead index (into a workspace's leads, in id order): which
    lead, which type and properties, when (seconds before `now`). The same workload is
    materialized for COPY and for each workspace's streams."""

    now: float
    lead: array[int]
    variant: bytes
    age_s: array[int]

    def __len__(self) -> int:
        return len(self.lead)

    def stream_indexes(self, streams: int) -> list[list[int]]:
        """Activity indexes per stream: a client partitions its leads over its streams (by
        lead, as a queue partitions by key), so two streams never write the same lead."""
        parts: list[list[int]] = [[] for _ in range(streams)]
        for i, lead in enumerate(self.lead):
            parts[lead % streams].append(i)
        return parts


def generate(count: int, leads: int, seed: int = 7) -> Workload:
    rng = random.Random(seed)
    variants = rng.choices(range(len(VARIANTS)), weights=VARIANT_WEIGHTS, k=count)
    return Workload(
        now=time.time(),
        lead=array("l", (rng.randrange(leads) for _ in range(count))),
        variant=bytes(variants),
        age_s=array("l", (rng.randrange(MAX_AGE_S) for _ in range(count))),
    )


def copy_chunks(work: Workload, workspace_id: str, lead_ids: Sequence[str]) -> list[str]:
    """The rows as COPY text (id, workspace_id, lead_id, type, data, occurred_at), with ids
    of the real shape, in blocks of CHUNK rows."""
    texts = [json.dumps(props) for _, props in VARIANTS]
    blocks: list[str] = []
    for start in range(0, len(work), CHUNK):
        stop = min(start + CHUNK, len(work))
        new = ids.new_ids("act", stop - start)
        lines = []
        for n, i in enumerate(range(start, stop)):
            v = work.variant[i]
            at = datetime.fromtimestamp(work.now - work.age_s[i], UTC).isoformat()
            lines.append(
                f"{new[n]}\t{workspace_id}\t{lead_ids[work.lead[i]]}\t{VARIANTS[v][0]}\t"
                f"{texts[v]}\t{at}\n"
            )
        blocks.append("".join(lines))
    return blocks


def stream_messages(work: Workload, indexes: Sequence[int], lead_ids: Sequence[str]) -> list[bytes]:
    """One stream's StreamActivitiesRequest messages, serialized in advance (so the client
    costs as little as it can), CHUNK activities each."""
    templates = []
    for kind, props in VARIANTS:
        properties = struct_pb2.Struct()
        properties.update(props)
        templates.append(scoring_pb2.Activity(type=kind, properties=properties))
    out: list[bytes] = []
    for start in range(0, len(indexes), CHUNK):
        message = scoring_service_pb2.StreamActivitiesRequest()
        for i in indexes[start : start + CHUNK]:
            item = message.activities.add()
            item.CopyFrom(templates[work.variant[i]])
            item.lead_id = lead_ids[work.lead[i]]
            item.occurred_at.seconds = int(work.now) - work.age_s[i]
        out.append(message.SerializeToString())
    return out


def ndjson_supported() -> bool:
    """Whether StreamActivitiesRequest has the NDJSON form (`bytes ndjson`)."""
    return "ndjson" in scoring_service_pb2.StreamActivitiesRequest.DESCRIPTOR.fields_by_name


def ndjson_messages(work: Workload, indexes: Sequence[int], lead_ids: Sequence[str]) -> list[bytes]:
    """The same activities as NDJSON (`ndjson` bytes, one Activity JSON object a line),
    CHUNK lines a message, serialized in advance."""
    texts = [json.dumps(props) for _, props in VARIANTS]
    out: list[bytes] = []
    for start in range(0, len(indexes), CHUNK):
        lines = []
        for i in indexes[start : start + CHUNK]:
            v = work.variant[i]
            at = datetime.fromtimestamp(int(work.now) - work.age_s[i], UTC)
            lines.append(
                f'{{"lead_id": "{lead_ids[work.lead[i]]}", "type": "{VARIANTS[v][0]}", '
                f'"occurred_at": "{at:%Y-%m-%dT%H:%M:%SZ}", "properties": {texts[v]}}}\n'
            )
        message = scoring_service_pb2.StreamActivitiesRequest(ndjson="".join(lines).encode())
        out.append(message.SerializeToString())
    return out


COPY_TABLE = "bench_activity_copy"


@dataclass(frozen=True)
class Ingest:
    kind: str  # copy | stream | stream-ndjson | stream+model
    rows: int
    seconds: float
    cpu: CpuUse
    streams: int = 0
    messages: int = 0

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def timed_copy(url: str, blocks: list[str], pids: Pids) -> Ingest:
    """COPY of the rows into a plain table with only a primary key (a regular, logged
    table like activities), timed from the statement to its commit; dropped afterwards."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {COPY_TABLE}")
        conn.execute(
            f"CREATE TABLE {COPY_TABLE} (id text PRIMARY KEY, workspace_id text NOT NULL, "
            "lead_id text NOT NULL, type text NOT NULL, data jsonb NOT NULL, "
            "occurred_at timestamptz NOT NULL)"
        )
    settle(url)
    wait_for_quiet()
    rows = sum(block.count("\n") for block in blocks)
    with psycopg.connect(libpq_url(url)) as conn:
        before = cpu_sample(pids)
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY {COPY_TABLE} FROM STDIN") as copy:
            for block in blocks:
                copy.write(block)
        conn.commit()
        seconds = time.perf_counter() - started
        cpu = CpuUse.between(before, cpu_sample(pids))
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(f"DROP TABLE {COPY_TABLE}")
    return Ingest("copy", rows, seconds, cpu)


async def _send_streams(
    address: str, key: str, streams: list[list[bytes]]
) -> tuple[float, list[scoring_service_pb2.StreamActivitiesResponse]]:
    metadata = (("authorization", f"Bearer {key}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.stream_unary(
            STREAM_ACTIVITIES,
            request_serializer=None,
            response_deserializer=scoring_service_pb2.StreamActivitiesResponse.FromString,
        )
        await channel.channel_ready()
        started = time.perf_counter()
        replies = await asyncio.gather(
            *(call(iter(messages), metadata=metadata, timeout=3600) for messages in streams)
        )
        return time.perf_counter() - started, list(replies)


def timed_stream(
    kind: str, server: Server, key: str, streams: list[list[bytes]], rows: int, pids: Pids
) -> Ingest:
    wait_for_quiet()
    before = cpu_sample(pids)
    seconds, replies = asyncio.run(_send_streams(server.address, key, streams))
    cpu = CpuUse.between(before, cpu_sample(pids))
    recorded = sum(r.recorded for r in replies)
    failed = sum(r.failed for r in replies)
    if recorded != rows or failed:
        errors = [e for r in replies for e in r.errors][:3]
        raise SystemExit(f"{kind}: {recorded:,} of {rows:,} recorded, {failed} failed: {errors}")
    return Ingest(kind, rows, seconds, cpu, len(streams), sum(len(s) for s in streams))


def say_ingest(result: Ingest) -> None:
    how = f" over {result.streams} streams" if result.streams else ""
    say(
        f"  {result.kind:<13} {result.rows:,} rows in {result.seconds:.1f} s{how}: "
        f"{result.rows_per_s:,.0f} rows/s; {cpu_note(result.cpu, result.rows)}"
    )


@dataclass(frozen=True)
class IngestSetup:
    plain: CreatedKey  # no scoring model
    scored: CreatedKey  # an active model of engagement rules
    plain_ids: list[str]
    scored_ids: list[str]


def prepare_ingest(url: str, plan: Plan) -> IngestSetup:
    plain = db.create_workspace(url, "bench-ingest")
    scored = db.create_workspace(url, "bench-ingest-model")
    n = plan.ingest_leads
    plain_ids = seed_leads(url, plain.workspace_id, n, samples=n).sample_ids
    scored_ids = seed_leads(url, scored.workspace_id, n, samples=n).sample_ids
    say(f"seeded 2 workspaces of {n:,} leads for the ingest")

    async def set_model(database: Database) -> tuple[int, float]:
        published = await publish(database, scored.workspace_id, ENGAGEMENT_MODEL)
        say(f"  model v{published.version} published ({published.state}); scoring its leads")
        return await timed_rebuild(database, scored.workspace_id)

    count, seconds = db.run_with_db(url, set_model)
    say(f"  {count:,} leads scored in {seconds:.1f} s: the model is READY")
    settle(url, "leads", "lead_scores", "events")
    return IngestSetup(plain, scored, plain_ids, scored_ids)


def measure_ingest(
    url: str, plan: Plan, server: Server, pids: Pids, setup: IngestSetup
) -> list[Ingest]:
    work = generate(plan.activities, plan.ingest_leads)
    parts = work.stream_indexes(plan.streams)
    results: list[Ingest] = []
    say(f"1. ingest: {len(work):,} activities for {plan.ingest_leads:,} leads")
    # COPY, stream without a model, COPY again, stream with a model: each stream is next to
    # a COPY in time; the baseline is the mean of both COPYs.
    blocks = copy_chunks(work, setup.plain.workspace_id, setup.plain_ids)
    results.append(timed_copy(url, blocks, pids))
    say_ingest(results[-1])
    streams = [stream_messages(work, part, setup.plain_ids) for part in parts]
    results.append(timed_stream("stream", server, setup.plain.key, streams, len(work), pids))
    say_ingest(results[-1])
    if ndjson_supported():  # the same rows again, in the NDJSON form of the same call
        streams = [ndjson_messages(work, part, setup.plain_ids) for part in parts]
        settle(url, "activities", "leads")
        results.append(
            timed_stream("stream-ndjson", server, setup.plain.key, streams, len(work), pids)
        )
        say_ingest(results[-1])
    del streams
    settle(url, "activities", "leads")
    results.append(timed_copy(url, blocks, pids))
    say_ingest(results[-1])
    del blocks
    streams = [stream_messages(work, part, setup.scored_ids) for part in parts]
    results.append(timed_stream("stream+model", server, setup.scored.key, streams, len(work), pids))
    say_ingest(results[-1])
    return results


# -- 2. CreateActivity against CreateLead ---------------------------------------------------


def activity_requests(lead_ids: list[str]) -> Callable[[], bytes]:
    """CreateActivity requests serialized in advance, a different lead every call (in turn
    from a random start, so a run of fewer calls than leads never repeats one); no
    occurred_at (the server's clock) and no idempotency key."""
    properties = struct_pb2.Struct()
    properties.update({"url": "/pricing"})
    pool = [
        scoring_service_pb2.CreateActivityRequest(
            lead_id=lead_id, activity=scoring_pb2.Activity(type="page_view", properties=properties)
        ).SerializeToString()
        for lead_id in lead_ids
    ]
    turn = itertools.count(random.randrange(len(pool)))
    return lambda: pool[next(turn) % len(pool)]


def load_main(argv: list[str]) -> None:
    """`python -m bench.scoring load …`: bench.load's generator (the same run(), the same
    Result), with CreateActivity as one more method."""
    parser = argparse.ArgumentParser(prog="python -m bench.scoring load")
    parser.add_argument("--address", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--method", choices=sorted(load.METHODS), required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--ids", type=Path, required=True)
    parser.add_argument("--payload", type=Path, required=True)
    parser.add_argument("--pids", nargs=3, required=True)
    args = parser.parse_args(argv)
    lead_ids = args.ids.read_text().split()
    if args.method == ACTIVITY_KIND:
        make_request = activity_requests(lead_ids)
    else:
        make_request = load.request_factory(args.method, lead_ids, args.payload.read_bytes())
    result = asyncio.run(
        load.run(
            address=args.address,
            key=args.key,
            method=args.method,
            concurrency=args.concurrency,
            warmup_s=args.warmup,
            duration_s=args.duration,
            make_request=make_request,
            pids=Pids.from_args(args.pids),
        )
    )
    json.dump(result.summary(), sys.stdout)
    sys.stdout.write("\n")


@dataclass(frozen=True)
class ApiFixture:
    server: Server
    pids: Pids
    key: str
    ids_file: Path
    payload_file: Path


def prepare_api(server: Server, pids: Pids, key: str, lead_ids: list[str]) -> ApiFixture:
    """The lead pool and the echo's payload (a real CreateActivityRequest); checks that the
    echo, like the real methods, refuses a call without a key."""
    ids_file = BENCH_DIR / "scoring-lead-ids.txt"
    ids_file.write_text("\n".join(lead_ids) + "\n")
    payload = activity_requests(lead_ids[:1])()
    with grpc.insecure_channel(server.address) as channel:
        echo = channel.unary_unary(ECHO_METHOD, request_serializer=None, response_deserializer=None)
        if echo(payload, metadata=(("authorization", f"Bearer {key}"),)) != payload:
            raise SystemExit("the echo did not echo")
        try:
            echo(payload)
            raise SystemExit("the echo answered without an API key: it must be authenticated")
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAUTHENTICATED:  # type: ignore[attr-defined]
                raise
    payload_file = BENCH_DIR / "scoring-echo-payload.bin"
    payload_file.write_bytes(payload)
    return ApiFixture(server, pids, key, ids_file, payload_file)


def run_load(plan: Plan, fx: ApiFixture, kind: str, concurrency: int) -> report.Measurement:
    wait_for_quiet()
    argv = [
        sys.executable, "-m", "bench.scoring", "load",
        "--address", fx.server.address, "--key", fx.key, "--method", kind,
        "--concurrency", str(concurrency), "--warmup", str(plan.warmup_s),
        "--duration", str(plan.duration_s), "--ids", str(fx.ids_file),
        "--payload", str(fx.payload_file), "--pids", *fx.pids.as_args(),
    ]  # fmt: skip
    out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=REPO_ROOT)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return report.Measurement(
        kind=kind,
        concurrency=concurrency,
        calls=data["calls"],
        seconds=data["seconds"],
        p50_ms=data["p50_ms"],
        p99_ms=data["p99_ms"],
        errors=sum(data["errors"].values()),
        cpu=CpuUse.from_dict(data["cpu"]),
    )


def measure_api(plan: Plan, fx: ApiFixture) -> report.Rounds:
    say(f"2. CreateActivity vs CreateLead: {plan.rounds} round(s) of {plan.duration_s:.0f} s")
    rounds = report.Rounds()
    for r in range(1, plan.rounds + 1):
        for c in plan.concurrencies:
            for kind in ("echo", ACTIVITY_KIND, "create"):
                m = run_load(plan, fx, kind, c)
                rounds.add(m)
                say(
                    f"  round {r}/{plan.rounds} {report.LABELS[kind]:<20} @{c:<3} "
                    f"{m.calls_per_s:>7,.0f} calls/s  p50 {m.p50_ms:.2f} ms  errors {m.errors}"
                )
    return rounds


# -- 3. rescoring ---------------------------------------------------------------------------

# Three activities a lead, set-based: a view of the pricing page in the last 20 days (so
# every lead has a decaying contribution and a next_change_at), an email open or click,
# and a page view, demo request or webinar; ids of the real shape, in lead order.
SEED_ACTIVITIES = """
INSERT INTO activities (id, workspace_id, lead_id, type, data, occurred_at, source, created_at)
SELECT 'act_' || substr(l.id, 6, 24) || lpad(g::text, 2, '0'), l.workspace_id, l.id, k.type,
       k.data, now() - make_interval(secs => k.age), 'bench', now()
FROM leads l
CROSS JOIN generate_series(1, 3) AS g
CROSS JOIN LATERAL (SELECT hashtext(l.id || g::text) & 2147483647 AS h) AS r
CROSS JOIN LATERAL (
    SELECT CASE g WHEN 1 THEN 'page_view'
                  WHEN 2 THEN CASE WHEN mod(r.h, 3) = 0 THEN 'email_click' ELSE 'email_open' END
                  ELSE (ARRAY['page_view', 'form_submitted', 'webinar_attended'])[1 + mod(r.h, 3)]
           END AS type,
           CASE g WHEN 1 THEN '{"url": "/pricing"}'::jsonb
                  WHEN 2 THEN '{"campaign": "spring-launch", "url": "/pricing"}'::jsonb
                  ELSE (ARRAY['{"url": "/blog/lead-scoring-101"}', '{"form": "demo-request"}',
                              '{"webinar": "growth-101", "minutes": 45}'])[1 + mod(r.h, 3)]::jsonb
           END AS data,
           CASE g WHEN 1 THEN mod(r.h, 20 * 86400) ELSE mod(r.h, 60 * 86400) END AS age
) AS k
WHERE l.workspace_id = %s
"""
BASELINE_UPDATES = (
    "UPDATE leads SET score = score + 1 WHERE workspace_id = %s",
    "UPDATE leads SET score = score - 1 WHERE workspace_id = %s",  # the undo, timed too
)


@dataclass(frozen=True)
class Timed:
    name: str
    seconds: float
    rows: int
    cpu: CpuUse
    changed: int = 0  # leads whose score changed


def score_changes(url: str, workspace_id: str) -> int:
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM events WHERE workspace_id = %s AND type = 'lead.score_changed'",
            (workspace_id,),
        ).fetchone()
    return int(row[0]) if row else 0


@dataclass
class Rescore:
    leads: int
    activities: int
    seed_s: float
    phases: list[Timed] = field(default_factory=list)
    at: str = ""  # the decay pass's moment
    undecaying: int = 0  # leads without a next_change_at

    def get(self, name: str) -> Timed:
        return next(t for t in self.phases if t.name == name)

    def baseline_s(self) -> float:
        return statistics.mean(t.seconds for t in self.phases if t.name.startswith("UPDATE"))


def timed_update(url: str, statement: str, workspace_id: str, pids: Pids) -> Timed:
    wait_for_quiet()
    with psycopg.connect(libpq_url(url)) as conn:
        before = cpu_sample(pids)
        started = time.perf_counter()
        rows = conn.execute(statement, (workspace_id,)).rowcount
        conn.commit()
        seconds = time.perf_counter() - started
        cpu = CpuUse.between(before, cpu_sample(pids))
    name = "UPDATE score + 1" if "+" in statement else "UPDATE score - 1"
    return Timed(name, seconds, rows, cpu)


def timed_in_process(
    url: str, workspace_id: str, name: str, pids: Pids, action: Callable[[Database], Awaitable[int]]
) -> Timed:
    """The action in this process (a fresh engine, connected before the clock starts), with
    the number of leads whose score it changed."""
    changes = score_changes(url, workspace_id)
    wait_for_quiet()

    async def run(database: Database) -> Timed:
        async with database.transaction() as conn:  # connected before the clock starts
            await conn.exec_driver_sql("SELECT 1")
        before = cpu_sample(pids)
        started = time.perf_counter()
        rows = await action(database)
        seconds = time.perf_counter() - started
        return Timed(name, seconds, rows, CpuUse.between(before, cpu_sample(pids)))

    timed = db.run_with_db(url, run)
    return replace(timed, changed=score_changes(url, workspace_id) - changes)


def say_timed(t: Timed) -> None:
    note = cpu_note(t.cpu, t.rows, "lead")
    say(f"  {t.name:<26} {t.rows:>9,} leads in {t.seconds:6.1f} s ({t.changed:,} changed); {note}")


def measure_rescore(url: str, plan: Plan) -> Rescore:
    n = plan.rescore_leads
    say(f"3. rescoring {n:,} leads")
    ws = db.create_workspace(url, "bench-rescore").workspace_id
    started = time.perf_counter()
    seed_leads(url, ws, n, samples=1)
    with psycopg.connect(libpq_url(url)) as conn:
        made = conn.execute(SEED_ACTIVITIES, (ws,)).rowcount
    settle(url, "activities", "leads")
    result = Rescore(leads=n, activities=made, seed_s=time.perf_counter() - started)
    say(f"  seeded {n:,} leads and {made:,} activities in {result.seed_s:.1f} s")
    # In process: no server; the bench process is where the rescoring Python runs.
    pids = Pids(server=os.getpid(), postgres=postmaster_pid(url), bench=os.getpid())

    def record(t: Timed) -> None:
        result.phases.append(t)
        say_timed(t)

    def model_change(version: str, document: Json) -> None:
        published = db.run_with_db(url, lambda d: publish(d, ws, document))
        if published.state != ModelState.BUILDING:
            raise SystemExit(f"model {version} was rebuilt inline: the workspace is too small")
        record(timed_in_process(url, ws, version, pids, lambda d: tasks.rebuild(d, ws)))
        settle(url, "leads", "lead_scores", "events")

    # The first model: every lead gets its lead_scores row (informative). Then the
    # baseline, +1 and its undo (-1), both timed; then the change, then the decay pass.
    model_change("rebuild, first model (v1)", ENGAGEMENT_MODEL)
    for statement in BASELINE_UPDATES:
        record(timed_update(url, statement, ws, pids))
        settle(url, "leads")
    model_change("rebuild, model change (v2)", CHANGED_MODEL)
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT max(next_change_at), count(*) FILTER (WHERE next_change_at IS NULL) "
            "FROM lead_scores WHERE workspace_id = %s",
            (ws,),
        ).fetchone()
    assert row is not None and row[0] is not None
    at: datetime = row[0] + timedelta(seconds=1)
    result.at, result.undecaying = at.isoformat(), row[1]
    record(timed_in_process(url, ws, "decay pass (tick)", pids, lambda d: tasks.tick(d, at=at)))
    return result


# -- checks and tables ----------------------------------------------------------------------


def ingest_lines(results: list[Ingest], plan: Plan) -> tuple[list[str], list[report.Check]]:
    copies = [r for r in results if r.kind == "copy"]
    base = statistics.mean(r.rows_per_s for r in copies)
    head = (
        f"{'run':<34} {'rows/s':>9} {'seconds':>8} {'of COPY':>8} {'server':>7} "
        f"{'postgres':>8} {'client':>7} {'foreign':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        name = {
            "copy": "COPY into a plain table (baseline)",
            "stream": f"StreamActivities, no model, {r.streams}x",
            "stream-ndjson": f"  the same as NDJSON, {r.streams}x",
            "stream+model": f"StreamActivities, model, {r.streams}x",
        }[r.kind]
        lines.append(
            f"{name:<34} {r.rows_per_s:>9,.0f} {r.seconds:>8.1f} {r.rows_per_s / base:>8.1%} "
            f"{r.cpu.server / r.rows * 1e6:>7,.0f} {r.cpu.postgres / r.rows * 1e6:>8,.0f} "
            f"{r.cpu.client / r.rows * 1e6:>7,.0f} {r.cpu.foreign_share:>7.0%}"
        )
    lines += [
        f"{plan.activities:,} rows each, messages of {CHUNK:,}; the baseline is the mean of "
        f"both COPYs ({base:,.0f} rows/s).",
        "The target applies to the runs without a model (proto messages; NDJSON bytes, when "
        "the stubs have the field);",
        "the run with one (every message also rescores its leads) is informative. server / "
        "postgres / client:",
        "CPU µs per row in the gRPC server, PostgreSQL and this process.",
    ]
    checks = [
        report.Check(
            "StreamActivities / COPY" + (", NDJSON" if r.kind == "stream-ndjson" else ""),
            f"{r.rows_per_s / base:.1%}",
            ">= 30%",
            r.rows_per_s >= 0.30 * base,
            f"{r.rows_per_s:,.0f} vs {base:,.0f} rows/s; {r.streams} stream(s), no model",
        )
        for r in results
        if r.kind in ("stream", "stream-ndjson")
    ]
    return lines, checks


def api_checks(rounds: report.Rounds, concurrencies: Sequence[int]) -> list[report.Check]:
    checks = []
    for c in concurrencies:
        mid, low, high = rounds.ratio(ACTIVITY_KIND, "create", c)
        checks.append(
            report.Check(
                f"CreateActivity / CreateLead @{c}",
                f"{mid:.0%} ({low:.0%}-{high:.0%})",
                ">= 50%",
                mid >= 0.50,
                rounds.cpu_ratio(ACTIVITY_KIND, "create", c),
            )
        )
    return checks


def rescore_lines(result: Rescore) -> tuple[list[str], list[report.Check]]:
    base = result.baseline_s()
    head = (
        f"{'phase':<28} {'leads':>9} {'changed':>9} {'seconds':>8} {'x UPDATE':>8} "
        f"{'python':>7} {'postgres':>8}"
    )
    lines = [head, "-" * len(head)]
    for t in result.phases:
        lines.append(
            f"{t.name:<28} {t.rows:>9,} {t.changed:>9,} {t.seconds:>8.2f} "
            f"{t.seconds / base:>8.2f} {t.cpu.server / t.rows * 1e6:>7,.0f} "
            f"{t.cpu.postgres / t.rows * 1e6:>8,.0f}"
        )
    lines += [
        f"{result.leads:,} leads, {result.activities:,} activities (seeded in "
        f"{result.seed_s:.0f} s). Baseline: the mean of UPDATE +1 and its undo, -1 "
        f"({base:.2f} s).",
        "changed: leads whose score changed (lead.score_changed events). python / postgres: "
        "CPU µs per lead in",
        "the bench process (where the rescoring runs) and in PostgreSQL. Every phase starts "
        "after VACUUM ANALYZE and a CHECKPOINT.",
        f"The decay pass runs at {result.at} (the workspace's last next_change_at + 1 s); "
        f"{result.undecaying:,} leads have none.",
    ]
    checks = []
    for name, label in (
        ("rebuild, model change (v2)", "rebuild after a model change"),
        ("decay pass (tick)", "one decay pass"),
    ):
        t = result.get(name)
        checks.append(
            report.Check(
                f"{label} / UPDATE",
                f"{t.seconds / base:.2f}x",
                "<= 3x",
                t.seconds <= 3 * base and t.rows == result.leads,
                f"{t.seconds:.1f} vs {base:.1f} s; {t.rows:,} leads rescored",
            )
        )
    return lines, checks


# -- the embedded PostgreSQL -------------------------------------------------------------


# -- main ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    ingest: list[Ingest] = field(default_factory=list)
    api: report.Rounds | None = None
    rescore: Rescore | None = None


def measure(plan: Plan) -> Outcome:
    out = Outcome()
    if "ingest" in plan.parts or "api" in plan.parts:
        with fresh_database(keep=plan.keep_db) as url:
            setup = prepare_ingest(url, plan)
            with bench_server(url, OUT_DIR / "scoring-server.log", plan.log_level) as server:
                pids = Pids(server=server.pid, postgres=postmaster_pid(url), bench=os.getpid())
                if "ingest" in plan.parts:
                    out.ingest = measure_ingest(url, plan, server, pids, setup)
                    settle(url, "activities", "leads", "lead_scores", "events")
                if "api" in plan.parts:
                    # In the workspace without a model: CreateLead and CreateActivity both
                    # write without computing a score.
                    fx = prepare_api(server, pids, setup.plain.key, setup.plain_ids)
                    out.api = measure_api(plan, fx)
    if "rescore" in plan.parts:
        # A database of its own: the decay pass (tick) goes through every workspace.
        with fresh_database(keep=plan.keep_db) as url:
            out.rescore = measure_rescore(url, plan)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["load"]:
        load_main(args[1:])
        return 0
    plan = parse_args(args)
    started = time.monotonic()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    database = "CRM_BENCH_DATABASE_URL" if os.environ.get("CRM_BENCH_DATABASE_URL") else "embedded"
    say(
        f"plan: {plan.activities:,} activities over {plan.streams} streams, "
        f"{plan.rescore_leads:,} leads to rescore, {plan.rounds} round(s) x "
        f"{plan.duration_s:.0f} s; parts {','.join(plan.parts)}; {os.cpu_count()} CPUs; "
        f"database: {database}"
    )
    busy = background_load()
    if busy > 0.2:
        say(f"warning: the machine was {busy:.0%} busy before the run; figures will be low")
    with database_server():
        out = measure(plan)

    checks: list[report.Check] = []
    lines: list[str] = []
    if out.ingest:
        table, found = ingest_lines(out.ingest, plan)
        checks += found
        lines += ["", "== 1. activity ingest, end to end ==", *table]
    if out.api is not None:
        checks += api_checks(out.api, plan.concurrencies)
        lines += [
            "",
            "== 2. CreateActivity vs CreateLead (medians over rounds) ==",
            *report.throughput_table(out.api),
        ]
    if out.rescore is not None:
        table, found = rescore_lines(out.rescore)
        checks += found
        lines += ["", "== 3. rescoring, in process ==", *table]
    lines += ["", "== targets ==", *report.checks_table(checks)]
    met = sum(c.ok for c in checks)
    lines += ["", f"{met} of {len(checks)} checks met; {time.monotonic() - started:.0f} s in all"]
    print("\n".join(lines), flush=True)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = {
        "plan": asdict(plan),
        "ingest": [{**asdict(r), "rows_per_s": r.rows_per_s} for r in out.ingest],
        "api": [asdict(m) for runs in out.api.by_key.values() for m in runs] if out.api else [],
        "rescore": asdict(out.rescore) if out.rescore else None,
        "checks": [asdict(c) for c in checks],
    }
    path = OUT_DIR / f"scoring-{stamp}.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    say(f"wrote {path.relative_to(REPO_ROOT)}")
    return 1 if plan.strict and met < len(checks) else 0


if __name__ == "__main__":
    sys.exit(main())
