"""The AIP-160 subset parser, without a database."""

from __future__ import annotations

import pytest

from server.errors import InvalidArgument
from server.filtering.ast import Condition, Group, Not
from server.filtering.expression import parse


def test_comparison_operators_map_to_rule_operators() -> None:
    assert parse("score >= 50") == Condition("score", "gte", 50)
    assert parse('title:"growth"') == Condition("title", "contains", "growth")
    assert parse("custom.beta = true") == Condition("custom.beta", "eq", True)
    assert parse("custom.rate < -1.5") == Condition("custom.rate", "lt", -1.5)
    assert parse("custom.plan:*") == Condition("custom.plan", "exists")
    assert parse('created_at > "2026-01-01"') == Condition("created_at", "gt", "2026-01-01")


def test_and_binds_tighter_than_or_and_juxtaposition_is_and() -> None:
    tree = parse("a = 1 OR b = 2 c = 3")
    assert tree == Group(
        "OR",
        (Condition("a", "eq", 1), Group("AND", (Condition("b", "eq", 2), Condition("c", "eq", 3)))),
    )


def test_not_and_minus_negate_and_parentheses_group() -> None:
    assert parse("NOT (a = 1 OR b = 2)") == Not(
        Group("OR", (Condition("a", "eq", 1), Condition("b", "eq", 2)))
    )
    assert parse("-source = web") == Not(Condition("source", "eq", "web"))


def test_quoted_strings_keep_escaped_quotes() -> None:
    assert parse(r'title = "say \"hi\""') == Condition("title", "eq", 'say "hi"')


def test_empty_expression_means_no_filter() -> None:
    assert parse("   ") is None


@pytest.mark.parametrize(
    "text",
    ["score >=", "(a = 1", "a = 1)", "= 3", "a = 1 AND", "a == 1", "a = *", "AND", 'a = "open'],
)
def test_malformed_expressions_are_invalid_and_name_the_filter(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse(text)
    assert [v.field for v in caught.value.violations] == ["filter"]


def test_runaway_nesting_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        parse("(" * 100 + "a = 1" + ")" * 100)
