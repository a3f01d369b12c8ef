"""Import limits and worker timings: CRM_IMPORT_* environment variables, read once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class ImportSettings:
    max_bytes: int  # an upload over this is refused while it arrives
    max_rows: int  # a file with more data rows is refused before any row is written
    batch_rows: int  # rows per committed batch (and checkpoint)
    queue: str  # the broker queue import tasks travel on
    sweep_seconds: float  # how often each worker looks for jobs a dead worker left
    requeue_seconds: float  # a QUEUED job untouched this long is enqueued again
    upload_stale_seconds: float  # an upload silent this long is given up
    max_attempts: int  # worker starts per job before it is FAILED (a crash loop ends)


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


@lru_cache(maxsize=1)
def load() -> ImportSettings:
    return ImportSettings(
        max_bytes=_int("CRM_IMPORT_MAX_BYTES", 2 * 1024**3),
        max_rows=_int("CRM_IMPORT_MAX_ROWS", 10_000_000),
        batch_rows=_int("CRM_IMPORT_BATCH_ROWS", 5000),
        queue=os.environ.get("CRM_IMPORT_QUEUE", "imports"),
        sweep_seconds=_float("CRM_IMPORT_SWEEP_SECONDS", 15.0),
        requeue_seconds=_float("CRM_IMPORT_REQUEUE_SECONDS", 60.0),
        upload_stale_seconds=_float("CRM_IMPORT_UPLOAD_STALE_SECONDS", 3600.0),
        max_attempts=_int("CRM_IMPORT_MAX_ATTEMPTS", 5),
    )
