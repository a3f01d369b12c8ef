"""Writing computed scores: `rescore` recomputes a set of leads' scores from scratch (so
running it twice, or after a crash, counts nothing twice), writes the changed ones, their
thresholds and events, and keeps rule segments on `score` current — all in the caller's
transaction. The lead writes, activities, decay and model rebuilds all come through here.

Lock order: the leads first (id order), then their lead_scores rows — as every lead writer
locks the lead before anything else — so rescoring never deadlocks with a write.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, bindparam, cast, literal, or_, select, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import Label
from sqlalchemy.types import Text

from server.db.tables import scoring_models
from server.events import catalogue
from server.events import service as events
from server.events.catalogue import EventType, NewEvent
from server.scoring import engine
from server.scoring.enums import Direction
from server.scoring.model import Rules, from_json
from server.segments import membership


@dataclass(frozen=True)
class ActiveModel:
    """A workspace's model as scores are computed with it."""

    rules: Rules
    version: int
    key: str  # names its compiled statements: "workspace@version"


# Parsed models by "workspace@version": a version's rules never change once published.
_models: dict[str, ActiveModel | None] = {}
_MODEL = text("SELECT version, model::text AS model FROM scoring_models WHERE workspace_id = :ws")


async def active_model(
    conn: AsyncConnection, workspace_id: str, version: int | None = None
) -> ActiveModel | None:
    """The workspace's model, when it has one with at least one rule. `version`: the
    version the caller already read (a lead write's statement does), so a model seen
    before costs no query."""
    if version is not None and f"{workspace_id}@{version}" in _models:
        return _models[f"{workspace_id}@{version}"]
    row = (await conn.execute(_MODEL, {"ws": workspace_id})).first()
    if row is None:
        return None
    key = f"{workspace_id}@{row.version}"
    if key not in _models:
        if len(_models) > 512:  # old versions of busy models: start over
            _models.clear()
        rules = from_json(json.loads(row.model))
        _models[key] = ActiveModel(rules, row.version, key) if rules.active else None
    return _models[key]


def version_column(workspace_id: str | ColumnElement[str]) -> Label[int | None]:
    """The version of the workspace's active model (NULL when it has none), as a column
    any lead writer adds to the statement it runs anyway: no query of its own to learn
    that scores are written by clients."""
    found = select(scoring_models.c.version).where(
        scoring_models.c.workspace_id == workspace_id,
        or_(
            scoring_models.c.model["fit_rules"] != cast(literal("[]"), JSONB),
            scoring_models.c.model["engagement_rules"] != cast(literal("[]"), JSONB),
        ),
    )
    return found.scalar_subquery().label("scoring_version")


_LOCK = text(
    "SELECT id FROM leads WHERE workspace_id = :ws AND id = ANY(:lead_ids) "
    "ORDER BY id FOR NO KEY UPDATE"
).bindparams(bindparam("lead_ids", type_=ARRAY(Text)))

_APPLY_TAIL = """,
prev AS (
    SELECT l.id, l.score AS old_score, coalesce(s.above, '{}') AS old_above
    FROM leads l LEFT JOIN lead_scores s ON s.lead_id = l.id
    WHERE l.workspace_id = :ws AND l.id = ANY(:lead_ids)
),
thresholds AS (
    SELECT * FROM unnest(CAST(:t_names AS text[]), CAST(:t_scores AS int[]),
                         CAST(:t_hysteresis AS int[]))
        WITH ORDINALITY AS t(name, score, hysteresis, ord)
),
outcome AS (
    SELECT c.lead_id, c.fit, c.engagement + c.adjustments AS engagement, c.score,
           c.next_change_at, p.old_score, p.old_above,
           ARRAY(SELECT t.name FROM thresholds t
                 WHERE c.score >= t.score
                    OR (t.name = ANY(p.old_above) AND c.score >= t.score - t.hysteresis)
                 ORDER BY t.ord) AS above
    FROM computed c JOIN prev p ON p.id = c.lead_id
),
scored AS (
    UPDATE leads l SET score = o.score FROM outcome o
    WHERE l.id = o.lead_id AND l.score <> o.score
    RETURNING l.id
),
stored AS (
    INSERT INTO lead_scores AS s (lead_id, workspace_id, fit, engagement, model_version,
                                  computed_at, next_change_at, above)
    SELECT lead_id, :ws, fit, engagement, :version, :at, next_change_at, above FROM outcome
    ON CONFLICT (lead_id) DO UPDATE SET
        fit = EXCLUDED.fit, engagement = EXCLUDED.engagement,
        model_version = EXCLUDED.model_version, computed_at = EXCLUDED.computed_at,
        next_change_at = EXCLUDED.next_change_at, above = EXCLUDED.above
)
SELECT lead_id, old_score, score, old_above, above FROM outcome
WHERE old_score <> score OR old_above <> above
ORDER BY lead_id"""


