"""From parsed records to writer batches: each row mapped and checked, rows of one email in
a batch merged, bad rows turned into row errors. Runs in the parser thread."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring as _quote  # type: ignore[attr-defined]
from typing import Any

from server import ids
from server.filtering.fields import CUSTOM_KEY, CUSTOM_PREFIX
from server.imports import mapping, parsing
from server.imports.enums import FileFormat
from server.imports.mapping import SKIP, LeadRow, Problem
from server.imports.writer import Batch, copy_text, given_mask

NESTED_CUSTOM = ("custom_fields", "custom")


class Plan:
    """How a record's cells feed lead fields, fixed once per job."""

    def __init__(
        self, file_format: FileFormat, explicit: list[tuple[str, str]], columns: list[str]
    ) -> None:
        self.format = file_format
        self.explicit = dict(explicit)
        self.columns = columns
        self._by_key: dict[str, str] = {}
        self.csv_plan: list[tuple[int, str, str]] = []
        if file_format == FileFormat.CSV:
            self.csv_plan = self._plan_csv()
            self.csv = mapping.CsvPlan.of(self.csv_plan)

    def _plan_csv(self) -> list[tuple[int, str, str]]:
        present = {c.lower() for c in self.columns}
        for header in self.explicit:
            if header.lower() not in present:
                raise parsing.ImportFailure(
                    f"the mapping names column {header!r}, which the file does not have "
                    f"(its columns: {', '.join(self.columns[:50])})"
                )
        plan: list[tuple[int, str, str]] = []
        seen: dict[str, str] = {}
        for index, column in enumerate(self.columns):
            if not column:
                continue
            target = mapping.resolve(column, self.explicit)
            if target == SKIP:
                continue
            if target in seen:
                raise parsing.ImportFailure(
                    f"columns {seen[target]!r} and {column!r} both map to {target}: "
                    f"map one of them to skip"
                )
            seen[target] = column
            plan.append((index, column, target))
        if "email" not in seen:
            raise parsing.ImportFailure(
                'no column maps to email: name it in the mapping ("Header=email"); '
                f"the file's columns: {', '.join(self.columns[:50])}"
            )
        return plan

    @property
    def mapped(self) -> frozenset[str]:
        """Lead fields some column feeds (all of them may, for JSON)."""
        if self.format != FileFormat.CSV:
            return frozenset(mapping.LEAD_FIELDS) | {"custom"}
        targets = {t for _, _, t in self.csv_plan}
        fields = {"custom" if t.startswith(CUSTOM_PREFIX) else t for t in targets}
        if mapping.FULL_NAME in fields:
            fields |= {"first_name", "last_name"}
        return frozenset(fields)

    def target(self, key: str) -> str:
        found = self._by_key.get(key)
        if found is None:
            found = self._by_key[key] = mapping.resolve(key, self.explicit)
        return found

    def row(self, cells: Any) -> tuple[LeadRow | None, list[Problem]]:
        """The lead a record describes, or its problems."""
        if self.format == FileFormat.CSV:
            width = len(self.columns)
            if len(cells) > width and any(c.strip() for c in cells[width:]):
                reason = f"the row has {len(cells)} fields; the header {width}"
                return None, [Problem("", "", reason)]
            return mapping.build_csv_row(cells, self.csv)
        if isinstance(cells, parsing.Unreadable):
            return None, [Problem("", "", cells.message)]
        if not isinstance(cells, dict):
            return None, [Problem("", "", "the record is not a JSON object")]
        triples: list[tuple[str, str, Any]] = []
        for key, value in cells.items():
            if key in NESTED_CUSTOM and isinstance(value, dict):
                for name, inner in value.items():
                    if not CUSTOM_KEY.match(name):
                        reason = "custom field keys are letters, digits, _ or -, up to 64"
                        return None, [Problem(f"{key}.{name}", "", reason)]
                    triples.append((f"{key}.{name}", f"{CUSTOM_PREFIX}{name}", inner))
                continue
            target = self.target(key)
            if target != SKIP:
                triples.append((key, target, value))
        return mapping.build_row(triples)


@dataclass(frozen=True)
class Options:
    default_source: str
    batch_rows: int
    create_only: bool


def _stage_row(ordinal: int, lead_id: str, row: LeadRow, options: Options) -> tuple[Any, ...]:
    values = row.values
    return (
        ordinal,
        lead_id,
        row.email,
        values.get("first_name"),
        values.get("last_name"),
        values.get("title"),
        values.get("phone"),
        row.phone_e164 or None,
        values.get("company"),
        values.get("source"),
        row.score,
        row.status,
        _json_object(row.custom) if row.custom else None,
        row.domain,
        given_mask(values.get("source"), row.score, row.status),
    )


def _json_object(values: dict[str, Any]) -> str:
    """json.dumps, several times faster for the usual all-text custom fields of a CSV."""
    if all(type(v) is str for v in values.values()):
        return "{" + ",".join(f"{_quote(k)}:{_quote(v)}" for k, v in values.items()) + "}"
    return json.dumps(values, ensure_ascii=False)


def _errors(number: int, problems: list[Problem], raw: Any) -> list[tuple[Any, ...]]:
    raw_json = json.dumps(_storable(raw), ensure_ascii=False)
    clean = mapping.without_nul
    return [
        (
            number,
            position,
            clean(p.column),
            clean(p.value),
            clean(p.reason),
            raw_json if position == 0 else None,
        )
        for position, p in enumerate(problems)
    ]


def _storable(raw: Any) -> Any:
    """The record with every NUL (a row error's usual cause) shown as U+FFFD: PostgreSQL's
    text and jsonb hold none."""
    if isinstance(raw, str):
        return mapping.without_nul(raw)
    if isinstance(raw, dict):
        return {_storable(k): _storable(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_storable(item) for item in raw]
    return raw


def batches(
    records: Iterator[parsing.Row], plan: Plan, options: Options, *, skip: int
) -> Iterator[Batch]:
    """Batches of `options.batch_rows` data rows, after the first `skip` (committed before)."""
    for _ in range(skip):
        if next(records, None) is None:
            return
    while True:
        batch = Batch()
        leads: dict[str, tuple[int, LeadRow]] = {}
        for number, cells, raw in records:
            batch.data_rows += 1
            row, problems = plan.row(cells)
            if row is None:
                batch.failed_rows += 1
                batch.errors.extend(_errors(number, problems, raw))
            else:
                earlier = leads.get(row.email)
                if earlier is None:
                    leads[row.email] = (len(leads), row)
                    batch.duplicates.append(0)
                else:
                    batch.duplicates[earlier[0]] += 1
                    if not options.create_only:
                        mapping.merge(earlier[1], row)
            if batch.data_rows >= options.batch_rows:
                break
        if batch.data_rows == 0:
            return
        fresh = ids.new_ids("lead", len(leads))
        batch.rows = [
            _stage_row(ordinal, fresh[ordinal], row, options) for ordinal, row in leads.values()
        ]
        batch.staged = copy_text(batch.rows)
        yield batch
