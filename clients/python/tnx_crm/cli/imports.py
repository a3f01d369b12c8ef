"""`tnx-crm imports upload|get|list|errors|cancel`: bulk imports of leads."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tnx.crm.v1 import import_pb2

from tnx_crm._common import enum_name
from tnx_crm._requests import TERMINAL
from tnx_crm.cli._base import (
    FAILURE,
    OK,
    PARTIAL,
    Column,
    Subparsers,
    group,
    leaf,
    show,
    show_all,
)
from tnx_crm.client import Client

Job = import_pb2.ImportJob
COLUMNS: list[Column] = [
    ("ID", 30, lambda job: job.id),
    ("STATUS", 9, lambda job: enum_name(job, "status")),
    ("ROWS", 9, lambda job: job.rows_processed),
    ("CREATED", 9, lambda job: job.rows_created),
    ("UPDATED", 9, lambda job: job.rows_updated),
    ("SKIPPED", 9, lambda job: job.rows_skipped),
    ("FAILED", 9, lambda job: job.rows_failed),
    ("ERROR", 0, lambda job: job.error),
]
ERROR_COLUMNS: list[Column] = [
    ("ROW", 8, lambda e: e.row),
    ("COLUMN", 20, lambda e: e.column),
    ("VALUE", 30, lambda e: e.value),
    ("REASON", 0, lambda e: e.reason),
]


def add_commands(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    imports = group(commands, "imports", "bulk import leads")

    upload = leaf(
        imports, "upload", "upload a CSV, JSON or NDJSON file of leads", common, cmd_upload
    )
    upload.add_argument("file", type=Path)
    upload.add_argument("--format", choices=["CSV", "JSON", "NDJSON"], help="default: by suffix")
    upload.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="HEADER=FIELD",
        help="map a column to a lead field, custom.<key> or skip (repeatable)",
    )
    upload.add_argument(
        "--mode", choices=["UPSERT", "CREATE_ONLY", "UPDATE_ONLY"], default="UPSERT"
    )
    upload.add_argument("--segment", action="append", default=[], help="static segment id")
    upload.add_argument("--source", default="", help="source of leads whose row has none")
    upload.add_argument("--encoding", default="", help="default: detected")
    upload.add_argument("--request-id", default="", help="default: a new one")
    upload.add_argument("--watch", action="store_true", help="show progress until it ends")

    get = leaf(imports, "get", "show an import job", common, cmd_get)
    get.add_argument("id")
    get.add_argument("--watch", action="store_true", help="show progress until it ends")

    listing = leaf(imports, "list", "list import jobs, newest first", common, cmd_list)
    listing.add_argument("--limit", type=int, help="stop after this many (default: all)")

    errors = leaf(imports, "errors", "the rows an import could not take", common, cmd_errors)
    errors.add_argument("id")
    errors.add_argument("--limit", type=int, help="stop after this many (default: all)")
    errors.add_argument(
        "--download", type=Path, metavar="FILE", help="write the failed rows as CSV instead"
    )

    cancel = leaf(imports, "cancel", "stop an import at its next batch", common, cmd_cancel)
    cancel.add_argument("id")


def progress(job: import_pb2.ImportJob) -> str:
    status = enum_name(job, "status")
    total = f"/{job.rows_total}" if job.rows_total else ""
    percent = f" {100 * job.rows_processed / job.rows_total:5.1f}%" if job.rows_total else ""
    return (
        f"{job.id} {status:<9}{percent} rows {job.rows_processed}{total}: "
        f"{job.rows_created} created, {job.rows_updated} updated, {job.rows_skipped} skipped, "
        f"{job.rows_failed} failed" + (f" — {job.error}" if job.error else "")
    )


def outcome(job: import_pb2.ImportJob) -> int:
    """0 for a clean import, 4 when it finished with failed rows, 1 when it failed or was
    cancelled; 0 while it still runs."""
    if job.status == Job.SUCCEEDED:
        return PARTIAL if job.rows_failed else OK
    return FAILURE if job.status in TERMINAL else OK


def _upload_meter() -> Callable[[int, int], None] | None:
    """A progress line on stderr while uploading, only on a terminal."""
    if not sys.stderr.isatty():
        return None

    def meter(sent: int, total: int) -> None:
        share = f"{100 * sent / total:5.1f}%" if total else ""
        print(f"\ruploading {sent} bytes {share}", end="", file=sys.stderr, flush=True)

    return meter


def cmd_upload(client: Client, args: argparse.Namespace) -> int:
    started = time.monotonic()
    job = client.imports.upload(
        args.file,
        format=args.format,
        mapping=args.map,
        mode=args.mode,
        segment_ids=args.segment,
        default_source=args.source,
        request_id=args.request_id or None,
        encoding=args.encoding,
        progress=_upload_meter(),
    )
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if args.json:
        show(args, job)
    else:
        took = time.monotonic() - started
        print(f"uploaded {job.size_bytes} bytes in {took:.1f}s: {progress(job)}", flush=True)
    return _watch(client, args, job) if args.watch else OK


def _show_job(args: argparse.Namespace, job: import_pb2.ImportJob) -> None:
    if args.json:
        show(args, job)
    else:
        print(progress(job), flush=True)


def _watch(client: Client, args: argparse.Namespace, job: import_pb2.ImportJob) -> int:
    last, shown = job, 0.0
    for state in client.imports.watch(job.id):
        # At most a line a second, every change of status, and the end.
        changed = state.status != last.status or state.status in TERMINAL
        if changed or time.monotonic() - shown >= 1.0:
            _show_job(args, state)
            shown = time.monotonic()
        last = state
    return outcome(last)


def cmd_get(client: Client, args: argparse.Namespace) -> int:
    job = client.imports.get(args.id)
    _show_job(args, job)
    return _watch(client, args, job) if args.watch and job.status not in TERMINAL else OK


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    page_size = min(args.limit, 1000) if args.limit else None
    return show_all(args, client.imports.list(page_size=page_size), COLUMNS)


def cmd_errors(client: Client, args: argparse.Namespace) -> int:
    if args.download is not None:
        written = client.imports.download_errors(args.id, args.download)
        print(f"wrote {written} bytes to {args.download}", file=sys.stderr)
        return OK
    page_size = min(args.limit, 1000) if args.limit else None
    return show_all(args, client.imports.errors(args.id, page_size=page_size), ERROR_COLUMNS)


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    _show_job(args, client.imports.cancel(args.id))
    return OK
