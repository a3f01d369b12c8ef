"""Which column of the file feeds which lead field, and one row's values checked and
normalised the way the API checks a lead.

Mapping: explicit "Header=field" pairs first; every other column by a table of common
header spellings ("E-mail", "Email Address", "First Name", "Job Title", "Company", …); any
column left over becomes the custom field named after it, so no data is dropped silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from email_validator import EmailNotValidError

from server.companies import linking
from server.errors import FieldViolation, InvalidArgument
from server.fields import MAX_CUSTOM_BYTES, MAX_TEXT, NUL_MESSAGE, has_nul
from server.filtering.fields import CUSTOM_KEY, CUSTOM_PREFIX, LEAD_STATUSES
from server.leads import emails
from server.leads.phones import to_e164

LEAD_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "title",
    "phone",
    "company",
    "source",
    "score",
    "status",
)
FULL_NAME = "full_name"  # split into first and last name
SKIP = "skip"
ERROR_COLUMN = "import_error"  # added by the failed-rows download
MAX_VALUE_SHOWN = 200
NUL_REASON = f"{NUL_MESSAGE} (U+0000)"

_SYNONYMS = {
    "email": (
        "email emailaddress mail emailid workemail businessemail primaryemail e "
        "contactemail useremail courriel correo"
    ),
    "first_name": "firstname first givenname forename fname vorname prenom nombre",
    "last_name": "lastname last surname familyname lname nachname nom apellido",
    FULL_NAME: "name fullname contactname contact person",
    "title": "title jobtitle position role jobrole designation",
    "phone": "phone phonenumber telephone tel mobile mobilephone cell cellphone workphone",
    "company": "company companyname organization organisation org account accountname employer",
    "source": "source leadsource origin",
    "score": "score leadscore",
    "status": "status leadstatus stage",
}
_AUTO = {alias: target for target, words in _SYNONYMS.items() for alias in words.split()}


def _squash(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


def custom_key_for(header: str) -> str:
    """`Annual Revenue (USD)` → `annual_revenue_usd`; "" when nothing usable is left."""
    key = re.sub(r"[^a-z0-9]+", "_", header.strip().lower()).strip("_")[:64]
    if key and key[0].isdigit():
        key = f"_{key}"[:64]
    return key if CUSTOM_KEY.match(key) else ""


def check_target(target: str) -> str | None:
    """Why `target` is not a field a column can map to, or None."""
    if target in LEAD_FIELDS or target in (FULL_NAME, SKIP):
        return None
    if target.startswith(CUSTOM_PREFIX) and CUSTOM_KEY.match(target[len(CUSTOM_PREFIX) :]):
        return None
    return (
        f"unknown field {target!r}: use a lead field ({', '.join(LEAD_FIELDS)}), "
        "full_name, custom.<key> or skip"
    )


def parse_pairs(pairs: Sequence[str]) -> list[tuple[str, str]]:
    """ "Header=field" pairs (split at the last "=": headers may contain one)."""
    parsed: list[tuple[str, str]] = []
    violations: list[FieldViolation] = []
    for index, pair in enumerate(pairs):
        header, sep, target = pair.rpartition("=")
        header, target = header.strip(), target.strip()
        problem = "expected Header=field" if not sep or not header else check_target(target)
        if problem:
            violations.append(FieldViolation(f"mapping[{index}]", problem))
        else:
            parsed.append((header, target))
    if violations:
        raise InvalidArgument(
            message="; ".join(f"{v.field}: {v.description}" for v in violations),
            reason="IMPORT_MAPPING_INVALID",
            violations=violations,
        )
    return parsed


def resolve(header: str, explicit: dict[str, str]) -> str:
    """The field a column feeds: explicit (exact header, then case-insensitive), else the
    common spelling, else a custom field named after it; SKIP for nothing usable (and for
    the error column of a downloaded error file being imported again)."""
    if header in explicit:
        return explicit[header]
    lowered = {name.lower(): target for name, target in explicit.items()}
    if header.lower() in lowered:
        return lowered[header.lower()]
    if header == ERROR_COLUMN:
        return SKIP
    auto = _AUTO.get(_squash(header))
    if auto is not None:
        return auto
    key = custom_key_for(header)
    return f"{CUSTOM_PREFIX}{key}" if key else SKIP


@dataclass(frozen=True)
class Problem:
    column: str
    value: str
    reason: str


@dataclass
class LeadRow:
    """A valid row, ready for the staging table."""

    email: str
    values: dict[str, str] = field(default_factory=dict)  # text fields given a value
    score: int | None = None
    status: str | None = None
    custom: dict[str, Any] = field(default_factory=dict)
    phone_e164: str = ""
    domain: str | None = None  # the email's domain, unless a free-mail one


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return without_nul(text[:MAX_VALUE_SHOWN])


def without_nul(text: str) -> str:
    """Text safe to store and show: each NUL as U+FFFD, so a person sees where it was."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


