"""The Leads API benchmark of issue 2 (`make bench`, or `python -m bench.leads [--quick]`).

Everything runs on this machine in one go, and every target is a ratio against a baseline
measured in the same run:

1. GetLead and CreateLead over gRPC at 16 and 64 calls in flight, against a trivial echo
   registered in the same server (same interceptors and API-key auth, same process model
   as `tnx-crm serve`); the load generator is another process (grpc.aio).
2. The same GetLead as REST through the Envoy gateway (wrk), against direct gRPC GetLead at
   the same concurrency; also at 1 connection, where the p50 difference is the hop's cost.
3. ListLeads in a 1,000,000-lead workspace (COPY-seeded): a page of 100 after the 900,000th
   lead against the first page; SearchLeads for "head of growth".

Rounds alternate the subjects with their baselines; figures are medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
from tnx.crm.v1 import lead_service_pb2, lead_service_pb2_grpc

from bench import listing, report, rest
from bench.echo_server import ECHO_METHOD
from bench.procs import (
    BENCH_DIR,
    CpuUse,
    Pids,
    Server,
    bench_server,
    fresh_database,
    machine_cpu_seconds,
    postmaster_pid,
    wait_for_quiet,
)
from bench.seed import GROWTH_PHRASE, seed_leads
from server.config import REPO_ROOT
from tests.support import db, stack

OUT_DIR = REPO_ROOT / "bench" / "out"
API_LEADS = 20_000  # the workspace GetLead/CreateLead run in


@dataclass(frozen=True)
class Plan:
    rounds: int
    warmup_s: float
    duration_s: float
    leads: int
    iterations: int
    concurrencies: tuple[int, ...]
    log_level: str
    rest: bool
    keep_db: bool
    strict: bool


def parse_args(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(
        prog="python -m bench.leads",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 round of 3 s, 100,000 leads: a smoke run (~2 min)"
    )
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--duration", type=float, help="seconds measured per load run")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each run")
    parser.add_argument("--leads", type=int, help="leads in the big workspace")
    parser.add_argument("--iterations", type=int, help="timed calls per list/search query")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        help="the server's CRM_LOG_LEVEL (INFO logs a line per call)",
    )
    parser.add_argument("--no-rest", action="store_true", help="skip the Envoy/wrk part")
    parser.add_argument("--keep-db", action="store_true", help="keep the database afterwards")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    quick = args.quick
    return Plan(
        rounds=args.rounds or (1 if quick else 3),
        warmup_s=args.warmup if args.warmup is not None else 1.0,
        duration_s=args.duration or (3.0 if quick else 5.0),
        leads=args.leads or (100_000 if quick else 1_000_000),
        iterations=args.iterations or (50 if quick else 200),
        concurrencies=(16, 64),
        log_level=args.log_level,
        rest=not args.no_rest,
        keep_db=args.keep_db,
        strict=args.strict,
    )


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


@dataclass(frozen=True)
class Fixture:
    """What the load runs need: the server, a key, the GetLead id pool and echo payload."""

    server: Server
    pids: Pids
    key: str
    ids_file: Path
    payload_file: Path


def run_grpc(plan: Plan, fx: Fixture, kind: str, concurrency: int) -> report.Measurement:
    wait_for_quiet()
    argv = [
        sys.executable,
        "-m",
        "bench.load",
        "--address",
        fx.server.address,
        "--key",
        fx.key,
        "--method",
        kind,
        "--concurrency",
        str(concurrency),
        "--warmup",
        str(plan.warmup_s),
        "--duration",
        str(plan.duration_s),
        "--ids",
        str(fx.ids_file),
        "--payload",
        str(fx.payload_file),
        "--pids",
        *fx.pids.as_args(),
    ]
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


def run_rest(
    plan: Plan, fx: Fixture, wrk: str, base_url: str, connections: int
) -> report.Measurement:
    wait_for_quiet()
    result = rest.run_wrk(
        wrk,
        base_url=base_url,
        key=fx.key,
        ids_file=fx.ids_file,
        connections=connections,
        warmup_s=plan.warmup_s,
        duration_s=plan.duration_s,
        pids=fx.pids,
        work_dir=BENCH_DIR,
    )
    return report.Measurement(
        kind="rest",
        concurrency=connections,
        calls=result.requests,
        seconds=result.seconds,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        errors=result.non_2xx + result.socket_errors,
        cpu=result.cpu,
    )


def prepare_fixture(server: Server, pids: Pids, key: str, ids: list[str]) -> Fixture:
    ids_file = BENCH_DIR / "lead-ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    with grpc.insecure_channel(server.address) as channel:
        stub = lead_service_pb2_grpc.LeadServiceStub(channel)
        lead = stub.GetLead(
            lead_service_pb2.GetLeadRequest(id=ids[0]),
            metadata=(("authorization", f"Bearer {key}"),),
        )
        payload = lead.SerializeToString()  # the echo carries a real Lead
        # The echo must sit behind the same API-key check as the real methods.
        echo = channel.unary_unary(ECHO_METHOD, request_serializer=None, response_deserializer=None)
        if echo(payload, metadata=(("authorization", f"Bearer {key}"),)) != payload:
            raise SystemExit("the echo did not echo")
        try:
            echo(payload)
            raise SystemExit("the echo answered without an API key: it must be authenticated")
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAUTHENTICATED:  # type: ignore[attr-defined]
                raise
    payload_file = BENCH_DIR / "echo-payload.bin"
    payload_file.write_bytes(payload)
    return Fixture(server, pids, key, ids_file, payload_file)


def load_rounds(plan: Plan, fx: Fixture, wrk: str | None, base_url: str | None) -> report.Rounds:
    rounds = report.Rounds()
    for r in range(1, plan.rounds + 1):
        for c in plan.concurrencies:
            for kind in ("echo", "get", "create"):
                m = run_grpc(plan, fx, kind, c)
                rounds.add(m)
                say(
                    f"round {r}/{plan.rounds} {report.LABELS[kind]:<18} @{c:<3} "
                    f"{m.calls_per_s:>7,.0f} calls/s  p50 {m.p50_ms:.2f} ms  errors {m.errors}"
                )
            if wrk and base_url:
                m = run_rest(plan, fx, wrk, base_url, c)
                rounds.add(m)
                say(
                    f"round {r}/{plan.rounds} {report.LABELS['rest']:<18} @{c:<3} "
                    f"{m.calls_per_s:>7,.0f} req/s    p50 {m.p50_ms:.2f} ms  errors {m.errors}"
                )
        if wrk and base_url:  # unloaded: the p50 difference is the cost of the extra hop
            rounds.add(run_grpc(plan, fx, "get", 1))
            rounds.add(run_rest(plan, fx, wrk, base_url, 1))
    return rounds


@dataclass(frozen=True)
class Outcome:
    rounds: report.Rounds
    listing: listing.ListingResult
    phrase_matches: int


def measure(plan: Plan, wrk: str | None) -> Outcome:
    with fresh_database(keep=plan.keep_db) as url:
        api = db.create_workspace(url, "bench-api")
        big = db.create_workspace(url, "bench-big")
        depth = plan.leads * 9 // 10  # the 900,000th lead of 1,000,000
        seeded = seed_leads(url, big.workspace_id, plan.leads, marks=(0, depth - 1, depth))
        say(
            f"seeded {plan.leads:,} leads by COPY in {seeded.seconds:.1f} s "
            f"({plan.leads / seeded.seconds:,.0f} rows/s, incl. VACUUM ANALYZE); "
            f"{seeded.phrase_matches:,} titled '{GROWTH_PHRASE}…'"
        )
        pool = seed_leads(url, api.workspace_id, API_LEADS, samples=API_LEADS)
        say(f"seeded {API_LEADS:,} leads for GetLead/CreateLead")

        with bench_server(url, OUT_DIR / "server.log", plan.log_level) as server:
            pids = Pids(server=server.pid, postgres=postmaster_pid(url), bench=os.getpid())
            fx = prepare_fixture(server, pids, api.key, pool.sample_ids)
            if wrk:
                with stack.envoy_gateway(server.port, BENCH_DIR) as base_url:
                    rounds = load_rounds(plan, fx, wrk, base_url)
            else:
                rounds = load_rounds(plan, fx, None, None)

            say("timing ListLeads and SearchLeads in the big workspace")
            cursor = listing.deep_cursor(
                url, workspace_id=big.workspace_id, after_id=seeded.marks[depth - 1]
            )
            lists = listing.time_listing(
                server.address,
                big.key,
                cursor=cursor,
                first_id=seeded.marks[0],
                deep_first_id=seeded.marks[depth],
                phrase=GROWTH_PHRASE.lower(),
                iterations=plan.iterations,
                depth=depth,
            )
    return Outcome(rounds=rounds, listing=lists, phrase_matches=seeded.phrase_matches)


def background_load(seconds: float = 1.0) -> float:
    """How busy the machine is before we start (another job skews every figure)."""
    busy0, total0 = machine_cpu_seconds()
    time.sleep(seconds)
    busy1, total1 = machine_cpu_seconds()
    return (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0


def main(argv: list[str] | None = None) -> int:
    plan = parse_args(argv)
    started = time.monotonic()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    wrk = rest.ensure_wrk() if plan.rest else None
    if plan.rest and wrk is None:
        print("wrk not found: install it (Debian: apt-get install -y wrk); skipping REST.")
    database = "CRM_BENCH_DATABASE_URL" if os.environ.get("CRM_BENCH_DATABASE_URL") else "embedded"
    say(
        f"plan: {plan.rounds} round(s) x {plan.duration_s:.0f} s per run, "
        f"{plan.leads:,} leads, {os.cpu_count()} CPUs; database: {database}"
    )
    busy = background_load()
    if busy > 0.2:
        say(f"warning: the machine was {busy:.0%} busy before the run; figures will be low")
    out = measure(plan, wrk)

    checks = [
        *report.grpc_checks(out.rounds, plan.concurrencies),
        *report.rest_checks(out.rounds, (1, *plan.concurrencies)),
        *report.listing_checks(out.listing, out.phrase_matches),
    ]
    lines = [
        "",
        "== gRPC and REST load (medians over rounds) ==",
        *report.throughput_table(out.rounds),
        "",
        f"== ListLeads / SearchLeads, one call in flight, {plan.iterations} calls each ==",
        *report.listing_table(out.listing, plan.leads),
        "",
        "== targets ==",
        *report.checks_table(checks),
    ]
    if out.listing.checks:
        lines += ["", "reply checks FAILED:", *(f"  {c}" for c in out.listing.checks)]
    met = sum(c.ok for c in checks)
    lines += ["", f"{met} of {len(checks)} targets met; {time.monotonic() - started:.0f} s in all"]
    print("\n".join(lines), flush=True)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = {
        "plan": asdict(plan),
        "measurements": [asdict(m) for runs in out.rounds.by_key.values() for m in runs],
        "listing": asdict(out.listing),
        "checks": [asdict(c) for c in checks],
    }
    (OUT_DIR / f"leads-{stamp}.json").write_text(json.dumps(results, indent=1))
    return 1 if plan.strict and (met < len(checks) or out.listing.checks) else 0


if __name__ == "__main__":
    sys.exit(main())
