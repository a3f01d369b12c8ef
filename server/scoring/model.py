"""A workspace's scoring model: its shape, as stored (JSON in scoring_models.model) and as
the engine reads it. The arithmetic is in docs/SCORING.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from server.filtering.ast import Node
from server.scoring.enums import ContributionKind, ModelState
from server.segments import rules as rule_trees


@dataclass(frozen=True)
class PropertyCondition:
    property: str
    op: str  # eq, neq, contains, exists, gt, gte, lt, lte
    value: Any = None  # str, int, float or bool; None for exists


@dataclass(frozen=True)
class FitRule:
    id: str
    rules: Node
    points: int


@dataclass(frozen=True)
class EngagementRule:
    id: str
    activity_type: str
    points: int
    conditions: tuple[PropertyCondition, ...] = ()
    half_life_days: float = 0.0  # 0: never decays
    max_per_day: int = 0  # 0: no limit


@dataclass(frozen=True)
class Threshold:
    name: str
    score: int
    hysteresis: int = 0


@dataclass(frozen=True)
class Rules:
    """What a client sets: the model without its version and state."""

    fit_rules: tuple[FitRule, ...] = ()
    engagement_rules: tuple[EngagementRule, ...] = ()
    fit_cap: int = 0  # 0: no cap
    engagement_cap: int = 0
    thresholds: tuple[Threshold, ...] = ()

    @property
    def active(self) -> bool:
        """Scores are computed only under a model with at least one rule."""
        return bool(self.fit_rules or self.engagement_rules)


@dataclass(frozen=True)
class ScoringModel:
    rules: Rules = field(default_factory=Rules)
    version: int = 0  # 0: never set
    state: ModelState = ModelState.READY
    updated_at: datetime | None = None


def to_json(model: Rules) -> dict[str, Any]:
    return {
        "fit_rules": [
            {"id": r.id, "rules": rule_trees.to_json(r.rules), "points": r.points}
            for r in model.fit_rules
        ],
        "engagement_rules": [
            {
                "id": r.id,
                "activity_type": r.activity_type,
                "conditions": [
                    {"property": c.property, "op": c.op, "value": c.value} for c in r.conditions
                ],
                "points": r.points,
                "half_life_days": r.half_life_days,
                "max_per_day": r.max_per_day,
            }
            for r in model.engagement_rules
        ],
        "fit_cap": model.fit_cap,
        "engagement_cap": model.engagement_cap,
        "thresholds": [
            {"name": t.name, "score": t.score, "hysteresis": t.hysteresis} for t in model.thresholds
        ],
    }


def from_json(data: dict[str, Any]) -> Rules:
    """A stored model (written by to_json, so trusted)."""
    return Rules(
        fit_rules=tuple(
            FitRule(id=r["id"], rules=rule_trees.from_json(r["rules"]), points=r["points"])
            for r in data.get("fit_rules", [])
        ),
        engagement_rules=tuple(
            EngagementRule(
                id=r["id"],
                activity_type=r["activity_type"],
                conditions=tuple(PropertyCondition(**c) for c in r.get("conditions", [])),
                points=r["points"],
                half_life_days=float(r.get("half_life_days", 0)),
                max_per_day=int(r.get("max_per_day", 0)),
            )
            for r in data.get("engagement_rules", [])
        ),
        fit_cap=int(data.get("fit_cap", 0)),
        engagement_cap=int(data.get("engagement_cap", 0)),
        thresholds=tuple(Threshold(**t) for t in data.get("thresholds", [])),
    )


@dataclass(frozen=True)
class Contribution:
    kind: ContributionKind
    points: int
    rule_id: str = ""
    activity_id: str = ""
    decayed_from: int = 0


@dataclass(frozen=True)
class LeadScore:
    """A lead's score with every point explained (the contributions add up to `score`)."""

    lead_id: str
    score: int
    fit: int
    engagement: int  # the engagement part plus adjustments
    model_version: int
    computed_at: datetime | None
    contributions: list[Contribution]
    thresholds: list[tuple[str, bool]]  # each threshold of the model: (name, lead is above)