@lru_cache(maxsize=4096)
def _e164(phone: str, country: str) -> str:
    return to_e164(phone, country)


def _text(value: Any) -> str | None:
    """A scalar as text (JSON numbers and booleans too); None for a nested value."""
    if isinstance(value, str):
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def build_row(cells: Iterable[tuple[str, str, Any]]) -> tuple[LeadRow | None, list[Problem]]:
    """One row from (column, target field, value) triples: the lead, or its problems."""
    problems: list[Problem] = []
    email_column, email_raw = "", ""
    values: dict[str, str] = {}
    custom: dict[str, Any] = {}
    score: int | None = None
    status: str | None = None
    for column, target, value in cells:
        if has_nul(value):
            # PostgreSQL stores no NUL in text or jsonb (a JSON "\u0000" can carry one).
            problems.append(Problem(column, _shown(value), NUL_REASON))
            continue
        if target.startswith(CUSTOM_PREFIX):
            if value is None or value == "":
                continue
            custom[target[len(CUSTOM_PREFIX) :]] = (
                value.strip() if isinstance(value, str) else value
            )
            continue
        text = _text(value)
        if text is None:
            problems.append(Problem(column, _shown(value), f"{target} must be a single value"))
            continue
        if not text:
            continue
        if target == "email":
            email_column, email_raw = column, text
        elif target == FULL_NAME:
            first, _, last = text.partition(" ")
            values.setdefault("first_name", first)
            if last.strip():
                values.setdefault("last_name", last.strip())
        elif target == "score":
            score = _score(column, text, problems)
        elif target == "status":
            status = _status(column, text, problems)
        elif len(text) > MAX_TEXT:
            reason = f"{target} is longer than {MAX_TEXT} characters"
            problems.append(Problem(column, _shown(text), reason))
        else:
            values[target] = text
    email = _email(email_column, email_raw, problems)
    if problems:
        return None, problems
    return _lead(email, values, score, status, custom, problems)


@dataclass(frozen=True)
class CsvPlan:
    """A CSV header's mapping by column index, so a row is read without a dict per row."""

    email: tuple[int, str]
    texts: tuple[tuple[int, str, str], ...]  # (index, column, lead field)
    custom: tuple[tuple[int, str, str], ...]  # (index, column, custom key)
    full_name: tuple[int, str] | None = None
    score: tuple[int, str] | None = None
    status: tuple[int, str] | None = None

    @classmethod
    def of(cls, plan: Sequence[tuple[int, str, str]]) -> CsvPlan:
        by_target = {target: (index, column) for index, column, target in plan}
        texts = tuple(
            (i, c, t)
            for i, c, t in plan
            if t in LEAD_FIELDS and t not in ("email", "score", "status")
        )
        custom = tuple(
            (i, c, t[len(CUSTOM_PREFIX) :]) for i, c, t in plan if t.startswith(CUSTOM_PREFIX)
        )
        return cls(
            email=by_target["email"],
            texts=texts,
            custom=custom,
            full_name=by_target.get(FULL_NAME),
            score=by_target.get("score"),
            status=by_target.get("status"),
        )


