"""The predicate tree that both the `filter` expression and segment rules compile to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Value = str | int | float | bool | None | list["Value"]

# Operators a condition may use. The expression language produces a subset
# (eq, neq, gt, gte, lt, lte, contains, exists); segment rules use them all.
OPERATORS = frozenset(
    {
        "eq",
        "neq",
        "gt",
        "gte",
        "lt",
        "lte",
        "between",
        "in",
        "not_in",
        "contains",
        "not_contains",
        "starts_with",
        "exists",
        "not_exists",
        "within_last",
    }
)


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Value = None


@dataclass(frozen=True)
class Group:
    kind: Literal["AND", "OR"]
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    child: Node


Node = Condition | Group | Not


def all_of(nodes: list[Node]) -> Node | None:
    """AND of the given nodes, or None when there is nothing to filter on."""
    if not nodes:
        return None
    return nodes[0] if len(nodes) == 1 else Group("AND", tuple(nodes))
