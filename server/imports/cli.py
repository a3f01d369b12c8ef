"""`tnx-crm imports upload FILE [--watch]`: stream a file to ImportService over gRPC and
show the job's progress until it ends."""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
from google.api import httpbody_pb2
from tnx.crm.v1 import import_pb2, import_service_pb2, import_service_pb2_grpc

from server.config import Settings
from server.imports.enums import FileFormat, Mode

READ_BYTES = 1024 * 1024
_FORMATS = {
    ".csv": FileFormat.CSV,
    ".tsv": FileFormat.CSV,
    ".txt": FileFormat.CSV,
    ".json": FileFormat.JSON,
    ".ndjson": FileFormat.NDJSON,
    ".jsonl": FileFormat.NDJSON,
}
Job = import_pb2.ImportJob


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    imports = commands.add_parser("imports", help="bulk import leads").add_subparsers(
        dest="action", required=True
    )
    upload = imports.add_parser("upload", help="upload a CSV, JSON or NDJSON file of leads")
    upload.add_argument("file", type=Path)
    # Choices as plain strings: argparse shows them with repr() when one is refused.
    formats = [f.value for f in FileFormat]
    upload.add_argument("--format", choices=formats, help="default: by suffix")
    upload.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="HEADER=FIELD",
        help="map a column to a lead field, custom.<key> or skip (repeatable)",
    )
    upload.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.UPSERT.value)
    upload.add_argument("--segment", action="append", default=[], help="static segment id")
    upload.add_argument("--source", default="", help="source of leads whose row has none")
    upload.add_argument("--encoding", default="", help="default: detected")
    upload.add_argument("--request-id", default="", help="default: a new one")
    upload.add_argument("--watch", action="store_true", help="show progress until it ends")
    upload.add_argument("--server", default="", help="gRPC address (default CRM_GRPC_HOST:PORT)")
    upload.add_argument("--key", default="", help="API key (default $CRM_API_KEY)")
    upload.set_defaults(run=cmd_upload)


def _requests(args: argparse.Namespace) -> Iterator[import_service_pb2.UploadImportRequest]:
    file_format = args.format or _FORMATS.get(args.file.suffix.lower(), FileFormat.CSV)
    yield import_service_pb2.UploadImportRequest(
        format=Job.Format.Value(file_format),
        mapping=args.map,
        mode=Job.Mode.Value(args.mode),
        segment_ids=args.segment,
        default_source=args.source,
        request_id=args.request_id or uuid.uuid4().hex,
        declared_size=args.file.stat().st_size,
        encoding=args.encoding,
    )
    with args.file.open("rb") as source:
        while block := source.read(READ_BYTES):
            yield import_service_pb2.UploadImportRequest(file=httpbody_pb2.HttpBody(data=block))


def progress(job: import_pb2.ImportJob) -> str:
    status = Job.Status.Name(job.status)
    total = f"/{job.rows_total}" if job.rows_total else ""
    percent = f" {100 * job.rows_processed / job.rows_total:5.1f}%" if job.rows_total else ""
    return (
        f"{job.id} {status:<9}{percent} rows {job.rows_processed}{total}: "
        f"{job.rows_created} created, {job.rows_updated} updated, {job.rows_skipped} skipped, "
        f"{job.rows_failed} failed" + (f" — {job.error}" if job.error else "")
    )


def cmd_upload(settings: Settings, args: argparse.Namespace) -> int:
    key = args.key or os.environ.get("CRM_API_KEY", "")
    if not key:
        print("error: pass --key or set CRM_API_KEY", file=sys.stderr)
        return 2
    address = args.server or f"{settings.grpc_host}:{settings.grpc_port}"
    metadata = (("authorization", f"Bearer {key}"),)
    with grpc.insecure_channel(address) as channel:
        stub = import_service_pb2_grpc.ImportServiceStub(channel)
        started = time.monotonic()
        try:
            job = stub.UploadImport(_requests(args), metadata=metadata)
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
            return 1
        took = time.monotonic() - started
        print(f"uploaded {job.size_bytes} bytes in {took:.1f}s: {progress(job)}", flush=True)
        if not args.watch:
            return 0
        request = import_service_pb2.WatchImportRequest(id=job.id)
        shown, status = 0.0, job.status
        for job in stub.WatchImport(request, metadata=metadata):
            # At most a line a second, and every change of status.
            if job.status != status or time.monotonic() - shown >= 1.0:
                print(progress(job), flush=True)
                shown, status = time.monotonic(), job.status
    return 0 if job.status == Job.SUCCEEDED else 1