async def rescore(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    lead_ids: Sequence[str],
    cause: str,
    model: ActiveModel | None = None,
    at: datetime | None = None,
    refresh: bool = True,
) -> list[str]:
    """Recompute these leads' scores at `at` (default now) under the workspace's active
    model (none: nothing happens) and write what changed: leads.score, lead_scores,
    lead.score_changed and lead.threshold_crossed events, and — unless the caller refreshes
    them itself — rule segment membership. Returns the leads whose score changed."""
    if not lead_ids:
        return []
    model = model or await active_model(conn, workspace_id)
    if model is None:
        return []
    at = at or datetime.now(UTC)
    ids = sorted(set(lead_ids))
    await conn.execute(_LOCK, {"ws": workspace_id, "lead_ids": ids})
    params = engine.parameters(model.rules, workspace_id=workspace_id, lead_ids=ids, at=at)
    thresholds = model.rules.thresholds
    params.update(
        version=model.version,
        t_names=[t.name for t in thresholds],
        t_scores=[t.score for t in thresholds],
        t_hysteresis=[t.hysteresis for t in thresholds],
    )
    statement = engine.statement(model.rules, model.key, _APPLY_TAIL)
    rows = (await conn.execute(statement, params)).all()
    names = {t.name for t in thresholds}
    new_events = [e for row in rows for e in _events(row, model.version, names)]
    await events.record(conn, workspace_id=workspace_id, events=new_events)
    changed = [row.lead_id for row in rows if row.old_score != row.score]
    if refresh and changed:
        await membership.refresh(conn, workspace_id=workspace_id, lead_ids=changed, cause=cause)
    return changed


def _events(row: Any, version: int, names: set[str]) -> list[NewEvent]:
    found: list[NewEvent] = []
    if row.old_score != row.score:
        payload = {"old": row.old_score, "new": row.score, "model_version": version}
        found.append(catalogue.new(EventType.LEAD_SCORE_CHANGED, row.lead_id, payload))
    before, after = set(row.old_above), list(row.above)
    crossings = [(name, Direction.UP) for name in after if name not in before]
    crossings += [(name, Direction.DOWN) for name in row.old_above if name in names - set(after)]
    for name, direction in crossings:
        payload = {"threshold": name, "direction": str(direction), "score": row.score}
        found.append(catalogue.new(EventType.LEAD_THRESHOLD_CROSSED, row.lead_id, payload))
    return found


# -- decay and rebuilds: bounded batches, each its own transaction ------------------------

DECAY_BATCH = 5_000
REBUILD_BATCH = 5_000

_DUE = text(
    "SELECT workspace_id, lead_id FROM lead_scores "
    "WHERE next_change_at IS NOT NULL AND next_change_at <= :at "
    "ORDER BY workspace_id, lead_id"
)


async def due_batches(
    conn: AsyncConnection, *, at: datetime, size: int = DECAY_BATCH
) -> AsyncIterator[Sequence[Any]]:
    """The leads whose score decay changes by `at` (found through lead_scores.next_change_at,
    so no lead is read before its moment), `size` at a time, from one snapshot read on
    `conn` while the caller writes each batch in a transaction of its own. In lead id order,
    not due-time order: a batch then updates neighbouring rows, where due-time order is
    random over the table and touches (and logs) a page per lead."""
    result = await conn.stream(_DUE, {"at": at})
    async for batch in result.partitions(size):
        yield batch


async def decay(conn: AsyncConnection, *, at: datetime, due: Sequence[Any]) -> int:
    """Rescore at `at` the (workspace_id, lead_id) rows of one batch from `due_batches`;
    returns how many. The caller commits."""
    by_workspace: dict[str, list[str]] = {}
    for row in due:
        by_workspace.setdefault(row.workspace_id, []).append(row.lead_id)
    for workspace_id, lead_ids in sorted(by_workspace.items()):
        model = await active_model(conn, workspace_id)
        if model is None:
            # The model lost its rules: nothing decays any more.
            await conn.execute(_NO_DECAY, {"ids": lead_ids})
            continue
        await rescore(
            conn, workspace_id=workspace_id, lead_ids=lead_ids, cause="decay", model=model, at=at
        )
    return len(due)


_NO_DECAY = text(
    "UPDATE lead_scores SET next_change_at = NULL WHERE lead_id = ANY(:ids)"
).bindparams(bindparam("ids", type_=ARRAY(Text)))

_STALE = text(
    "SELECT l.id FROM leads l LEFT JOIN lead_scores s ON s.lead_id = l.id "
    "WHERE l.workspace_id = :ws AND l.id > :after "
    "AND (s.model_version IS NULL OR s.model_version < :version) "
    "ORDER BY l.id LIMIT :limit"
)
_READY = text(
    "UPDATE scoring_models SET state = 'ready' WHERE workspace_id = :ws AND version = :version"
)


@dataclass(frozen=True)
class RebuildStep:
    rescored: int  # leads rescored by this step
    after: str | None  # where the next step starts; None: the rebuild is done


async def rebuild_batch(
    conn: AsyncConnection, *, workspace_id: str, after: str = "", limit: int | None = None
) -> RebuildStep:
    """Rescore up to `limit` leads after `after` (in id order) not yet scored with the
    current model version; when none is left, the model is READY. The caller commits and
    continues from `after`. Crash-safe: a rebuild started again from "" skips what is done
    (its progress is the lead_scores rows), and passing `after` saves reading them again."""
    model_row = (
        await conn.execute(
            text("SELECT version FROM scoring_models WHERE workspace_id = :ws"),
            {"ws": workspace_id},
        )
    ).first()
    if model_row is None:
        return RebuildStep(0, None)
    limit = limit or REBUILD_BATCH
    params = {"ws": workspace_id, "version": model_row.version, "after": after, "limit": limit}
    stale = list((await conn.scalars(_STALE, params)).all())
    model = await active_model(conn, workspace_id)
    if stale and model is not None:
        await rescore(conn, workspace_id=workspace_id, lead_ids=stale, cause="model", model=model)
    if len(stale) < limit or model is None:
        await conn.execute(_READY, {"ws": workspace_id, "version": model_row.version})
        return RebuildStep(len(stale) if model is not None else 0, None)
    return RebuildStep(len(stale), stale[-1])
