"""Scores computed set-based in SQL, exactly as docs/SCORING.md defines them.

One statement builder (`_contributions`) yields every point of the score of a set of leads
at a moment T, as rows: fit rules that match, activities counted under engagement rules
(decayed, rounded, ranked per day), score adjustments, and for each row when decay next
changes it. Scores (`scores`), the breakdown of one lead (`breakdown`) and the write of new
scores (`apply`) all read those rows, so the three cannot disagree.

Engagement rules and their conditions travel as array parameters and are evaluated by one
fixed piece of SQL; fit rules are rule trees compiled to SQL (the segments' compiler),
cached per model version.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Float, Integer, Text

from server.db.engine import AnyRow
from server.scoring.enums import SCORE_ADJUSTED, ContributionKind
from server.scoring.model import Rules
from server.segments import membership

# Decay moments are pushed a second past the exact instant a rounded value drops, so the
# recomputation at that moment sees the lower value rather than the boundary.
_AFTER_BOUNDARY_S = 1.0


def horizon_days(points: int, half_life_days: float) -> float:
    """How old an activity can be and still round to a non-zero share of `points`."""
    if half_life_days <= 0:
        return math.inf
    return half_life_days * math.log2(2 * abs(points))


_ENGAGEMENT = """
rules AS (
    SELECT * FROM unnest(
        CAST(:r_ids AS text[]), CAST(:r_types AS text[]), CAST(:r_points AS int[]),
        CAST(:r_half_lives AS float8[]), CAST(:r_max AS int[]), CAST(:r_horizons AS float8[])
    ) AS r(rule_id, activity_type, points, half_life, max_per_day, horizon)
),
conditions AS (
    SELECT * FROM unnest(
        CAST(:c_rules AS text[]), CAST(:c_props AS text[]), CAST(:c_ops AS text[]),
        CAST(:c_values AS jsonb[])
    ) AS c(rule_id, prop, op, val)
),
matched AS (
    SELECT a.lead_id, a.id, a.occurred_at, r.rule_id, r.points, r.half_life, r.max_per_day
    FROM rules r
    JOIN activities a ON a.type = r.activity_type
    WHERE a.workspace_id = :ws AND a.lead_id = ANY(:lead_ids) AND a.occurred_at <= :at
      -- Whole UTC days from the one where the oldest non-zero activity can fall: ranks
      -- per day stay exact, and older activities (worth 0 points) are never read.
      AND a.occurred_at >= CASE WHEN r.horizon = 'Infinity'::float8 THEN '-infinity'::timestamptz
          ELSE date_trunc('day', (:at - make_interval(secs => r.horizon * 86400))
                          AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' END
      AND NOT EXISTS (
        SELECT 1 FROM conditions c WHERE c.rule_id = r.rule_id AND NOT coalesce(CASE c.op
            WHEN 'exists' THEN a.data ? c.prop AND a.data -> c.prop <> 'null'::jsonb
            WHEN 'eq' THEN a.data -> c.prop = c.val
            WHEN 'neq' THEN a.data -> c.prop IS DISTINCT FROM c.val
            WHEN 'contains' THEN CASE WHEN jsonb_typeof(a.data -> c.prop) = 'string'
                THEN strpos(a.data ->> c.prop, c.val #>> '{}') > 0 ELSE false END
            ELSE CASE WHEN jsonb_typeof(a.data -> c.prop) = 'number' THEN CASE c.op
                WHEN 'gt' THEN (a.data ->> c.prop)::numeric > (c.val #>> '{}')::numeric
                WHEN 'gte' THEN (a.data ->> c.prop)::numeric >= (c.val #>> '{}')::numeric
                WHEN 'lt' THEN (a.data ->> c.prop)::numeric < (c.val #>> '{}')::numeric
                WHEN 'lte' THEN (a.data ->> c.prop)::numeric <= (c.val #>> '{}')::numeric
                END ELSE false END
        END, false))
),
ranked AS (
    SELECT m.*, row_number() OVER (
        PARTITION BY m.lead_id, m.rule_id, date_trunc('day', m.occurred_at AT TIME ZONE 'UTC')
        ORDER BY m.occurred_at, m.id) AS nth
    FROM matched m
),
decayed AS (
    SELECT lead_id, id, occurred_at, rule_id, points, half_life,
           CASE WHEN half_life > 0
                THEN points * power(0.5::float8,
                     extract(epoch FROM (:at - occurred_at))::float8 / 86400.0 / half_life)
                ELSE points::float8 END AS value
    FROM ranked WHERE max_per_day = 0 OR nth <= max_per_day
),
engagement AS (
    SELECT d.*, (sign(d.value) * floor(abs(d.value) + 0.5))::int AS now_points FROM decayed d
)"""

_ROWS = """
fit AS ({fit}),
adjustments AS (
    SELECT a.lead_id, a.id, CASE WHEN jsonb_typeof(a.data -> 'points') = 'number'
                                 THEN (a.data ->> 'points')::numeric::int ELSE 0 END AS points
    FROM activities a
    WHERE a.workspace_id = :ws AND a.lead_id = ANY(:lead_ids) AND a.type = :adjusted
      AND a.occurred_at <= :at
),
contributions AS (
    SELECT lead_id, 'FIT' AS kind, rule_id, '' AS activity_id, points, 0 AS decayed_from,
           NULL::timestamptz AS next_change_at
    FROM fit
    UNION ALL
    SELECT lead_id, 'ENGAGEMENT', rule_id, id, now_points, points,
           CASE WHEN half_life > 0 THEN occurred_at + make_interval(secs =>
                half_life * 86400 * ln(abs(points)::float8 / (abs(now_points) - 0.5)) / ln(2)
                + {after_boundary}) END
    FROM engagement WHERE now_points <> 0
    UNION ALL
    SELECT lead_id, 'ADJUSTMENT', '', id, points, 0, NULL FROM adjustments
),
totals AS (
    SELECT l.id AS lead_id,
           coalesce(sum(c.points) FILTER (WHERE c.kind = 'FIT'), 0)::int AS fit_raw,
           coalesce(sum(c.points) FILTER (WHERE c.kind = 'ENGAGEMENT'), 0)::int AS engagement_raw,
           coalesce(sum(c.points) FILTER (WHERE c.kind = 'ADJUSTMENT'), 0)::int AS adjustments,
           min(c.next_change_at) AS next_change_at
    FROM leads l LEFT JOIN contributions c ON c.lead_id = l.id
    WHERE l.workspace_id = :ws AND l.id = ANY(:lead_ids)
    GROUP BY l.id
),
capped AS (
    SELECT t.*,
           greatest(0, CASE WHEN :fit_cap > 0 THEN least(t.fit_raw, :fit_cap)
                            ELSE t.fit_raw END) AS fit,
           greatest(0, CASE WHEN :engagement_cap > 0 THEN least(t.engagement_raw, :engagement_cap)
                            ELSE t.engagement_raw END) AS engagement
    FROM totals t
),
computed AS (
    SELECT c.*, greatest(0, c.fit + c.engagement + c.adjustments) AS score FROM capped c
)"""

_NO_FIT = "SELECT NULL::text AS lead_id, NULL::text AS rule_id, NULL::int AS points WHERE false"


def _fit_sql(model: Rules) -> str:
    """Each fit rule that matches a lead, as (lead_id, rule_id, points) rows."""
    if not model.fit_rules:
        return _NO_FIT
    values = ", ".join(
        f"(:f_id_{i}, CASE WHEN ({membership.rule_sql(rule.rules, label='fit_rules')}) "
        f"THEN {int(rule.points)} END)"
        for i, rule in enumerate(model.fit_rules)
    )
    return (
        "SELECT leads.id AS lead_id, f.rule_id, f.points FROM leads "
        "LEFT JOIN companies ON companies.workspace_id = leads.workspace_id "
        "AND companies.id = leads.company_id "
        f"CROSS JOIN LATERAL (VALUES {values}) AS f(rule_id, points) "
        "WHERE leads.workspace_id = :ws AND leads.id = ANY(:lead_ids) AND f.points IS NOT NULL"
    )


_statements: dict[tuple[str, str], TextClause] = {}


def statement(model: Rules, key: str, tail: str) -> TextClause:
    """The WITH … of a model's contributions followed by `tail`; cached per model `key`
    (its version) and tail, since compiling the fit rules costs more than running them."""
    cached = _statements.get((key, tail))
    if cached is None:
        rows = _ROWS.format(fit=_fit_sql(model), after_boundary=_AFTER_BOUNDARY_S)
        cached = text(f"WITH {_ENGAGEMENT},\n{rows}\n{tail}").bindparams(
            bindparam("lead_ids", type_=ARRAY(Text)),
            bindparam("r_ids", type_=ARRAY(Text)),
            bindparam("r_types", type_=ARRAY(Text)),
            bindparam("r_points", type_=ARRAY(Integer)),
            bindparam("r_half_lives", type_=ARRAY(Float)),
            bindparam("r_max", type_=ARRAY(Integer)),
            bindparam("r_horizons", type_=ARRAY(Float)),
            bindparam("c_rules", type_=ARRAY(Text)),
            bindparam("c_props", type_=ARRAY(Text)),
            bindparam("c_ops", type_=ARRAY(Text)),
            bindparam("c_values", type_=ARRAY(JSONB)),
        )
        if len(_statements) > 256:  # old versions of busy models: start over
            _statements.clear()
        _statements[(key, tail)] = cached
    return cached


def parameters(
    model: Rules, *, workspace_id: str, lead_ids: Sequence[str], at: datetime
) -> dict[str, Any]:
    rules = model.engagement_rules
    conditions = [(rule.id, c) for rule in rules for c in rule.conditions]
    params: dict[str, Any] = {
        "ws": workspace_id,
        "lead_ids": list(lead_ids),
        "at": at,
        "adjusted": SCORE_ADJUSTED,
        "fit_cap": model.fit_cap,
        "engagement_cap": model.engagement_cap,
        "r_ids": [r.id for r in rules],
        "r_types": [r.activity_type for r in rules],
        "r_points": [r.points for r in rules],
        "r_half_lives": [float(r.half_life_days) for r in rules],
        "r_max": [r.max_per_day for r in rules],
        "r_horizons": [horizon_days(r.points, r.half_life_days) for r in rules],
        "c_rules": [rule_id for rule_id, _ in conditions],
        "c_props": [c.property for _, c in conditions],
        "c_ops": [c.op for _, c in conditions],
        "c_values": [c.value for _, c in conditions],
    }
    for i, rule in enumerate(model.fit_rules):
        params[f"f_id_{i}"] = rule.id
    return params


@dataclass(frozen=True)
class Totals:
    lead_id: str
    fit_raw: int
    engagement_raw: int
    adjustments: int
    fit: int
    engagement: int
    score: int
    next_change_at: datetime | None


_TOTALS_TAIL = "SELECT * FROM computed ORDER BY lead_id"
_ROWS_TAIL = (
    "SELECT kind, rule_id, activity_id, points, decayed_from FROM contributions "
    "ORDER BY kind, rule_id, activity_id"
)


async def scores(
    conn: AsyncConnection,
    model: Rules,
    key: str,
    *,
    workspace_id: str,
    lead_ids: Sequence[str],
    at: datetime,
) -> list[Totals]:
    """The scores of these leads at `at`, with their parts."""
    params = parameters(model, workspace_id=workspace_id, lead_ids=lead_ids, at=at)
    rows = (await conn.execute(statement(model, key, _TOTALS_TAIL), params)).all()
    return [_totals(row) for row in rows]


def _totals(row: AnyRow) -> Totals:
    return Totals(
        lead_id=row.lead_id,
        fit_raw=row.fit_raw,
        engagement_raw=row.engagement_raw,
        adjustments=row.adjustments,
        fit=row.fit,
        engagement=row.engagement,
        score=row.score,
        next_change_at=row.next_change_at,
    )


async def breakdown(
    conn: AsyncConnection,
    model: Rules,
    key: str,
    *,
    workspace_id: str,
    lead_id: str,
    at: datetime,
) -> list[tuple[ContributionKind, str, str, int, int]]:
    """Every contribution to one lead's score at `at`: (kind, rule_id, activity_id, points,
    decayed_from), caps and floor not included (they follow from `scores`)."""
    params = parameters(model, workspace_id=workspace_id, lead_ids=[lead_id], at=at)
    rows = (await conn.execute(statement(model, key, _ROWS_TAIL), params)).all()
    return [
        (ContributionKind(r.kind), r.rule_id, r.activity_id, r.points, r.decayed_from) for r in rows
    ]
