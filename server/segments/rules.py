"""Segment rules: the stored form of a rule tree, and its validation.

A rule is the same predicate tree (server.filtering.ast) that `filter` expressions parse
into, so segment membership and ListLeads filters share one compiler and one meaning.
Stored as JSON: {"combinator": "AND"|"OR", "rules": [condition | group, …]} where a
condition is {"field", "op", "value"}.
"""

from __future__ import annotations

from typing import Any, Literal

from server.errors import FieldViolation, InvalidArgument
from server.filtering.ast import Condition, Group, Node, Value
from server.filtering.compiler import compile_predicate

MAX_DEPTH = 8
MAX_CONDITIONS = 200
RULES_FIELD = "segment.rules"


def _invalid(path: str, description: str) -> InvalidArgument:
    return InvalidArgument(
        message=f"{path}: {description}",
        reason="SEGMENT_RULES_INVALID",
        violations=[FieldViolation(path, description)],
    )


def validate(tree: Node, path: str = RULES_FIELD) -> None:
    """Every problem is reported against the path of the node that has it."""
    conditions = _validate_node(tree, path, depth=1)
    if conditions > MAX_CONDITIONS:
        raise _invalid(path, f"more than {MAX_CONDITIONS} conditions")


def _validate_node(node: Node, path: str, depth: int) -> int:
    if depth > MAX_DEPTH:
        raise _invalid(path, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, Group):
        if not node.children:
            raise _invalid(path, "a group needs at least one rule")
        return sum(
            _validate_node(child, f"{path}.rules[{i}]", depth + 1)
            for i, child in enumerate(node.children)
        )
    if isinstance(node, Condition):
        # Compiling one condition checks its field, operator and value type.
        compile_predicate(node, label=f"{path}.condition")
        return 1
    raise _invalid(path, "unsupported rule node")


def to_json(node: Node) -> dict[str, Any]:
    if isinstance(node, Group):
        return {"combinator": node.kind, "rules": [to_json(child) for child in node.children]}
    if isinstance(node, Condition):
        return {"field": node.field, "op": node.op, "value": node.value}
    raise ValueError(f"cannot store {node!r}")


def from_json(data: dict[str, Any]) -> Node:
    if "rules" in data:
        kind: Literal["AND", "OR"] = "OR" if data.get("combinator") == "OR" else "AND"
        return Group(kind, tuple(from_json(child) for child in data["rules"]))
    value: Value = data.get("value")
    return Condition(field=data["field"], op=data["op"], value=value)
