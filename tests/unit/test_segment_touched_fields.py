"""A write re-evaluates only the rule segments whose rules read a field it changed."""

from __future__ import annotations

from server.segments import membership, rules
from server.segments.membership import RuleSegment


def _segment(version: str, tree: dict[str, object]) -> RuleSegment:
    return RuleSegment(id=version.partition("@")[0], rules=tree, version=version)


def _condition(field: str, op: str, value: object) -> dict[str, object]:
    return {"combinator": "AND", "rules": [{"field": field, "op": op, "value": value}]}


def test_rule_fields_are_read_from_every_branch_of_the_tree() -> None:
    tree = rules.from_json(
        {
            "combinator": "OR",
            "rules": [
                {"field": "title", "op": "contains", "value": "growth"},
                {
                    "combinator": "AND",
                    "rules": [
                        {"field": "custom.plan", "op": "eq", "value": "pro"},
                        {"field": "company.industry", "op": "eq", "value": "saas"},
                    ],
                },
            ],
        }
    )
    assert membership.fields_read(tree) == {"title", "custom.plan", "company.industry"}


def test_rule_segment_on_title_is_skipped_when_only_the_score_changed() -> None:
    titles = _segment("seg_title@1", _condition("title", "contains", "growth"))
    scores = _segment("seg_score@1", _condition("score", "gte", 50))
    touched = frozenset({"score", "updated_at"})
    assert not membership._may_change(titles, touched)
    assert membership._may_change(scores, touched)


def test_replaced_custom_fields_and_a_new_company_reach_every_rule_on_them() -> None:
    plan = _segment("seg_plan@1", _condition("custom.plan", "eq", "pro"))
    industry = _segment("seg_industry@1", _condition("company.industry", "eq", "saas"))
    assert membership._may_change(plan, frozenset({membership.ANY_CUSTOM}))
    assert not membership._may_change(plan, frozenset({"custom.tier"}))
    assert membership._may_change(industry, frozenset({membership.ANY_COMPANY}))
    assert not membership._may_change(industry, frozenset({"title"}))
