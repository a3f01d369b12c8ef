"""Validating a scoring model a client sets: every problem is reported at once, each named by
the path of the node that has it (`model.engagement_rules[2].half_life_days`)."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

from server.errors import FieldViolation, InvalidArgument
from server.filtering.ast import Group, Node, Not
from server.scoring.enums import SCORE_ADJUSTED
from server.scoring.model import EngagementRule, FitRule, PropertyCondition, Rules, Threshold
from server.segments import rules as rule_trees

REASON = "SCORING_MODEL_INVALID"

MAX_FIT_RULES = 100
MAX_ENGAGEMENT_RULES = 100
MAX_THRESHOLDS = 20
MAX_CONDITIONS = 20
MAX_POINTS = 10_000
MAX_HALF_LIFE_DAYS = 3650
MAX_PER_DAY = 10_000
MAX_CAP = 1_000_000
MAX_THRESHOLD_SCORE = 1_000_000

RULE_ID = re.compile(r"[a-z0-9_]{1,64}")
ACTIVITY_TYPE = re.compile(r"[a-z][a-z0-9_.]{0,63}")
PROPERTY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")
THRESHOLD_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
ORDERING_OPS = frozenset({"gt", "gte", "lt", "lte"})
CONDITION_OPS = frozenset({"eq", "neq", "contains", "exists", *ORDERING_OPS})


def validate(rules: Rules, prefix: str = "model") -> Rules:
    """The model with every rule named (`fit_<n>` / `engagement_<n>`, n from 1), or one
    InvalidArgument (reason SCORING_MODEL_INVALID) listing every violation."""
    named = replace(
        rules,
        fit_rules=tuple(
            replace(rule, id=rule.id or f"fit_{n}") for n, rule in enumerate(rules.fit_rules, 1)
        ),
        engagement_rules=tuple(
            replace(rule, id=rule.id or f"engagement_{n}")
            for n, rule in enumerate(rules.engagement_rules, 1)
        ),
    )
    violations = _Violations()
    _check_fit_rules(violations, named.fit_rules, f"{prefix}.fit_rules")
    _check_engagement_rules(violations, named.engagement_rules, f"{prefix}.engagement_rules")
    for name in ("fit_cap", "engagement_cap"):
        cap = getattr(named, name)
        if not 0 <= cap <= MAX_CAP:
            violations.add(f"{prefix}.{name}", f"must be from 0 to {MAX_CAP:,}")
    _check_thresholds(violations, named.thresholds, f"{prefix}.thresholds")
    violations.raise_any()
    return named


class _Violations:
    def __init__(self) -> None:
        self.found: list[FieldViolation] = []

    def add(self, path: str, description: str) -> None:
        self.found.append(FieldViolation(path, description))

    def raise_any(self) -> None:
        if not self.found:
            return
        first = self.found[0]
        more = f" (and {len(self.found) - 1} more)" if len(self.found) > 1 else ""
        raise InvalidArgument(
            message=f"invalid scoring model: {first.field}: {first.description}{more}",
            reason=REASON,
            violations=list(self.found),
        )


def _check_rule_ids(violations: _Violations, ids: list[str], path: str) -> None:
    seen: set[str] = set()
    for i, rule_id in enumerate(ids):
        if not RULE_ID.fullmatch(rule_id):
            violations.add(f"{path}[{i}].id", "must match [a-z0-9_]{1,64}")
        elif rule_id in seen:
            violations.add(f"{path}[{i}].id", f"{rule_id!r} is used by an earlier rule")
        seen.add(rule_id)


def _check_points(violations: _Violations, points: int, path: str) -> None:
    if points == 0 or abs(points) > MAX_POINTS:
        violations.add(path, f"must be non-zero, from -{MAX_POINTS:,} to {MAX_POINTS:,}")


def _check_fit_rules(violations: _Violations, rules: tuple[FitRule, ...], path: str) -> None:
    if len(rules) > MAX_FIT_RULES:
        violations.add(path, f"at most {MAX_FIT_RULES} fit rules")
        return
    _check_rule_ids(violations, [rule.id for rule in rules], path)
    for i, rule in enumerate(rules):
        tree_path = f"{path}[{i}].rules"
        with_nul = _first_nul(rule.rules, tree_path)
        if with_nul is not None:
            violations.add(with_nul, "cannot contain the NUL character")
        else:
            try:
                rule_trees.validate(rule.rules, tree_path)
            except InvalidArgument as error:
                violations.found.extend(error.violations)
        _check_points(violations, rule.points, f"{path}[{i}].points")


def _first_nul(node: Node, path: str) -> str | None:
    """The path of the first node of a rule tree with a NUL in a string, if any."""
    if isinstance(node, Group):
        for i, child in enumerate(node.children):
            found = _first_nul(child, f"{path}.rules[{i}]")
            if found is not None:
                return found
        return None
    if isinstance(node, Not):
        return _first_nul(node.child, path)
    if _has_nul(node.field) or _has_nul(node.op) or _has_nul(node.value):
        return path
    return None


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _check_engagement_rules(
    violations: _Violations, rules: tuple[EngagementRule, ...], path: str
) -> None:
    if len(rules) > MAX_ENGAGEMENT_RULES:
        violations.add(path, f"at most {MAX_ENGAGEMENT_RULES} engagement rules")
        return
    _check_rule_ids(violations, [rule.id for rule in rules], path)
    for i, rule in enumerate(rules):
        at = f"{path}[{i}]"
        if not ACTIVITY_TYPE.fullmatch(rule.activity_type):
            violations.add(f"{at}.activity_type", "must match [a-z][a-z0-9_.]{0,63}")
        elif rule.activity_type == SCORE_ADJUSTED:
            violations.add(
                f"{at}.activity_type", f"{SCORE_ADJUSTED} is an adjustment, not engagement"
            )
        if len(rule.conditions) > MAX_CONDITIONS:
            violations.add(f"{at}.conditions", f"at most {MAX_CONDITIONS} conditions")
        else:
            for j, condition in enumerate(rule.conditions):
                _check_condition(violations, condition, f"{at}.conditions[{j}]")
        _check_points(violations, rule.points, f"{at}.points")
        half_life = rule.half_life_days
        if not (math.isfinite(half_life) and 0 <= half_life <= MAX_HALF_LIFE_DAYS):
            violations.add(f"{at}.half_life_days", f"must be from 0 to {MAX_HALF_LIFE_DAYS}")
        if not 0 <= rule.max_per_day <= MAX_PER_DAY:
            violations.add(f"{at}.max_per_day", f"must be from 0 to {MAX_PER_DAY:,}")


def _check_condition(violations: _Violations, condition: PropertyCondition, path: str) -> None:
    if not PROPERTY.fullmatch(condition.property):
        violations.add(f"{path}.property", r"must match [A-Za-z_][A-Za-z0-9_\-]{0,63}")
    op, value = condition.op, condition.value
    if op not in CONDITION_OPS:
        allowed = ", ".join(sorted(CONDITION_OPS))
        violations.add(f"{path}.op", f"must be one of {allowed}")
        return
    if op == "exists":
        problem = None if value is None else "exists takes no value"
    elif op in ORDERING_OPS:
        problem = None if _is_number(value) else f"{op} needs a number"
    elif op == "contains":
        problem = None if isinstance(value, str) else "contains needs a string"
    else:
        scalar = isinstance(value, str | bool) or _is_number(value)
        problem = None if scalar else f"{op} needs a string, number or boolean"
    if problem is None and _has_nul(value):
        problem = "cannot contain the NUL character"
    if problem is not None:
        violations.add(f"{path}.value", problem)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_thresholds(
    violations: _Violations, thresholds: tuple[Threshold, ...], path: str
) -> None:
    if len(thresholds) > MAX_THRESHOLDS:
        violations.add(path, f"at most {MAX_THRESHOLDS} thresholds")
        return
    names: set[str] = set()
    for i, threshold in enumerate(thresholds):
        at = f"{path}[{i}]"
        if not THRESHOLD_NAME.fullmatch(threshold.name):
            violations.add(f"{at}.name", "must match [A-Za-z0-9_]{1,64}")
        elif threshold.name in names:
            violations.add(f"{at}.name", f"{threshold.name!r} is used by an earlier threshold")
        names.add(threshold.name)
        if not 1 <= threshold.score <= MAX_THRESHOLD_SCORE:
            violations.add(f"{at}.score", f"must be from 1 to {MAX_THRESHOLD_SCORE:,}")
        elif i > 0 and threshold.score <= thresholds[i - 1].score:
            violations.add(f"{at}.score", "thresholds must be listed in increasing order of score")
        # Against a valid score only: a bad score is reported once, above.
        if threshold.hysteresis < 0 or 1 <= threshold.score <= threshold.hysteresis:
            violations.add(f"{at}.hysteresis", "must be 0 or more and less than score")
