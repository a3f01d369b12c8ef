"""Scoring: the workspace's model and each lead's explained score.

The arithmetic is in docs/SCORING.md and server/scoring/engine.py; writing scores in
server/scoring/rescoring.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from server.db.engine import Database
from server.errors import InvalidArgument, NotFound
from server.scoring import engine, rescoring, validation
from server.scoring.enums import ContributionKind, ModelState
from server.scoring.model import (
    Contribution,
    LeadScore,
    Rules,
    ScoringModel,
    from_json,
    to_json,
)

# Schedules the background rescore of a workspace after a model change (the worker's task).
Rebuild = Callable[[str], None]
PARTS = ("fit_rules", "engagement_rules", "fit_cap", "engagement_cap", "thresholds")
# A model change rescores this many leads in its own transaction; more go to the worker.
SYNC_REBUILD_LIMIT = 1_000

_GET = text("SELECT version, state, model, updated_at FROM scoring_models WHERE workspace_id = :ws")
_LOCK = text("SELECT version, model FROM scoring_models WHERE workspace_id = :ws FOR UPDATE")
_PUBLISH = text(
    """
    INSERT INTO scoring_models (workspace_id, version, state, model, updated_at)
    VALUES (:ws, :version, 'building', CAST(:model AS jsonb), clock_timestamp())
    ON CONFLICT (workspace_id) DO UPDATE SET version = EXCLUDED.version, state = 'building',
        model = EXCLUDED.model, updated_at = EXCLUDED.updated_at
    """
)


async def _read_model(conn: AsyncConnection, workspace_id: str) -> ScoringModel:
    row = (await conn.execute(_GET, {"ws": workspace_id})).first()
    if row is None:
        return ScoringModel()
    return ScoringModel(
        rules=from_json(row.model),
        version=row.version,
        state=ModelState(row.state),
        updated_at=row.updated_at,
    )


async def get_model(db: Database, *, workspace_id: str) -> ScoringModel:
    async with db.transaction() as conn:
        return await _read_model(conn, workspace_id)


async def update_model(
    db: Database, rebuild: Rebuild, *, workspace_id: str, data: Rules, paths: Sequence[str]
) -> ScoringModel:
    """Set the parts of the model named by `paths`; validates the result and publishes
    version + 1. Every lead is rescored with it: here for a small workspace, else by the
    worker (state BUILDING until done), while writes meanwhile use the new version."""
    unknown = [path for path in paths if path not in PARTS]
    if unknown:
        raise InvalidArgument.on(
            "update_mask", f"unknown model part {unknown[0]!r}", reason="UPDATE_MASK_INVALID"
        )
    async with db.transaction() as conn:
        current = (await conn.execute(_LOCK, {"ws": workspace_id})).first()
        rules = from_json(current.model) if current is not None else Rules()
        merged = validation.validate(replace(rules, **{p: getattr(data, p) for p in paths}))
        version = (current.version if current is not None else 0) + 1
        document = json.dumps(to_json(merged))
        await conn.execute(_PUBLISH, {"ws": workspace_id, "version": version, "model": document})
        done = await _rebuild_now(conn, workspace_id)
        model = await _read_model(conn, workspace_id)
    if not done:
        rebuild(workspace_id)
    return model


async def _rebuild_now(conn: AsyncConnection, workspace_id: str) -> bool:
    """Rescore a small workspace in the model change's own transaction."""
    count = await conn.scalar(
        text("SELECT count(*) FROM (SELECT 1 FROM leads WHERE workspace_id = :ws LIMIT :cap) l"),
        {"ws": workspace_id, "cap": SYNC_REBUILD_LIMIT + 1},
    )
    if (count or 0) > SYNC_REBUILD_LIMIT:
        return False
    await rescoring.rebuild_batch(conn, workspace_id=workspace_id, limit=SYNC_REBUILD_LIMIT + 1)
    return True


_STORED = text(
    "SELECT l.id, l.score, s.fit, s.engagement, s.model_version, s.computed_at, s.above "
    "FROM leads l LEFT JOIN lead_scores s ON s.lead_id = l.id "
    "WHERE l.workspace_id = :ws AND l.id = :lead_id"
)


async def lead_score(db: Database, *, workspace_id: str, lead_id: str) -> LeadScore:
    """The lead's score with every point explained, as of when it was computed (or, when it
    is not yet scored with the current model version, as of now)."""
    async with db.transaction() as conn:
        stored = (await conn.execute(_STORED, {"ws": workspace_id, "lead_id": lead_id})).first()
        if stored is None:
            raise NotFound.resource("lead", lead_id)
        model = await rescoring.active_model(conn, workspace_id)
        if model is None:
            # A score written by clients: nothing to explain.
            return LeadScore(lead_id, stored.score, 0, 0, 0, None, [], [])
        current = stored.model_version == model.version and stored.computed_at is not None
        at = stored.computed_at if current else datetime.now(UTC)
        rules, key = model.rules, model.key
        [totals] = await engine.scores(
            conn, rules, key, workspace_id=workspace_id, lead_ids=[lead_id], at=at
        )
        rows = await engine.breakdown(
            conn, rules, key, workspace_id=workspace_id, lead_id=lead_id, at=at
        )
    contributions = [Contribution(kind, p, rule, act, was) for kind, rule, act, p, was in rows]
    above = set(stored.above or [])
    for kind, points in (
        (ContributionKind.FIT_CAP, totals.fit - totals.fit_raw),
        (ContributionKind.ENGAGEMENT_CAP, totals.engagement - totals.engagement_raw),
        (
            ContributionKind.FLOOR,
            totals.score - (totals.fit + totals.engagement + totals.adjustments),
        ),
    ):
        if points:
            contributions.append(Contribution(kind, points))
    return LeadScore(
        lead_id=lead_id,
        score=totals.score,
        fit=totals.fit,
        engagement=totals.engagement + totals.adjustments,
        model_version=model.version,
        computed_at=at,
        contributions=contributions,
        thresholds=[(t.name, t.name in above) for t in model.rules.thresholds],
    )
