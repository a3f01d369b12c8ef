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

from server.companies.mail_domains import is_shared_mail_domain
from server.errors import FieldViolation, InvalidArgument
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
MAX_TEXT = 500  # as the API: server/leads/service.py
MAX_CUSTOM_BYTES = 64 * 1024
MAX_VALUE_SHOWN = 200

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
    return text[:MAX_VALUE_SHOWN]


@lru_cache(maxsize=50_000)
def _company_domain(domain: str) -> str | None:
    return None if is_shared_mail_domain(domain) else domain


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
        if isinstance(value, str) and "\x00" in value:
            # PostgreSQL stores no NUL in text or jsonb (a JSON "\u0000" can carry one).
            problems.append(Problem(column, _shown(value.replace("\x00", "")), "contains a NUL"))
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
            status = text.lower()
            if status not in LEAD_STATUSES:
                reason = f"unknown status {text!r}: one of {', '.join(sorted(LEAD_STATUSES))}"
                problems.append(Problem(column, _shown(text), reason))
        elif len(text) > MAX_TEXT:
            reason = f"{target} is longer than {MAX_TEXT} characters"
            problems.append(Problem(column, _shown(text), reason))
        else:
            values[target] = text
    email = ""
    if not email_raw:
        problems.append(Problem(email_column, "", "email is required"))
    else:
        try:
            email = emails.normalise(email_raw)
        except EmailNotValidError as exc:
            problems.append(
                Problem(email_column, _shown(email_raw), f"not a valid email address: {exc}")
            )
    # json.dumps only for rows that could be near the limit (escaping can grow text 6x).
    rough = sum(len(k) + len(str(v)) for k, v in custom.items()) if custom else 0
    if rough > MAX_CUSTOM_BYTES // 8 and len(json.dumps(custom)) > MAX_CUSTOM_BYTES:
        problems.append(Problem("", "", f"custom fields exceed {MAX_CUSTOM_BYTES} bytes"))
    if problems:
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
            domain=_company_domain(email.rpartition("@")[2]),
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
