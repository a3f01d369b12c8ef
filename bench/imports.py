"""Import benchmark: a generated CSV of leads (10 columns, 3 of them custom fields) into an
empty workspace and again as a 100% update, end to end (gRPC upload stream → worker →
SUCCEEDED), against a plain COPY into a staging table + INSERT … ON CONFLICT of the same
file into the same schema, measured in the same run. Also the worker's peak RSS at two
file sizes (it must not grow with the file) and the upload's own throughput.

    .venv/bin/python -m bench.imports           # 1,000,000 rows (and 100,000 for RSS)
    .venv/bin/python -m bench.imports --quick   # 100,000 rows (and 20,000)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import psutil
import psycopg
from google.api import httpbody_pb2
from tnx.crm.v1 import import_pb2, import_service_pb2, import_service_pb2_grpc

from bench.procs import BENCH_DIR, fresh_database
from server.db.url import libpq_url
from tests.support import db, stack
from tests.support.imports import WorkerProcess

Job = import_pb2.ImportJob
MESSAGE_BYTES = 1024 * 1024
HEADER = [
    "Email", "First Name", "Last Name", "Job Title", "Company", "Phone", "Lead Source",
    "Industry", "City", "Plan",
]  # fmt: skip
TITLES = ["CEO", "CTO", "Head of Growth", "Marketing Manager", "Engineer", "VP Sales"]
INDUSTRIES = ["SaaS", "Retail", "Fintech", "Health", "Media"]
CITIES = ["Paris", "Berlin", "Austin", "Lagos", "Osaka", "Lima"]


def generate(path: Path, rows: int, *, seed: int, variant: str = "") -> int:
    """A CSV of `rows` distinct leads; `variant` changes every row's title and plan (so a
    second file is a 100% update of the first)."""
    rng = random.Random(seed)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for i in range(rows):
            writer.writerow(
                [
                    f"lead{i}@company{i % 5000}.com",
                    f"First{i}",
                    f"Last{rng.randrange(10**6)}",
                    rng.choice(TITLES) + variant,
                    f"Company {i % 5000}",
                    f"+1415{rng.randrange(10**7):07d}",
                    "bench",
                    rng.choice(INDUSTRIES),
                    rng.choice(CITIES),
                    f"plan{rng.randrange(4)}{variant}",
                ]
            )
    return path.stat().st_size


# -- the baseline: COPY + INSERT … ON CONFLICT, no application in between -----------------

BASELINE_STAGE = """
CREATE TEMP TABLE stage (email text, first_name text, last_name text, title text,
    company text, phone text, source text, industry text, city text, plan text)
"""
BASELINE_UPSERT = """
INSERT INTO leads AS l (id, workspace_id, email, first_name, last_name, title, phone, company,
    source, custom_fields)
SELECT 'lead_' || md5(random()::text), %(ws)s, lower(email), first_name, last_name, title,
       phone, company, source,
       jsonb_build_object('industry', industry, 'city', city, 'plan', plan)
FROM stage
ON CONFLICT (workspace_id, lower(email)) DO UPDATE SET
    first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, title = EXCLUDED.title,
    phone = EXCLUDED.phone, company = EXCLUDED.company,
    custom_fields = l.custom_fields || EXCLUDED.custom_fields, updated_at = now()
"""


def baseline(url: str, workspace_id: str, path: Path) -> float:
    """Seconds for COPY of the file into a staging table plus one upsert, one transaction."""
    started = time.perf_counter()
    with psycopg.connect(libpq_url(url)) as conn, conn.cursor() as cursor:
        cursor.execute(BASELINE_STAGE)
        with (
            path.open("rb") as source,
            cursor.copy("COPY stage FROM STDIN WITH (FORMAT csv, HEADER true)") as copy,
        ):
            while block := source.read(MESSAGE_BYTES):
                copy.write(block)
        cursor.execute(BASELINE_UPSERT, {"ws": workspace_id})
    return time.perf_counter() - started


# -- end to end ---------------------------------------------------------------------------


def _requests(path: Path) -> Iterator[import_service_pb2.UploadImportRequest]:
    yield import_service_pb2.UploadImportRequest(format=Job.CSV, declared_size=path.stat().st_size)
    with path.open("rb") as source:
        while block := source.read(MESSAGE_BYTES):
            yield import_service_pb2.UploadImportRequest(file=httpbody_pb2.HttpBody(data=block))


class PeakRss:
    """Samples a process's resident set every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self.stop.wait(0.05)

    def __enter__(self) -> PeakRss:
        self.peak = self.process.memory_info().rss
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


@dataclass
class Run:
    rows: int
    file_mb: float
    upload_s: float
    total_s: float
    worker_rss_before_mb: float
    worker_peak_rss_mb: float
    created: int
    updated: int

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.total_s

    @property
    def upload_mb_per_s(self) -> float:
        return self.file_mb / self.upload_s


def end_to_end(
    stub: import_service_pb2_grpc.ImportServiceStub,
    key: str,
    path: Path,
    rows: int,
    worker_pid: int,
) -> Run:
    metadata = (("authorization", f"Bearer {key}"),)
    rss_before = psutil.Process(worker_pid).memory_info().rss
    with PeakRss(worker_pid) as rss:
        started = time.perf_counter()
        job = stub.UploadImport(_requests(path), metadata=metadata)
        uploaded = time.perf_counter()
        while job.status not in (Job.SUCCEEDED, Job.FAILED, Job.CANCELLED):
            time.sleep(0.05)
            job = stub.GetImport(import_service_pb2.GetImportRequest(id=job.id), metadata=metadata)
        finished = time.perf_counter()
    if job.status != Job.SUCCEEDED or job.rows_processed != rows:
        raise SystemExit(f"import did not succeed: {job}")
    return Run(
        rows=rows,
        file_mb=path.stat().st_size / 1e6,
        upload_s=uploaded - started,
        total_s=finished - started,
        worker_rss_before_mb=rss_before / 1e6,
        worker_peak_rss_mb=rss.peak / 1e6,
        created=job.rows_created,
        updated=job.rows_updated,
    )


