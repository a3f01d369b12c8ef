"""A scoring model a client sets is checked as a whole: one InvalidArgument (reason
SCORING_MODEL_INVALID) names every violation by the path of the node that has it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from server.errors import FieldViolation, InvalidArgument
from server.filtering.ast import Condition, Group
from server.scoring import model as scoring_model
from server.scoring.model import EngagementRule, FitRule, PropertyCondition, Rules, Threshold
from server.scoring.validation import validate

SAAS = Group("AND", (Condition("custom.industry", "eq", "saas"),))


def fit(rule_id: str = "", points: int = 20, rules: Group = SAAS) -> FitRule:
    return FitRule(id=rule_id, rules=rules, points=points)


def engagement(
    rule_id: str = "",
    activity_type: str = "email_click",
    points: int = 10,
    conditions: tuple[PropertyCondition, ...] = (),
    half_life_days: float = 14.0,
    max_per_day: int = 3,
) -> EngagementRule:
    return EngagementRule(
        id=rule_id,
        activity_type=activity_type,
        points=points,
        conditions=conditions,
        half_life_days=half_life_days,
        max_per_day=max_per_day,
    )


def where(op: str, value: Any = None, prop: str = "url") -> EngagementRule:
    return engagement(conditions=(PropertyCondition(prop, op, value),))


VALID = Rules(
    fit_rules=(
        fit("saas"),
        fit(points=-50, rules=Group("OR", (Condition("email_domain", "eq", "rival.io"),))),
    ),
    engagement_rules=(
        engagement(
            "pricing_clicks",
            conditions=(
                PropertyCondition("url", "contains", "/pricing"),
                PropertyCondition("utm-source", "exists"),
                PropertyCondition("seconds", "gte", 30),
                PropertyCondition("paid", "eq", True),
            ),
        ),
        engagement(activity_type="meeting_booked", points=30, half_life_days=0, max_per_day=0),
        engagement(activity_type="custom.webinar_v2", points=-20, half_life_days=0.5),
    ),
    fit_cap=40,
    engagement_cap=60,
    thresholds=(Threshold("MQL", 50, 5), Threshold("SQL", 80, 0)),
)


def violations(rules: Rules) -> list[FieldViolation]:
    with pytest.raises(InvalidArgument) as caught:
        validate(rules)
    assert caught.value.reason == "SCORING_MODEL_INVALID"
    return caught.value.violations


def fields(rules: Rules) -> list[str]:
    return [v.field for v in violations(rules)]


# -- a valid model ----------------------------------------------------------------------


def test_a_valid_model_passes_unchanged_except_for_assigned_ids() -> None:
    validated = validate(VALID)
    assert [r.id for r in validated.fit_rules] == ["saas", "fit_2"]
    assert [r.id for r in validated.engagement_rules] == [
        "pricing_clicks",
        "engagement_2",
        "engagement_3",
    ]
    assert validated == replace(
        VALID,
        fit_rules=(VALID.fit_rules[0], replace(VALID.fit_rules[1], id="fit_2")),
        engagement_rules=(
            VALID.engagement_rules[0],
            replace(VALID.engagement_rules[1], id="engagement_2"),
            replace(VALID.engagement_rules[2], id="engagement_3"),
        ),
    )


def test_a_validated_model_round_trips_through_json() -> None:
    validated = validate(VALID)
    assert scoring_model.from_json(scoring_model.to_json(validated)) == validated


def test_an_empty_model_is_valid() -> None:
    assert validate(Rules()) == Rules()


def test_violations_are_named_under_the_given_prefix() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate(replace(VALID, fit_cap=-1), prefix="scoring_model")
    assert [v.field for v in caught.value.violations] == ["scoring_model.fit_cap"]


def test_every_violation_is_reported_at_once() -> None:
    bad = replace(
        VALID,
        fit_rules=(fit("Saas"),),
        engagement_rules=(engagement(half_life_days=-1, max_per_day=-1),),
        engagement_cap=2_000_000,
        thresholds=(Threshold("MQL", 0),),
    )
    assert fields(bad) == [
        "model.fit_rules[0].id",
        "model.engagement_rules[0].half_life_days",
        "model.engagement_rules[0].max_per_day",
        "model.engagement_cap",
        "model.thresholds[0].score",
    ]


# -- counts -----------------------------------------------------------------------------


def test_at_most_100_fit_rules() -> None:
    assert validate(Rules(fit_rules=(fit(),) * 100)).fit_rules[99].id == "fit_100"
    assert fields(Rules(fit_rules=(fit(),) * 101)) == ["model.fit_rules"]


def test_at_most_100_engagement_rules() -> None:
    assert len(validate(Rules(engagement_rules=(engagement(),) * 100)).engagement_rules) == 100
    assert fields(Rules(engagement_rules=(engagement(),) * 101)) == ["model.engagement_rules"]


def test_at_most_20_thresholds() -> None:
    twenty = tuple(Threshold(f"T{n}", n * 10) for n in range(1, 21))
    assert validate(Rules(thresholds=twenty)).thresholds == twenty
    assert fields(Rules(thresholds=(*twenty, Threshold("T21", 500)))) == ["model.thresholds"]


# -- ids and points ---------------------------------------------------------------------


@pytest.mark.parametrize("rule_id", ["Saas", "has-dash", "a" * 65, "é", "a\x00"])
def test_rule_ids_match_lowercase_letters_digits_and_underscores(rule_id: str) -> None:
    bad = Rules(fit_rules=(fit("ok"), fit(rule_id)), engagement_rules=(engagement(rule_id),))
    assert fields(bad) == ["model.fit_rules[1].id", "model.engagement_rules[0].id"]


def test_fit_rule_ids_are_unique() -> None:
    assert fields(Rules(fit_rules=(fit("saas"), fit("big"), fit("saas")))) == [
        "model.fit_rules[2].id"
    ]


def test_an_assigned_id_clashing_with_a_given_one_is_a_duplicate() -> None:
    assert fields(Rules(engagement_rules=(engagement(), engagement("engagement_1")))) == [
        "model.engagement_rules[1].id"
    ]


def test_fit_and_engagement_rules_may_share_an_id() -> None:
    validate(Rules(fit_rules=(fit("x"),), engagement_rules=(engagement("x"),)))


@pytest.mark.parametrize("points", [0, 10_001, -10_001])
def test_points_are_non_zero_and_at_most_10000_either_way(points: int) -> None:
    bad = Rules(fit_rules=(fit(points=points),), engagement_rules=(engagement(points=points),))
    assert fields(bad) == ["model.fit_rules[0].points", "model.engagement_rules[0].points"]


def test_points_of_10000_either_way_are_allowed() -> None:
    validate(Rules(fit_rules=(fit(points=10_000),), engagement_rules=(engagement(points=-10_000),)))


# -- fit rule trees ---------------------------------------------------------------------


def test_a_bad_fit_rule_tree_is_reported_at_its_node() -> None:
    tree = Group("AND", (Condition("title", "eq", "CTO"), Group("OR", ())))
    assert fields(Rules(fit_rules=(fit(), fit(rules=tree)))) == [
        "model.fit_rules[1].rules.rules[1]"
    ]


def test_a_bad_fit_rule_condition_is_reported_at_its_node() -> None:
    tree = Group("AND", (Condition("title", "eq", "CTO"), Condition("shoe_size", "eq", 3)))
    assert fields(Rules(fit_rules=(fit(rules=tree),))) == [
        "model.fit_rules[0].rules.rules[1].condition"
    ]


def test_an_empty_fit_rule_tree_is_a_violation() -> None:
    assert fields(Rules(fit_rules=(fit(rules=Group("AND", ())),))) == ["model.fit_rules[0].rules"]


def test_a_nul_in_a_fit_rule_tree_is_reported_at_its_node() -> None:
    tree = Group("AND", (Group("OR", (Condition("custom.plan", "in", ["pro", "a\x00"]),)),))
    assert fields(Rules(fit_rules=(fit(rules=tree),))) == [
        "model.fit_rules[0].rules.rules[0].rules[0]"
    ]


# -- engagement rules -------------------------------------------------------------------


@pytest.mark.parametrize(
    "activity_type", ["", "Email_click", "1page", "page-view", "a" * 65, "page\x00view"]
)
def test_activity_type_matches_the_activity_type_pattern(activity_type: str) -> None:
    bad = Rules(engagement_rules=(engagement(), engagement(activity_type=activity_type)))
    assert fields(bad) == ["model.engagement_rules[1].activity_type"]


def test_score_adjusted_is_not_an_engagement_activity_type() -> None:
    bad = Rules(engagement_rules=(engagement(activity_type="score_adjusted"),))
    assert fields(bad) == ["model.engagement_rules[0].activity_type"]


@pytest.mark.parametrize("half_life", [-0.5, 3650.5, float("nan"), float("inf")])
def test_half_life_is_finite_from_0_to_3650_days(half_life: float) -> None:
    rules = (engagement(half_life_days=0), engagement(half_life_days=3650))
    validate(Rules(engagement_rules=rules))
    bad = Rules(engagement_rules=(*rules, engagement(half_life_days=half_life)))
    assert fields(bad) == ["model.engagement_rules[2].half_life_days"]


@pytest.mark.parametrize("max_per_day", [-1, 10_001])
def test_max_per_day_is_from_0_to_10000(max_per_day: int) -> None:
    validate(Rules(engagement_rules=(engagement(max_per_day=0), engagement(max_per_day=10_000))))
    bad = Rules(engagement_rules=(engagement(max_per_day=max_per_day),))
    assert fields(bad) == ["model.engagement_rules[0].max_per_day"]


def test_at_most_20_conditions_per_engagement_rule() -> None:
    condition = PropertyCondition("url", "exists")
    validate(Rules(engagement_rules=(engagement(conditions=(condition,) * 20),)))
    bad = Rules(engagement_rules=(engagement(conditions=(condition,) * 21),))
    assert fields(bad) == ["model.engagement_rules[0].conditions"]


@pytest.mark.parametrize("prop", ["", "1url", "url path", "a.b", "ü", "a" * 65, "u\x00rl"])
def test_condition_property_matches_the_property_pattern(prop: str) -> None:
    validate(Rules(engagement_rules=(where("exists", prop="_utm-Source_2"),)))
    bad = Rules(engagement_rules=(where("exists", prop=prop),))
    assert fields(bad) == ["model.engagement_rules[0].conditions[0].property"]


@pytest.mark.parametrize("op", ["", "EQ", "in", "starts_with", "not_exists", "between"])
def test_condition_op_is_one_of_the_eight(op: str) -> None:
    assert fields(Rules(engagement_rules=(where(op, "x"),))) == [
        "model.engagement_rules[0].conditions[0].op"
    ]


@pytest.mark.parametrize(
    ("op", "value"),
    [
        ("exists", None),
        ("gt", 1),
        ("gte", 1.5),
        ("lt", -3),
        ("lte", 0),
        ("contains", "/pricing"),
        ("contains", ""),
        ("eq", "a"),
        ("eq", 2),
        ("eq", False),
        ("neq", "b"),
        ("neq", 2.5),
        ("neq", True),
    ],
)
def test_condition_values_of_the_right_type_are_valid(op: str, value: Any) -> None:
    validate(Rules(engagement_rules=(where(op, value),)))


@pytest.mark.parametrize(
    ("op", "value"),
    [
        ("exists", "x"),
        ("exists", False),
        ("gt", "5"),
        ("gte", True),
        ("lt", None),
        ("lte", float("nan")),
        ("contains", 5),
        ("contains", None),
        ("eq", None),
        ("eq", ["a"]),
        ("neq", {"a": 1}),
        ("eq", float("inf")),
    ],
)
def test_condition_values_of_the_wrong_type_are_violations(op: str, value: Any) -> None:
    assert fields(Rules(engagement_rules=(engagement(), where(op, value)))) == [
        "model.engagement_rules[1].conditions[0].value"
    ]


@pytest.mark.parametrize("op", ["eq", "neq", "contains"])
def test_a_nul_in_a_condition_value_is_a_violation(op: str) -> None:
    assert fields(Rules(engagement_rules=(where(op, "/pri\x00cing"),))) == [
        "model.engagement_rules[0].conditions[0].value"
    ]


# -- caps -------------------------------------------------------------------------------


@pytest.mark.parametrize("cap", [-1, 1_000_001])
def test_caps_are_from_0_to_a_million(cap: int) -> None:
    validate(Rules(fit_cap=0, engagement_cap=1_000_000))
    assert fields(Rules(fit_cap=cap, engagement_cap=cap)) == [
        "model.fit_cap",
        "model.engagement_cap",
    ]


# -- thresholds -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "M-QL", "MQL ", "a" * 65, "MQ\x00L"])
def test_threshold_names_match_the_name_pattern(name: str) -> None:
    assert fields(Rules(thresholds=(Threshold("MQL", 50), Threshold(name, 80)))) == [
        "model.thresholds[1].name"
    ]


def test_threshold_names_are_unique() -> None:
    assert fields(Rules(thresholds=(Threshold("MQL", 50), Threshold("MQL", 80)))) == [
        "model.thresholds[1].name"
    ]


@pytest.mark.parametrize("score", [0, -5, 1_000_001])
def test_threshold_score_is_from_1_to_a_million(score: int) -> None:
    validate(Rules(thresholds=(Threshold("low", 1), Threshold("high", 1_000_000))))
    assert fields(Rules(thresholds=(Threshold("MQL", score),))) == ["model.thresholds[0].score"]


@pytest.mark.parametrize("hysteresis", [-1, 50, 51])
def test_hysteresis_is_0_or_more_and_less_than_the_score(hysteresis: int) -> None:
    validate(Rules(thresholds=(Threshold("MQL", 50, 0), Threshold("SQL", 80, 79))))
    assert fields(Rules(thresholds=(Threshold("MQL", 50, hysteresis),))) == [
        "model.thresholds[0].hysteresis"
    ]


@pytest.mark.parametrize("later", [80, 50])
def test_thresholds_are_listed_in_strictly_increasing_score(later: int) -> None:
    thresholds = (Threshold("MQL", 50), Threshold("SQL", 80), Threshold("HOT", later))
    assert fields(Rules(thresholds=thresholds)) == ["model.thresholds[2].score"]
