"""An independent evaluator of lead scores: plain Python written from docs/SCORING.md, never
calling server/scoring/engine.py (which computes the same in SQL).

Fit rule trees are evaluated by the segment rules' own independent evaluator
(tests/segments/test_membership_properties.py), so both share one reading of rule semantics.

Inputs are plain data:
- the model: the dict of `server.scoring.model.to_json`;
- the lead: a dict of its fields (id, email, first_name, title, company, company_id, source,
  score, status as a lower-case name, created_at, last_activity_at), `custom_fields` (a
  dict) and `linked_company` (a dict of its company's fields, or None); a missing field is
  empty (created_at: T);
- its activities: dicts with id, type, occurred_at (an aware datetime) and properties.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from tests.segments.test_membership_properties import (
    CompanyFacts,
    Cond,
    Evaluator,
    Grp,
    LeadFacts,
    Node,
)

Json = Any
SCORE_ADJUSTED = "score_adjusted"
SECONDS_PER_DAY = 86400


@dataclass(frozen=True)
class Contribution:
    kind: str  # FIT, ENGAGEMENT, ADJUSTMENT, FIT_CAP, ENGAGEMENT_CAP, FLOOR
    points: int
    rule_id: str = ""
    activity_id: str = ""
    decayed_from: int = 0


@dataclass(frozen=True)
class Score:
    score: int
    fit: int  # after its cap
    engagement: int  # the engagement part after its cap, plus adjustments
    contributions: list[Contribution]


def score(model: Json, lead: Mapping[str, Json], activities: Sequence[Json], at: datetime) -> Score:
    """The lead's score at time `at`, with every point explained."""
    contributions: list[Contribution] = []

    facts = lead_facts(lead, at)
    rules = Evaluator(now=at)
    fit_raw = 0
    for rule in model["fit_rules"]:
        if rules.holds(rule_tree(rule["rules"]), facts):
            fit_raw += rule["points"]
            contributions.append(Contribution("FIT", rule["points"], rule_id=rule["id"]))
    fit = clamp(fit_raw, model["fit_cap"])
    if fit != fit_raw:
        contributions.append(Contribution("FIT_CAP", fit - fit_raw))

    past = [a for a in activities if a["occurred_at"] <= at]
    engagement_raw = 0
    for rule in model["engagement_rules"]:
        for activity in counted(rule, past):
            points = engagement_points(rule, activity, at)
            if points != 0:
                engagement_raw += points
                contributions.append(
                    Contribution(
                        "ENGAGEMENT",
                        points,
                        rule_id=rule["id"],
                        activity_id=activity["id"],
                        decayed_from=rule["points"],
                    )
                )
    engagement = clamp(engagement_raw, model["engagement_cap"])
    if engagement != engagement_raw:
        contributions.append(Contribution("ENGAGEMENT_CAP", engagement - engagement_raw))

    adjustments = 0
    for activity in past:
        if activity["type"] == SCORE_ADJUSTED:
            points = whole(activity["properties"]["points"])
            adjustments += points
            contributions.append(Contribution("ADJUSTMENT", points, activity_id=activity["id"]))

    total = fit + engagement + adjustments
    final = max(0, total)
    if final != total:
        contributions.append(Contribution("FLOOR", final - total))
    assert sum(c.points for c in contributions) == final
    return Score(final, fit, engagement + adjustments, contributions)


def clamp(raw: int, cap: int) -> int:
    """To [0, cap]; no upper bound when cap is 0."""
    low = max(0, raw)
    return min(low, cap) if cap else low


def counted(rule: Json, activities: Iterable[Json]) -> list[Json]:
    """The activities the rule counts: of its type, meeting its conditions, and ranked
    within max_per_day per UTC day by (occurred_at, id)."""
    matching = [
        a
        for a in activities
        if a["type"] == rule["activity_type"]
        and all(condition_holds(c, a["properties"]) for c in rule["conditions"])
    ]
    by_day: dict[date, list[Json]] = defaultdict(list)
    for activity in matching:
        by_day[activity["occurred_at"].astimezone(UTC).date()].append(activity)
    limit = rule["max_per_day"]
    result: list[Json] = []
    for day in sorted(by_day):
        ranked = sorted(by_day[day], key=lambda a: (a["occurred_at"], a["id"]))
        result.extend(ranked[:limit] if limit > 0 else ranked)
    return result


