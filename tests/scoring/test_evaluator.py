"""The independent evaluator against scores computed by hand from docs/SCORING.md."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from tests.scoring.evaluator import Contribution, Score, score, thresholds_after

T = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
LEAD: dict[str, Any] = {
    "id": "lead_1",
    "email": "ada@acme.com",
    "title": "VP Growth",
    "custom_fields": {"plan": "pro", "seats": 12},
    "linked_company": {"name": "Acme", "industry": "SaaS", "employee_count": 250},
}


def model(
    fit_rules: list[dict[str, Any]] | None = None,
    engagement_rules: list[dict[str, Any]] | None = None,
    fit_cap: int = 0,
    engagement_cap: int = 0,
) -> dict[str, Any]:
    return {
        "fit_rules": fit_rules or [],
        "engagement_rules": engagement_rules or [],
        "fit_cap": fit_cap,
        "engagement_cap": engagement_cap,
        "thresholds": [],
    }


def fit_rule(rule_id: str, points: int, field: str, op: str, value: Any) -> dict[str, Any]:
    tree = {"combinator": "AND", "rules": [{"field": field, "op": op, "value": value}]}
    return {"id": rule_id, "rules": tree, "points": points}


def engagement_rule(
    rule_id: str,
    points: int,
    activity_type: str = "email_click",
    half_life_days: float = 0.0,
    max_per_day: int = 0,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "id": rule_id,
        "activity_type": activity_type,
        "conditions": conditions or [],
        "points": points,
        "half_life_days": half_life_days,
        "max_per_day": max_per_day,
    }


def activity(
    activity_id: str,
    occurred_at: datetime,
    activity_type: str = "email_click",
    **properties: Any,
) -> dict[str, Any]:
    return {
        "id": activity_id,
        "type": activity_type,
        "occurred_at": occurred_at,
        "properties": properties,
    }


def engaged(rule_id: str, activity_id: str, points: int, decayed_from: int) -> Contribution:
    return Contribution("ENGAGEMENT", points, rule_id, activity_id, decayed_from)


# -- fit ----------------------------------------------------------------------------------


def test_fit_rules_that_match_the_lead_add_their_points() -> None:
    rules = [
        fit_rule("vp", 10, "title", "contains", "vp"),  # case-insensitive, as segments
        fit_rule("saas", 20, "company.industry", "eq", "saas"),
        fit_rule("big", 5, "company.employee_count", "gte", 500),
        fit_rule("pro", 7, "custom.plan", "eq", "Pro"),
        fit_rule("rival", -3, "email_domain", "eq", "rival.io"),
    ]
    assert score(model(rules), LEAD, [], T) == Score(
        37,
        37,
        0,
        [
            Contribution("FIT", 10, "vp"),
            Contribution("FIT", 20, "saas"),
            Contribution("FIT", 7, "pro"),
        ],
    )


def test_company_fields_do_not_match_a_lead_without_a_company() -> None:
    alone = {**LEAD, "linked_company": None}
    rules = [fit_rule("saas", 20, "company.industry", "eq", "saas")]
    assert score(model(rules), alone, [], T) == Score(0, 0, 0, [])


def test_the_fit_cap_takes_away_what_is_above_it() -> None:
    rules = [
        fit_rule("vp", 20, "title", "contains", "vp"),
        fit_rule("saas", 20, "company.industry", "eq", "saas"),
    ]
    assert score(model(rules, fit_cap=30), LEAD, [], T) == Score(
        30,
        30,
        0,
        [
            Contribution("FIT", 20, "vp"),
            Contribution("FIT", 20, "saas"),
            Contribution("FIT_CAP", -10),
        ],
    )


def test_a_negative_fit_part_is_raised_to_zero() -> None:
    rules = [fit_rule("rival", -50, "email_domain", "eq", "acme.com")]
    assert score(model(rules, fit_cap=30), LEAD, [], T) == Score(
        0, 0, 0, [Contribution("FIT", -50, "rival"), Contribution("FIT_CAP", 50)]
    )


# -- engagement -----------------------------------------------------------------------------


def test_an_activity_decays_by_half_every_half_life() -> None:
    rules = [engagement_rule("clicks", 20, half_life_days=10)]
    activities = [activity("act_1", T - timedelta(days=20)), activity("act_2", T)]
    assert score(model(engagement_rules=rules), LEAD, activities, T) == Score(
        25, 0, 25, [engaged("clicks", "act_1", 5, 20), engaged("clicks", "act_2", 20, 20)]
    )


def test_decayed_points_round_half_away_from_zero_per_activity() -> None:
    rules = [
        engagement_rule("up", 5, half_life_days=7),
        engagement_rule("down", -3, activity_type="unsubscribe", half_life_days=7),
    ]
    week_ago = T - timedelta(days=7)
    activities = [
        activity("act_1", week_ago),  # 2.5 -> 3
        activity("act_2", week_ago),  # 2.5 -> 3, not 5 for the two together
        activity("act_3", week_ago, "unsubscribe"),  # -1.5 -> -2
    ]
    assert score(model(engagement_rules=rules), LEAD, activities, T) == Score(
        4,
        0,
        4,
        [
            engaged("up", "act_1", 3, 5),
            engaged("up", "act_2", 3, 5),
            engaged("down", "act_3", -2, -3),
        ],
    )


def test_an_activity_decayed_to_zero_points_is_not_listed() -> None:
    rules = [engagement_rule("clicks", 1, half_life_days=1)]
    activities = [activity("act_1", T - timedelta(days=2))]  # 0.25 -> 0
    assert score(model(engagement_rules=rules), LEAD, activities, T) == Score(0, 0, 0, [])


def test_a_half_life_of_zero_never_decays() -> None:
    rules = [engagement_rule("meetings", 30, activity_type="meeting_booked")]
    activities = [activity("act_1", T - timedelta(days=3000), "meeting_booked")]
    assert score(model(engagement_rules=rules), LEAD, activities, T) == Score(
        30, 0, 30, [engaged("meetings", "act_1", 30, 30)]
    )


def test_max_per_day_counts_the_earliest_activities_of_each_utc_day() -> None:
    rules = [engagement_rule("views", 1, activity_type="page_view", max_per_day=2)]
    berlin = timezone(timedelta(hours=1))
    new_york = timezone(-timedelta(hours=5))
    day_1 = datetime(2025, 3, 8, tzinfo=UTC)
    activities = [
        # 8 March (UTC): act_a and act_b tie on time, so the id ranks them; act_c is third
        # (9 March in Berlin) and act_d fourth.
        activity("act_d", day_1 + timedelta(hours=23, minutes=59), "page_view"),
        activity("act_b", day_1 + timedelta(hours=9), "page_view"),
        activity("act_a", day_1 + timedelta(hours=9), "page_view"),
        activity("act_c", datetime(2025, 3, 9, 0, 30, tzinfo=berlin), "page_view"),
        # 9 March (UTC): act_e although 8 March in New York, then act_f; act_g is third.
        activity("act_g", datetime(2025, 3, 9, 3, 0, tzinfo=UTC), "page_view"),
        activity("act_f", datetime(2025, 3, 9, 2, 0, tzinfo=UTC), "page_view"),
        activity("act_e", datetime(2025, 3, 8, 19, 30, tzinfo=new_york), "page_view"),
    ]
    assert score(model(engagement_rules=rules), LEAD, activities, T) == Score(
        4,
        0,
        4,
        [
            engaged("views", "act_a", 1, 1),
            engaged("views", "act_b", 1, 1),
            engaged("views", "act_e", 1, 1),
            engaged("views", "act_f", 1, 1),
        ],
    )


def test_activities_after_the_moment_scored_do_not_count() -> None:
    rules = [engagement_rule("clicks", 10, max_per_day=1)]
    activities = [activity("act_2", T + timedelta(seconds=1)), activity("act_1", T)]
    assert score(model(engagement_rules=rules), LEAD, activities, T) == Score(
        10, 0, 10, [engaged("clicks", "act_1", 10, 10)]
    )


def test_an_activity_may_count_under_several_rules() -> None:
    rules = [
        engagement_rule("clicks", 2),
        engagement_rule(
            "pricing", 8, conditions=[{"property": "url", "op": "contains", "value": "/pricing"}]
        ),
    ]
    activities = [activity("act_1", T, url="/pricing/teams")]
    assert score(model(engagement_rules=rules), LEAD, activities, T) == Score(
        10, 0, 10, [engaged("clicks", "act_1", 2, 2), engaged("pricing", "act_1", 8, 8)]
    )


def test_the_engagement_cap_takes_away_what_is_above_it() -> None:
    rules = [engagement_rule("clicks", 25)]
    activities = [activity("act_1", T), activity("act_2", T)]
    assert score(model(engagement_rules=rules, engagement_cap=40), LEAD, activities, T) == Score(
        40,
        0,
        40,
        [
            engaged("clicks", "act_1", 25, 25),
            engaged("clicks", "act_2", 25, 25),
            Contribution("ENGAGEMENT_CAP", -10),
        ],
    )


def test_a_negative_engagement_part_is_raised_to_zero() -> None:
    rules = [engagement_rule("unsubscribed", -20, activity_type="unsubscribe")]
    activities = [activity("act_1", T, "unsubscribe")]
    assert score(model(engagement_rules=rules), LEAD, activities, T) == Score(
        0, 0, 0, [engaged("unsubscribed", "act_1", -20, -20), Contribution("ENGAGEMENT_CAP", 20)]
    )


# -- property conditions ----------------------------------------------------------------------


def matches(op: str, value: Any, **properties: Any) -> bool:
    condition = {"property": "p", "op": op, "value": value}
    rules = [engagement_rule("r", 1, conditions=[condition])]
    return (
        score(model(engagement_rules=rules), LEAD, [activity("a", T, **properties)], T).score == 1
    )


def test_contains_is_a_case_sensitive_substring_of_a_string() -> None:
    assert matches("contains", "/pricing", p="/en/pricing?x=1")
    assert not matches("contains", "/pricing", p="/en/Pricing")
    assert not matches("contains", "1", p=12)


def test_eq_on_strings_is_exact_and_on_numbers_numeric() -> None:
    assert matches("eq", "Pro", p="Pro")
    assert not matches("eq", "Pro", p="pro")
    assert matches("eq", 3, p=3.0)
    assert not matches("eq", "3", p=3)
    assert not matches("eq", 1, p=True)
    assert matches("eq", True, p=True)


def test_neq_is_the_complement_of_eq() -> None:
    assert matches("neq", "Pro", p="pro")
    assert not matches("neq", 3, p=3.0)
    assert matches("neq", "Pro")  # a missing property is not equal
    assert matches("neq", 1, p=True)


def test_ordering_compares_numbers_only() -> None:
    assert matches("gt", 30, p=30.5)
    assert not matches("gt", 30, p=30)
    assert matches("gte", 30, p=30)
    assert matches("lt", 0, p=-1)
    assert matches("lte", 2.5, p=2.5)
    assert not matches("gt", 30, p="40")
    assert not matches("gt", 0, p=True)
    assert not matches("lt", 30)


def test_exists_means_present_and_not_null() -> None:
    assert matches("exists", None, p="")
    assert matches("exists", None, p=0)
    assert not matches("exists", None, p=None)
    assert not matches("exists", None, q=1)


# -- adjustments and the floor ----------------------------------------------------------------


def test_adjustments_never_decay_and_count_in_the_engagement_field() -> None:
    rules = [engagement_rule("clicks", 10, max_per_day=1)]
    activities = [
        activity("act_1", T),
        activity("act_2", T - timedelta(days=900), "score_adjusted", points=7),
    ]
    assert score(model(engagement_rules=rules, engagement_cap=5), LEAD, activities, T) == Score(
        12,
        0,
        12,
        [
            engaged("clicks", "act_1", 10, 10),
            Contribution("ENGAGEMENT_CAP", -5),
            Contribution("ADJUSTMENT", 7, activity_id="act_2"),
        ],
    )


def test_the_score_is_floored_at_zero() -> None:
    rules = [fit_rule("vp", 10, "title", "contains", "vp")]
    activities = [activity("act_1", T - timedelta(days=1), "score_adjusted", points=-25.0)]
    assert score(model(rules), LEAD, activities, T) == Score(
        0,
        10,
        -25,
        [
            Contribution("FIT", 10, "vp"),
            Contribution("ADJUSTMENT", -25, activity_id="act_1"),
            Contribution("FLOOR", 15),
        ],
    )


# -- thresholds -----------------------------------------------------------------------------------

THRESHOLDS = [
    {"name": "MQL", "score": 50, "hysteresis": 5},
    {"name": "SQL", "score": 80, "hysteresis": 10},
]


def test_a_first_score_above_a_threshold_is_a_crossing_up() -> None:
    assert thresholds_after(THRESHOLDS, set(), 60) == ({"MQL"}, [("MQL", "up")])
    assert thresholds_after(THRESHOLDS, set(), 90) == (
        {"MQL", "SQL"},
        [("MQL", "up"), ("SQL", "up")],
    )


def test_hysteresis_crosses_up_down_and_up_again() -> None:
    above: set[str] = set()
    crossings: list[tuple[str, str]] = []
    for new_score in (52, 44, 50):
        above, crossed = thresholds_after(THRESHOLDS, above, new_score)
        crossings += crossed
    assert crossings == [("MQL", "up"), ("MQL", "down"), ("MQL", "up")]
    assert above == {"MQL"}


def test_a_score_wobbling_inside_the_band_crosses_nothing() -> None:
    above, _ = thresholds_after(THRESHOLDS, set(), 50)
    for new_score in (49, 45, 51, 47, 50, 46):
        above, crossed = thresholds_after(THRESHOLDS, above, new_score)
        assert crossed == []
        assert above == {"MQL"}


def test_below_the_band_of_one_threshold_but_inside_another() -> None:
    assert thresholds_after(THRESHOLDS, {"MQL", "SQL"}, 70) == ({"MQL", "SQL"}, [])
    assert thresholds_after(THRESHOLDS, {"MQL", "SQL"}, 44) == (
        set(),
        [("MQL", "down"), ("SQL", "down")],
    )
