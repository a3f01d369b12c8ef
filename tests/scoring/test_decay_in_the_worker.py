"""Decay as it runs for real: `tnx-crm scheduler` (Celery beat) sends the tick to a
`tnx-crm worker` process over the broker, and crossings caused by decay appear as events
within seconds (the tick is every second here, every minute by default). A worker killed
with -9 in the middle of decay runs leaves every score right and no change counted twice."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from server.scoring.model import EngagementRule, Rules, Threshold
from tests.conftest import Workspace
from tests.scoring.test_scoring_engine import activity, lead, set_model
from tests.support import db
from tests.support.imports import WorkerProcess, wait_until

TICK = "1"
# Points halve every 2 seconds: a 60-point activity is worth nothing after ~14 s.
FAST = EngagementRule("webinar", "webinar_attended", 60, half_life_days=2 / 86400)


@pytest.fixture
def scheduler(database_url: str, work_dir: Path) -> Iterator[WorkerProcess]:
    beat = WorkerProcess(
        database_url,
        work_dir / "scheduler.log",
        command="scheduler",
        CRM_SCORING_TICK_SECONDS=TICK,
        CRM_DATA_DIR=str(work_dir / "scheduler"),
    )
    beat.start()
    try:
        yield beat
    finally:
        beat.stop()


def _worker(database_url: str, work_dir: Path) -> WorkerProcess:
    return WorkerProcess(
        database_url, work_dir / "scoring-worker.log", CRM_SCORING_TICK_SECONDS=TICK
    )


def _payloads(url: str, workspace_id: str, kind: str) -> list[tuple[str, dict[str, Any]]]:
    rows = db.query(
        url,
        "SELECT subject_id, payload FROM events WHERE workspace_id = %s AND type = %s "
        "ORDER BY txid, id",
        workspace_id,
        kind,
    )
    return [(row[0], row[1]) for row in rows]


def test_a_crossing_caused_by_decay_is_an_event_within_seconds(
    database_url: str, work_dir: Path, workspace: Workspace, scheduler: WorkerProcess
) -> None:
    worker = _worker(database_url, work_dir)
    worker.start()
    try:
        set_model(
            database_url,
            workspace,
            Rules(engagement_rules=(FAST,), thresholds=(Threshold("MQL", 50, 5),)),
        )
        lead_id = lead(database_url, workspace, "fading@x.io")
        activity(database_url, workspace, lead_id, "webinar_attended", datetime.now(UTC))
        started = time.monotonic()

        def crossed_down() -> bool:
            crossings = _payloads(database_url, workspace.id, "lead.threshold_crossed")
            return [c["direction"] for _, c in crossings] == ["up", "down"]

        wait_until(crossed_down, timeout=30)
        # 60 falls under 45 (50 - hysteresis) after ~0.85 s; with a 1 s tick, well within 10 s.
        assert time.monotonic() - started < 10
        wait_until(lambda: _score(database_url, lead_id) == 0, timeout=30)
    finally:
        worker.stop()


def _score(url: str, lead_id: str) -> int:
    return int(db.query(url, "SELECT score FROM leads WHERE id = %s", lead_id)[0][0])


def test_killing_the_worker_during_decay_counts_nothing_twice(
    database_url: str, work_dir: Path, workspace: Workspace, scheduler: WorkerProcess
) -> None:
    set_model(database_url, workspace, Rules(engagement_rules=(FAST,)))
    leads = [lead(database_url, workspace, f"d{i}@x.io") for i in range(60)]
    for lead_id in leads:
        activity(database_url, workspace, lead_id, "webinar_attended", datetime.now(UTC))
    worker = _worker(database_url, work_dir)
    worker.start()
    time.sleep(2.5)  # a few ticks in: decay runs are under way
    worker.kill()
    worker.start()
    try:
        wait_until(lambda: all(_score(database_url, lead_id) == 0 for lead_id in leads), 60)
    finally:
        worker.stop()
    changes = _payloads(database_url, workspace.id, "lead.score_changed")
    for lead_id in leads:
        chain = [(p["old"], p["new"]) for subject, p in changes if subject == lead_id]
        # Each change starts where the one before ended, and the score only ever fell after
        # its first computation: a change applied twice would break the chain.
        assert chain[0][0] == 0 and chain[-1][1] == 0, chain
        assert all(a[1] == b[0] for a, b in itertools.pairwise(chain)), chain
        assert all(new < old for old, new in chain[1:]), chain