def engagement_points(rule: Json, activity: Json, at: datetime) -> int:
    """The rule's points decayed to `at`, rounded half away from zero."""
    half_life = rule["half_life_days"]
    if half_life == 0:
        value = float(rule["points"])
    else:
        age_days = (at - activity["occurred_at"]).total_seconds() / SECONDS_PER_DAY
        value = rule["points"] * 0.5 ** (age_days / half_life)
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def whole(number: Json) -> int:
    assert isinstance(number, int | float) and not isinstance(number, bool)
    assert float(number).is_integer(), number
    return int(number)


# -- property conditions ----------------------------------------------------------------


def is_number(value: Json) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def equal(actual: Json, wanted: Json) -> bool:
    """Numbers numerically; strings exactly; booleans exactly; different types never."""
    if is_number(actual) and is_number(wanted):
        return bool(actual == wanted)
    if isinstance(actual, bool) and isinstance(wanted, bool):
        return actual == wanted
    if isinstance(actual, str) and isinstance(wanted, str):
        return actual == wanted
    return False


def condition_holds(condition: Json, properties: Mapping[str, Json]) -> bool:
    op, wanted = condition["op"], condition.get("value")
    actual = properties.get(condition["property"])
    if op == "exists":
        return actual is not None  # present and not null
    if op == "eq":
        return equal(actual, wanted)
    if op == "neq":
        return not equal(actual, wanted)  # the exact complement, as in segment rules
    if op == "contains":  # case-sensitive
        return isinstance(actual, str) and isinstance(wanted, str) and wanted in actual
    if not (is_number(actual) and is_number(wanted)):
        return False
    if op == "gt":
        return bool(actual > wanted)
    if op == "gte":
        return bool(actual >= wanted)
    if op == "lt":
        return bool(actual < wanted)
    if op == "lte":
        return bool(actual <= wanted)
    raise AssertionError(f"no property operator {op!r}")


# -- fit rules ----------------------------------------------------------------------------


def rule_tree(data: Json) -> Node:
    """A stored rule tree (server.segments.rules.to_json) as the segment evaluator's nodes."""
    if "rules" in data:
        kind: Literal["AND", "OR"] = "OR" if data.get("combinator") == "OR" else "AND"
        return Grp(kind, tuple(rule_tree(child) for child in data["rules"]))
    return Cond(data["field"], data["op"], data.get("value"))


def lead_facts(lead: Mapping[str, Json], at: datetime) -> LeadFacts:
    company = lead.get("linked_company")
    return LeadFacts(
        id=lead.get("id", ""),
        email=lead.get("email", ""),
        first_name=lead.get("first_name", ""),
        title=lead.get("title", ""),
        company=lead.get("company", ""),
        company_id=lead.get("company_id", ""),
        source=lead.get("source", ""),
        score=lead.get("score", 0),
        status=lead.get("status", "new"),
        custom=dict(lead.get("custom_fields") or {}),
        created_at=lead.get("created_at") or at,
        last_activity_at=lead.get("last_activity_at"),
        archived=False,
        linked=None if company is None else company_facts(company),
    )


def company_facts(company: Mapping[str, Json]) -> CompanyFacts:
    return CompanyFacts(
        id=company.get("id", ""),
        name=company.get("name", ""),
        domain=company.get("domain", ""),
        industry=company.get("industry", ""),
        employee_count=company.get("employee_count"),
        annual_revenue=company.get("annual_revenue"),
        country=company.get("country", ""),
    )


# -- thresholds ---------------------------------------------------------------------------


def thresholds_after(
    thresholds: Sequence[Json], above: Set[str], new_score: int
) -> tuple[set[str], list[tuple[str, str]]]:
    """The thresholds a lead is above after its score became `new_score`, and the crossings
    [(name, "up" | "down")] in the model's order of thresholds."""
    now_above: set[str] = set()
    crossings: list[tuple[str, str]] = []
    for threshold in thresholds:
        name = threshold["name"]
        if name in above:
            if new_score >= threshold["score"] - threshold["hysteresis"]:
                now_above.add(name)
            else:
                crossings.append((name, "down"))
        elif new_score >= threshold["score"]:
            now_above.add(name)
            crossings.append((name, "up"))
    return now_above, crossings
