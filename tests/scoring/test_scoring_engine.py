"""Scores as the engine computes and writes them, called in-process on the session's
database with a controlled clock (`at`): decay, caps, thresholds, segments, rebuilds."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server import ids
from server.db.engine import Database
from server.filtering.ast import Condition, Group
from server.leads import writes
from server.leads.model import LeadInput
from server.scoring import rescoring, service
from server.scoring import tasks as scoring_tasks
from server.scoring.enums import ContributionKind
from server.scoring.model import EngagementRule, FitRule, PropertyCondition, Rules, Threshold
from tests.conftest import Workspace
from tests.support import db

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ALL_PARTS = ["fit_rules", "engagement_rules", "fit_cap", "engagement_cap", "thresholds"]


def run(url: str, action: Callable[[Database], Awaitable[Any]]) -> Any:
    return db.run_with_db(url, action)


def lead(url: str, ws: Workspace, email: str, **fields: Any) -> str:
    async def create(d: Database) -> str:
        async with d.transaction() as conn:
            written = await writes.create(
                conn, workspace_id=ws.id, data=LeadInput(email=email, **fields)
            )
            assert written is not None
            return str(written.row.id)

    return str(run(url, create))


def activity(
    url: str, ws: Workspace, lead_id: str, kind: str, at: datetime, /, **properties: Any
) -> str:
    """One activity, recorded the way the activities API records it (then the lead write)."""
    activity_id = ids.new_id("act")
    db.execute(
        url,
        "INSERT INTO activities (id, workspace_id, lead_id, type, data, occurred_at) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        activity_id,
        ws.id,
        lead_id,
        kind,
        json.dumps(properties),
        at,
    )

    async def touch(d: Database) -> None:
        async with d.transaction() as conn:
            await writes.record_activity_times(conn, workspace_id=ws.id, latest={lead_id: at})

    run(url, touch)
    return activity_id


def set_model(url: str, ws: Workspace, rules: Rules) -> None:
    async def update(d: Database) -> None:
        await service.update_model(
            d, lambda _: None, workspace_id=ws.id, data=rules, paths=ALL_PARTS
        )

    run(url, update)


def rescore_at(url: str, ws: Workspace, lead_ids: list[str], at: datetime) -> None:
    async def rescore(d: Database) -> None:
        async with d.transaction() as conn:
            await rescoring.rescore(conn, workspace_id=ws.id, lead_ids=lead_ids, cause="t", at=at)

    run(url, rescore)


def score_of(url: str, lead_id: str) -> int:
    return int(db.query(url, "SELECT score FROM leads WHERE id = %s", lead_id)[0][0])


def events_of(url: str, lead_id: str, kind: str) -> list[dict[str, Any]]:
    rows = db.query(
        url,
        "SELECT payload FROM events WHERE subject_id = %s AND type = %s ORDER BY txid, id",
        lead_id,
        kind,
    )
    return [row[0] for row in rows]


CLICKS = EngagementRule(
    id="clicks",
    activity_type="email_click",
    points=10,
    conditions=(PropertyCondition("url", "contains", "/pricing"),),
    half_life_days=14.0,
    max_per_day=2,
)
CTO = FitRule(id="cto", rules=Group("AND", (Condition("title", "eq", "CTO"),)), points=30)


def test_score_is_fit_plus_decayed_engagement_and_every_point_is_explained(
    database_url: str, workspace: Workspace
) -> None:
    lead_id = lead(database_url, workspace, "cto@x.io", title="CTO")
    now = datetime.now(UTC)
    for days in (1, 10, 40):
        activity(
            database_url,
            workspace,
            lead_id,
            "email_click",
            now - timedelta(days=days),
            url="/pricing",
        )
    activity(database_url, workspace, lead_id, "email_click", now - timedelta(days=2), url="/blog")
    set_model(database_url, workspace, Rules(fit_rules=(CTO,), engagement_rules=(CLICKS,)))
    explained = run(
        database_url, lambda d: service.lead_score(d, workspace_id=workspace.id, lead_id=lead_id)
    )
    # 10 * 0.5^(1/14) = 9.52 → 10; 0.5^(10/14) → 6.09 → 6; 0.5^(40/14) → 1.38 → 1.
    engagement = sorted(c.points for c in explained.contributions if c.kind == "ENGAGEMENT")
    assert engagement == [1, 6, 10]
    assert (explained.fit, explained.engagement, explained.score) == (30, 17, 47)
    assert sum(c.points for c in explained.contributions) == explained.score
    assert score_of(database_url, lead_id) == 47


def test_max_per_day_counts_only_the_earliest_activities_of_each_utc_day(
    database_url: str, workspace: Workspace
) -> None:
    lead_id = lead(database_url, workspace, "busy@x.io")
    rule = EngagementRule(id="views", activity_type="page_view", points=5, max_per_day=2)
    set_model(database_url, workspace, Rules(engagement_rules=(rule,)))
    day = datetime(2026, 5, 1, 23, 0, tzinfo=UTC)
    for minutes in (0, 10, 20, 70, 80):  # three on May 1st, two on May 2nd (UTC)
        activity(database_url, workspace, lead_id, "page_view", day + timedelta(minutes=minutes))
    assert score_of(database_url, lead_id) == 20


def test_caps_and_the_floor_are_contributions_so_the_sum_stays_exact(
    database_url: str, workspace: Workspace
) -> None:
    capped = lead(database_url, workspace, "capped@x.io", title="CTO")
    rules = Rules(
        fit_rules=(CTO, FitRule("again", Group("AND", (Condition("title", "eq", "CTO"),)), 30)),
        engagement_rules=(EngagementRule("unsub", "unsubscribed", -50),),
        fit_cap=40,
    )
    set_model(database_url, workspace, rules)
    activity(database_url, workspace, capped, "unsubscribed", datetime.now(UTC))
    activity(database_url, workspace, capped, "score_adjusted", datetime.now(UTC), points=-100)
    explained = run(
        database_url, lambda d: service.lead_score(d, workspace_id=workspace.id, lead_id=capped)
    )
    kinds = {c.kind: c.points for c in explained.contributions if c.kind not in ("FIT",)}
    assert kinds[ContributionKind.FIT_CAP] == -20  # 60 cut to 40
    assert kinds[ContributionKind.ENGAGEMENT_CAP] == 50  # -50 raised to 0
    assert kinds[ContributionKind.ADJUSTMENT] == -100
    assert kinds[ContributionKind.FLOOR] == 60  # 40 + 0 - 100 raised to 0
    assert explained.score == 0 == sum(c.points for c in explained.contributions)


def test_crossing_up_down_up_emits_three_events_and_hysteresis_stops_flapping(
    database_url: str, workspace: Workspace
) -> None:
    lead_id = lead(database_url, workspace, "flappy@x.io")
    set_model(
        database_url,
        workspace,
        Rules(
            engagement_rules=(EngagementRule("meet", "meeting_booked", 10),),
            thresholds=(Threshold("MQL", 50, 5),),
        ),
    )
    moves = [60, -7, 2, -2, 3, -20, 30]  # 60 up; 53, 55, 53, 56 inside the band; 36 down; 66 up
    for points in moves:
        activity(
            database_url, workspace, lead_id, "score_adjusted", datetime.now(UTC), points=points
        )
    crossings = events_of(database_url, lead_id, "lead.threshold_crossed")
    assert [(c["threshold"], c["direction"], c["score"]) for c in crossings] == [
        ("MQL", "up", 60),
        ("MQL", "down", 36),
        ("MQL", "up", 66),
    ]
    changes = events_of(database_url, lead_id, "lead.score_changed")
    assert [(c["old"], c["new"]) for c in changes][:3] == [(0, 60), (60, 53), (53, 55)]


def test_rule_segment_gains_lead_when_score_crosses_50(
    database_url: str, workspace: Workspace
) -> None:
    lead_id = lead(database_url, workspace, "rising@x.io")
    db.execute(
        database_url,
        "INSERT INTO segments (id, workspace_id, name, description, membership, rules, state,"
        " member_count, created_at, updated_at) VALUES (%s, %s, 'hot', '', 'rule', %s, 'ready',"
        " 0, now(), now())",
        f"seg_hot_{workspace.id[-8:]}",
        workspace.id,
        json.dumps({"combinator": "AND", "rules": [{"field": "score", "op": "gte", "value": 50}]}),
    )
    set_model(database_url, workspace, Rules(engagement_rules=(CLICKS,)))
    for hours in (1, 2, 3, 4, 5, 6):  # 2 a day count: spread over three days
        activity(
            database_url,
            workspace,
            lead_id,
            "email_click",
            datetime.now(UTC) - timedelta(days=hours // 2, minutes=hours),
            url="/pricing",
        )
    members = db.query(
        database_url, "SELECT lead_id FROM segment_members WHERE lead_id = %s", lead_id
    )
    assert score_of(database_url, lead_id) >= 50 and members == [(lead_id,)]
    entered = events_of(database_url, lead_id, "segment.lead_entered")
    assert [e["cause"] for e in entered] == ["activity"]


def test_decay_rescores_only_leads_whose_moment_has_come_and_emits_the_down_crossing(
    database_url: str, workspace: Workspace
) -> None:
    fading = lead(database_url, workspace, "fading@x.io")
    steady = lead(database_url, workspace, "steady@x.io")
    rule = EngagementRule("webinar", "webinar_attended", 60, half_life_days=1.0)
    set_model(
        database_url,
        workspace,
        Rules(engagement_rules=(rule,), thresholds=(Threshold("MQL", 50, 5),)),
    )
    activity(database_url, workspace, fading, "webinar_attended", T0)
    rescore_at(database_url, workspace, [fading, steady], T0)
    assert score_of(database_url, fading) == 60
    due = db.query(
        database_url, "SELECT next_change_at FROM lead_scores WHERE lead_id = %s", fading
    )[0][0]
    assert T0 < due < T0 + timedelta(days=1)
    assert db.query(
        database_url, "SELECT next_change_at FROM lead_scores WHERE lead_id = %s", steady
    ) == [(None,)]

    async def tick(d: Database) -> int:
        return await scoring_tasks.tick(d, at=T0 + timedelta(days=1))

    run(database_url, tick)
    assert score_of(database_url, fading) == 30  # one half-life later
    crossings = events_of(database_url, fading, "lead.threshold_crossed")
    assert [(c["direction"], c["score"]) for c in crossings] == [("up", 60), ("down", 30)]
    run(database_url, tick)  # again at the same moment: nothing is counted twice
    assert len(events_of(database_url, fading, "lead.score_changed")) == 2


def test_a_model_change_rebuilds_every_lead_even_with_writes_meanwhile(
    database_url: str, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "SYNC_REBUILD_LIMIT", 5)
    monkeypatch.setattr(rescoring, "REBUILD_BATCH", 4)
    leads = [lead(database_url, workspace, f"r{i}@x.io", title="CTO") for i in range(12)]
    set_model(database_url, workspace, Rules(fit_rules=(CTO,)))
    state = db.query(
        database_url, "SELECT state FROM scoring_models WHERE workspace_id = %s", workspace.id
    )
    assert state == [("building",)]  # 12 leads: more than the model change rescores itself
    activity(database_url, workspace, leads[0], "score_adjusted", datetime.now(UTC), points=5)

    async def rebuild_with_a_write_between_batches(d: Database) -> None:
        async with d.transaction() as conn:
            step = await rescoring.rebuild_batch(conn, workspace_id=workspace.id)
            assert step.rescored == 4 and step.after is not None
        async with d.transaction() as conn:
            await writes.record_activity_times(
                conn, workspace_id=workspace.id, latest={leads[-1]: datetime.now(UTC)}
            )
        await scoring_tasks.rebuild(d, workspace.id)

    run(database_url, rebuild_with_a_write_between_batches)
    scores = [score_of(database_url, lead_id) for lead_id in leads]
    assert scores == [35] + [30] * 11
    assert db.query(
        database_url, "SELECT state FROM scoring_models WHERE workspace_id = %s", workspace.id
    ) == [("ready",)]


def test_without_a_model_activities_change_no_score(
    database_url: str, workspace: Workspace
) -> None:
    lead_id = lead(database_url, workspace, "manual@x.io", score=42)
    activity(database_url, workspace, lead_id, "email_click", datetime.now(UTC), url="/pricing")
    assert score_of(database_url, lead_id) == 42
    assert events_of(database_url, lead_id, "lead.score_changed") == []
