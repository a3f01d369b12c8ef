"""A batch run survives its worker: the worker is killed with SIGKILL in the middle of a
batch, another worker carries the run on from its last committed batch, and every lead is
enriched exactly once, with no lookup paid for more than twice (once by the dead worker,
whose answer never reached the cache, once by its successor).

This module starts its own workers; no other worker of the session runs meanwhile (the
other modules' workers are module-scoped), so the killed worker is the one holding the run.

A killed worker's broker message is not delivered again, and the sweeper in every worker
queues unfinished runs again only once they are a minute old (server/enrichment/tasks.py,
checked every 30 s): too slow for a test. The test sends the run's task again itself, as
the sweeper would, on the session's queue (conftest.send_run)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from server.enrichment import runner
from tests.conftest import Workspace
from tests.enrichment.conftest import (
    Enrichment,
    Leads,
    Run,
    batch,
    create_connector,
    get_connector,
    get_run,
    new_leads,
    person_connector,
    send_run,
    start_worker,
    wait_run,
)
from tests.enrichment.fake_provider import Fault, Provider, person
from tests.support import db
from tests.support.imports import wait_until

LEADS = 300  # three committed batches of runner.BATCH
# Each lookup takes a tenth of a second, 32 at a time: a batch of 100 takes about 0.4 s,
# long enough to kill the worker with the second batch's lookups half done.
DELAY = 0.1
KILL_AT_CALLS = runner.BATCH + 50


def test_a_worker_killed_mid_batch_leaves_every_lead_enriched_exactly_once(
    enrichment: Enrichment,
    leads: Leads,
    database_url: str,
    work_dir: Path,
    workspace: Workspace,
    provider: Provider,
) -> None:
    first = start_worker(database_url, work_dir, "crash-first")
    second = None
    try:
        emails = [f"person{n:03d}@acme.io" for n in range(LEADS)]
        for n, email in enumerate(emails):
            provider.add(email, person(f"First{n}", f"Last{n}"))
        provider.fault = Fault(delay=DELAY)
        connector = create_connector(enrichment, workspace, person_connector(provider))
        made = new_leads(leads, workspace, emails, source="crash")

        queued = batch(enrichment, workspace, connector.id, filter='source = "crash"')
        run = queued
        # The run's progress shows while it runs: the first batch committed...
        wait_until(lambda: get_run(enrichment, workspace, queued.id).processed >= runner.BATCH, 60)
        # ... and the second half looked up when the worker dies.
        wait_until(lambda: len(provider.calls()) >= KILL_AT_CALLS, 10, interval=0.002)
        first.kill()
        time.sleep(0.5)  # a request already on its way is recorded before the snapshot
        paid_by_the_dead = len(provider.calls()) - runner.BATCH
        run = get_run(enrichment, workspace, queued.id)
        assert run.state == Run.RUNNING and run.total == LEADS, run
        assert run.processed == runner.BATCH, run  # batch 2 was cut short, uncommitted
        # The dead worker may have been writing batch 2 while looking batch 3 up.
        assert 0 < paid_by_the_dead < 2 * runner.BATCH

        second = start_worker(database_url, work_dir, "crash-second")
        send_run(database_url, queued.id)  # what the sweeper would do a minute later
        run = wait_run(enrichment, workspace, queued.id, timeout=90)
    finally:
        first.stop()
        if second is not None:
            second.stop()

    assert run.state == Run.SUCCEEDED, run
    assert (run.total, run.processed, run.changed, run.error_count) == (LEADS, LEADS, LEADS, 0)

    # Every lead enriched, and exactly once.
    stored = db.query(
        database_url,
        "SELECT l.id, l.first_name, (SELECT count(*) FROM events e WHERE e.workspace_id = "
        "l.workspace_id AND e.subject_id = l.id AND e.type = 'lead.enriched') "
        "FROM leads l WHERE l.workspace_id = %s",
        workspace.id,
    )
    assert len(stored) == LEADS == len(made)
    assert all(first_name.startswith("First") for _, first_name, _ in stored)
    assert Counter(count for _, _, count in stored) == {1: LEADS}

    # Each lookup counted once on the run: paid for, or answered by the cache the dead
    # worker filled.
    assert run.provider_calls + run.cache_hits == LEADS, run
    calls = provider.count()
    assert set(calls) == set(emails) and max(calls.values()) <= 2
    twice = sum(1 for count in calls.values() if count == 2)
    # Each lookup the dead worker paid for is now a cache hit or (its answer lost) paid again.
    assert run.cache_hits + twice == paid_by_the_dead, (run, twice, paid_by_the_dead)
    assert run.provider_calls == sum(calls.values()) - paid_by_the_dead
    # The budget counts every call the provider was sent, the dead worker's too (and at most
    # the calls it had taken from the budget but not yet sent when it died).
    spent = get_connector(enrichment, workspace, connector.id).calls_this_month
    assert sum(calls.values()) <= spent <= sum(calls.values()) + runner.CONCURRENCY