@dataclass(frozen=True)
class Measured:
    small: Run
    insert: Run
    update: Run
    baseline_insert_s: float
    baseline_update_s: float


def _measure(
    work: Path, env: dict[str, str], files: dict[str, tuple[Path, int, str]], rows: int, small: int
) -> Measured:
    """Baseline and end to end alternate (insert, then update), each side in an empty
    database of its own, so both see the same machine load as far as possible."""
    with fresh_database() as base_url, fresh_database() as url:
        base_ws = db.create_workspace(base_url, name="baseline").workspace_id
        with stack.grpc_server(url, work / "server.log", **env) as (address, _):
            worker = WorkerProcess(url, work / "worker.log", **env)
            worker.start()
            assert worker.process is not None
            pid = worker.process.pid
            try:
                time.sleep(3)  # the worker's own start-up is not the import's
                # The small file's emails are the big one's first ones: a workspace of its own.
                small_key = db.create_workspace(url, name="bench-small").key
                key = db.create_workspace(url, name="bench").key
                options = [("grpc.max_send_message_length", 8 * MESSAGE_BYTES)]
                with grpc.insecure_channel(address, options=options) as channel:
                    stub = import_service_pb2_grpc.ImportServiceStub(channel)
                    small_run = end_to_end(stub, small_key, files["small"][0], small, pid)
                    baseline_insert = baseline(base_url, base_ws, files["insert"][0])
                    insert = end_to_end(stub, key, files["insert"][0], rows, pid)
                    baseline_update = baseline(base_url, base_ws, files["update"][0])
                    update = end_to_end(stub, key, files["update"][0], rows, pid)
            finally:
                worker.stop()
    return Measured(small_run, insert, update, baseline_insert, baseline_update)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100,000 rows instead of 1,000,000")
    args = parser.parse_args()
    rows, small = (100_000, 20_000) if args.quick else (1_000_000, 100_000)
    work = BENCH_DIR / "imports"
    work.mkdir(parents=True, exist_ok=True)
    files = {
        "small": (work / f"small-{small}.csv", small, ""),
        "insert": (work / f"leads-{rows}.csv", rows, ""),
        "update": (work / f"leads-{rows}-v2.csv", rows, "+"),
    }
    for path, count, variant in files.values():
        if not path.exists():
            print(f"generating {path.name} ...", flush=True)
            generate(path, count, seed=count, variant=variant)
    env = {
        "CRM_IMPORT_MAX_BYTES": str(4 * 1024**3),
        "CRM_IMPORT_MAX_ROWS": str(10**8),
        "CRM_LOG_LEVEL": "WARNING",
        "CRM_IMPORT_BATCH_ROWS": "5000",
    }
    results: dict[str, object] = {"rows": rows, "load_before": os.getloadavg()}
    measured = _measure(work, env, files, rows, small)
    results["load_after"] = os.getloadavg()
    if (measured.insert.created, measured.update.updated) != (rows, rows):
        raise SystemExit(f"unexpected counters: {measured.insert} {measured.update}")
    small_run, insert, update = measured.small, measured.insert, measured.update
    base_insert = rows / measured.baseline_insert_s
    base_update = rows / measured.baseline_update_s
    print(f"baseline COPY+upsert: insert {base_insert:,.0f} rows/s, update {base_update:,.0f}")
    for name, run in (("small", small_run), ("insert", insert), ("update", update)):
        results[name] = {
            **asdict(run),
            "rows_per_s": run.rows_per_s,
            "upload_mb_per_s": run.upload_mb_per_s,
        }
    results["baseline_insert_rows_per_s"] = base_insert
    results["baseline_update_rows_per_s"] = base_update
    results["ratio_insert"] = ratio_insert = insert.rows_per_s / base_insert
    results["ratio_update"] = ratio_update = update.rows_per_s / base_update
    print(
        f"end to end, empty workspace: {insert.rows_per_s:,.0f} rows/s = {ratio_insert:.0%} "
        "of the baseline (target >= 50%)\n"
        f"end to end, 100% update:     {update.rows_per_s:,.0f} rows/s = {ratio_update:.0%} "
        "of the baseline (target >= 50%)\n"
        f"upload alone: {insert.upload_mb_per_s:,.0f} MB/s and {update.upload_mb_per_s:,.0f} MB/s "
        "(target >= 100 MB/s)\n"
        f"worker peak RSS: {small_run.worker_peak_rss_mb:.0f} MB at {small:,} rows, "
        f"{insert.worker_peak_rss_mb:.0f} MB at {rows:,} rows, "
        f"{update.worker_peak_rss_mb:.0f} MB updating {rows:,} (target < 300 MB, flat); "
        f"idle {small_run.worker_rss_before_mb:.0f} MB\n"
        f"machine load average before/after: {results['load_before']} / {results['load_after']}",
        flush=True,
    )
    out = REPO_OUT / f"imports-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


REPO_OUT = Path(__file__).resolve().parent / "out"

if __name__ == "__main__":
    main()
