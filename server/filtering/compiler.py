"""Compile a predicate tree (from a `filter` expression or a segment rule) into one SQL
predicate. This is the single place where filter semantics live:

- string comparisons are case-insensitive; `contains`/`starts_with` match substrings/prefixes;
- a comparison with a missing value is false, and each negative operator (neq, not_in,
  not_contains, not_exists) is the exact complement of its positive one;
- custom fields (`custom.<key>`) are typed by the value compared with: numbers compare
  numerically (only with numeric values), booleans exactly, strings case-insensitively
  (ISO dates compare correctly as strings).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Numeric,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    not_,
    or_,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB

from server.errors import InvalidArgument
from server.filtering.ast import OPERATORS, Condition, Group, Node, Not, Value
from server.filtering.fields import (
    CUSTOM_KEY,
    CUSTOM_PREFIX,
    LEAD_FIELDS,
    LEAD_FIELDS_COMPANY_JOINED,
    FieldSpec,
    Kind,
    custom_fields_column,
)

NEGATIONS = {"neq": "eq", "not_in": "in", "not_contains": "contains", "not_exists": "exists"}
ORDERING = {"gt", "gte", "lt", "lte", "between"}
TEXT_OPS = {"contains", "starts_with"}
MAX_LIST = 1000

Predicate = ColumnElement[bool]


class Compiler:
    def __init__(self, fields: Mapping[str, FieldSpec], *, label: str) -> None:
        self.fields = fields
        self.label = label  # the request field errors are reported against

    def fail(self, description: str) -> InvalidArgument:
        return InvalidArgument.on(self.label, description, reason="FILTER_INVALID")

    def compile(self, node: Node) -> Predicate:
        if isinstance(node, Group):
            if not node.children:
                raise self.fail(f"empty {node.kind} group")
            parts = [self.compile(child) for child in node.children]
            return and_(*parts) if node.kind == "AND" else or_(*parts)
        if isinstance(node, Not):
            return not_(func.coalesce(self.compile(node.child), false()))
        return self.condition(node)

    def condition(self, cond: Condition) -> Predicate:
        if cond.op not in OPERATORS:
            raise self.fail(f"unknown operator {cond.op!r} for field {cond.field!r}")
        if cond.op in NEGATIONS:
            positive = Condition(cond.field, NEGATIONS[cond.op], cond.value)
            return not_(func.coalesce(self.condition(positive), false()))
        if cond.field.startswith(CUSTOM_PREFIX):
            return self.custom(cond)
        spec = self.fields.get(cond.field)
        if spec is None:
            raise self.fail(f"unknown field {cond.field!r}")
        predicate = self.builtin(spec, cond)
        return spec.scope(predicate) if spec.scope is not None else predicate

    # -- built-in columns -------------------------------------------------------------

    def builtin(self, spec: FieldSpec, cond: Condition) -> Predicate:
        column = spec.column()
        if cond.op == "exists":
            if spec.nullable:
                return column.is_not(None)
            if spec.kind in (Kind.NUMBER, Kind.ENUM):
                return true()  # always set: a NOT NULL column with a default
            return column != literal("")
        if spec.kind is Kind.NUMBER:
            # literal(): a fraction stays a fraction against an integer column (50.5, not 50).
            return self.ordered(column, cond, lambda c, v: literal(self.number(c, v)))
        if spec.kind is Kind.TIMESTAMP:
            if cond.op == "within_last":
                days = self.number(cond, cond.value)
                return column >= func.now() - timedelta(days=float(days))
            return self.ordered(column, cond, self.timestamp)
        if spec.kind is Kind.ENUM:
            if cond.op not in ("eq", "in"):
                raise self.fail(f"operator {cond.op!r} does not apply to {cond.field!r}")
            return self.ordered(column, cond, lambda c, v: self.enum(spec, c, v))
        if spec.kind is Kind.ID and cond.op in ("eq", "in"):
            # Ids are opaque and exact: comparing them as stored lets an index find them.
            return self.ordered(column, cond, self.string)
        compared = self.text(func.lower(column), cond)
        if cond.op in ORDERING:
            # A built-in string field stores "absent" as '': ordering is false for it.
            return and_(column != "", compared)
        return compared

    def text(self, lowered: ColumnElement[Any], cond: Condition) -> Predicate:
        # Both sides are lower-cased by PostgreSQL, so case folding agrees (final sigma, İ).
        if cond.op in TEXT_OPS:
            needle = _escape_like(self.string(cond, cond.value))
            pattern = f"%{needle}%" if cond.op == "contains" else f"{needle}%"
            return lowered.like(func.lower(literal(pattern)), escape="\\")
        return self.ordered(lowered, cond, lambda c, v: func.lower(literal(self.string(c, v))))

    def ordered(
        self,
        column: ColumnElement[Any],
        cond: Condition,
        coerce: Callable[[Condition, Value], object],
    ) -> Predicate:
        op, value = cond.op, cond.value
        if op == "eq":
            return column == coerce(cond, value)
        if op == "in":
            items = self.items(cond)
            return column.in_([coerce(cond, item) for item in items])
        if op == "between":
            low, high = self.pair(cond)
            return and_(column >= coerce(cond, low), column <= coerce(cond, high))
        if op == "gt":
            return column > coerce(cond, value)
        if op == "gte":
            return column >= coerce(cond, value)
        if op == "lt":
            return column < coerce(cond, value)
        if op == "lte":
            return column <= coerce(cond, value)
        raise self.fail(f"operator {op!r} does not apply to {cond.field!r}")

    # -- custom fields ----------------------------------------------------------------

    def custom(self, cond: Condition) -> Predicate:
        key = cond.field[len(CUSTOM_PREFIX) :]
        if not CUSTOM_KEY.match(key):
            raise self.fail(f"invalid custom field name {cond.field!r}")
        document = custom_fields_column()
        raw = document[key]
        if cond.op == "exists":
            return and_(document.has_key(key), func.jsonb_typeof(raw) != "null")
        if cond.op == "within_last":
            days = self.number(cond, cond.value)
            since = datetime.now(UTC) - timedelta(days=float(days))
            value = self.custom_typed(key, "string")
            # Only date-shaped strings count, and only from `since` up to now.
            return and_(
                value.op("~")(r"^\d{4}-\d{2}-\d{2}"),
                value >= since.date().isoformat(),
                value <= datetime.now(UTC).isoformat(),
            )
        sample = self.sample(cond)
        if isinstance(sample, bool):
            if cond.op not in ("eq", "in"):
                raise self.fail(f"operator {cond.op!r} does not apply to a boolean")
            return self.ordered(raw, cond, lambda c, v: cast(literal(self.boolean(c, v)), JSONB))
        if isinstance(sample, int | float):
            if cond.op in TEXT_OPS:
                raise self.fail(f"operator {cond.op!r} needs a string value")
            return self.ordered(self.custom_typed(key, "number"), cond, self.number)
        return self.text(func.lower(self.custom_typed(key, "string")), cond)

    def custom_typed(self, key: str, json_type: str) -> ColumnElement[Any]:
        """The value as SQL of one JSON type, NULL for any other (CASE keeps casts safe)."""
        raw = custom_fields_column()[key]
        text_value = raw.astext
        typed: ColumnElement[Any] = (
            cast(text_value, Numeric) if json_type == "number" else text_value
        )
        return case((func.jsonb_typeof(raw) == json_type, typed), else_=None)

    # -- values -----------------------------------------------------------------------

    def sample(self, cond: Condition) -> Value:
        if cond.op in ("in", "between"):
            items = self.items(cond)
            return items[0] if items else None
        if cond.value is None:
            raise self.fail(f"{cond.field!r} {cond.op} needs a value")
        return cond.value

    def items(self, cond: Condition) -> list[Value]:
        if not isinstance(cond.value, list) or not cond.value:
            raise self.fail(f"{cond.field!r} {cond.op} needs a non-empty list of values")
        if len(cond.value) > MAX_LIST:
            raise self.fail(f"{cond.field!r} {cond.op} takes at most {MAX_LIST} values")
        kinds = {type(v) for v in cond.value}
        if len(kinds) > 1 and not kinds <= {int, float}:
            raise self.fail(f"{cond.field!r} {cond.op} values must all have the same type")
        return cond.value

    def pair(self, cond: Condition) -> tuple[Value, Value]:
        items = self.items(cond)
        if len(items) != 2:
            raise self.fail(f"{cond.field!r} between needs exactly two values [low, high]")
        return items[0], items[1]

    def string(self, cond: Condition, value: Value) -> str:
        if not isinstance(value, str):
            raise self.fail(f"{cond.field!r} needs a string value, got {value!r}")
        if "\x00" in value:
            raise self.fail(f"{cond.field!r}: a value cannot contain the NUL character")
        return value

    def number(self, cond: Condition, value: Value) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{cond.field!r} needs a number, got {value!r}")
        return value

    def boolean(self, cond: Condition, value: Value) -> str:
        if not isinstance(value, bool):
            raise self.fail(f"{cond.field!r} needs a boolean, got {value!r}")
        return "true" if value else "false"

    def timestamp(self, cond: Condition, value: Value) -> datetime:
        if isinstance(value, str):
            parsed = parse_timestamp(value)
            if parsed is not None:
                return parsed
        raise self.fail(f"{cond.field!r} needs an RFC 3339 timestamp or a date, got {value!r}")

    def enum(self, spec: FieldSpec, cond: Condition, value: Value) -> str:
        text = self.string(cond, value).lower().removeprefix("lead_status_")
        if text not in spec.enum_values:
            allowed = ", ".join(sorted(spec.enum_values))
            raise self.fail(f"{cond.field!r} must be one of {allowed}, got {value!r}")
        return text


def parse_timestamp(value: str) -> datetime | None:
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def compile_predicate(
    node: Node | None, *, label: str = "filter", company_joined: bool = False
) -> Predicate:
    """The SQL predicate for a lead filter; TRUE when there is nothing to filter on.
    `company_joined`: for a statement that LEFT JOINs the lead's company as `companies`."""
    if node is None:
        return true()
    fields = LEAD_FIELDS_COMPANY_JOINED if company_joined else LEAD_FIELDS
    return Compiler(fields, label=label).compile(node)


__all__ = ["Compiler", "compile_predicate", "parse_timestamp"]