def build_csv_row(fields: list[str], plan: CsvPlan) -> tuple[LeadRow | None, list[Problem]]:
    """build_row for a CSV record (every cell text), the hot path of a large import."""
    size = len(fields)
    if any("\x00" in cell for cell in fields) and (nul := _nul_cells(fields, plan)):
        return None, nul
    problems: list[Problem] = []
    values: dict[str, str] = {}
    for index, column, name in plan.texts:
        if index < size and (text := fields[index].strip()):
            if len(text) > MAX_TEXT:
                reason = f"{name} is longer than {MAX_TEXT} characters"
                problems.append(Problem(column, _shown(text), reason))
            else:
                values[name] = text
    custom = {
        key: text
        for index, _, key in plan.custom
        if index < size and (text := fields[index].strip())
    }
    if plan.full_name is not None and plan.full_name[0] < size:
        first, _, last = fields[plan.full_name[0]].strip().partition(" ")
        if first:
            values.setdefault("first_name", first)
        if last.strip():
            values.setdefault("last_name", last.strip())
    score = status = None
    if plan.score is not None and plan.score[0] < size and (text := fields[plan.score[0]].strip()):
        score = _score(plan.score[1], text, problems)
    if (
        plan.status is not None
        and plan.status[0] < size
        and (text := fields[plan.status[0]].strip())
    ):
        status = _status(plan.status[1], text, problems)
    index, column = plan.email
    email = _email(column, fields[index] if index < size else "", problems)
    if problems:
        return None, problems
    return _lead(email, values, score, status, custom, problems)


def _nul_cells(fields: list[str], plan: CsvPlan) -> list[Problem]:
    """A problem for each mapped cell holding a NUL (a skipped column's is never stored)."""
    mapped = [plan.email, plan.full_name, plan.score, plan.status]
    mapped += [(index, column) for index, column, _ in (*plan.texts, *plan.custom)]
    return [
        Problem(column, _shown(fields[index]), NUL_REASON)
        for index, column in sorted(m for m in mapped if m is not None)
        if index < len(fields) and "\x00" in fields[index]
    ]


def _email(column: str, raw: str, problems: list[Problem]) -> str:
    text = raw.strip()
    if not text:
        problems.append(Problem(column, "", "email is required"))
        return ""
    try:
        return emails.normalise(text)
    except EmailNotValidError as exc:
        problems.append(Problem(column, _shown(text), f"not a valid email address: {exc}"))
        return ""


def _status(column: str, text: str, problems: list[Problem]) -> str | None:
    status = text.lower()
    if status not in LEAD_STATUSES:
        reason = f"unknown status {text!r}: one of {', '.join(sorted(LEAD_STATUSES))}"
        problems.append(Problem(column, _shown(text), reason))
        return None
    return status


def _lead(
    email: str,
    values: dict[str, str],
    score: int | None,
    status: str | None,
    custom: dict[str, Any],
    problems: list[Problem],
) -> tuple[LeadRow | None, list[Problem]]:
    # json.dumps only for rows that could be near the limit (escaping can grow text 6x).
    rough = sum(len(k) + len(str(v)) for k, v in custom.items()) if custom else 0
    if rough > MAX_CUSTOM_BYTES // 8 and len(json.dumps(custom)) > MAX_CUSTOM_BYTES:
        problems.append(Problem("", "", f"custom fields exceed {MAX_CUSTOM_BYTES} bytes"))
        return None, problems
    phone = values.get("phone", "")
    return (
        LeadRow(
            email=email,
            values=values,
            score=score,
            status=status,
            custom=custom,
            phone_e164=_e164(phone, str(custom.get("country", ""))) if phone else "",
            domain=linking.company_domain(email.rpartition("@")[2]),
        ),
        [],
    )


def _score(column: str, text: str, problems: list[Problem]) -> int | None:
    try:
        number = float(text)
    except ValueError:
        problems.append(Problem(column, _shown(text), "score must be a whole number"))
        return None
    if not number.is_integer() or number < 0 or number > 2**31 - 1:
        problems.append(Problem(column, _shown(text), "score must be a whole number ≥ 0"))
        return None
    return int(number)


def merge(into: LeadRow, later: LeadRow) -> None:
    """Two rows of one email in a batch: the later row's non-empty values win."""
    into.values.update(later.values)
    into.custom.update(later.custom)
    if later.score is not None:
        into.score = later.score
    if later.status is not None:
        into.status = later.status
    if later.values.get("phone"):
        into.phone_e164 = later.phone_e164
