"""An HTTP_JSON connector's field_map: the response paths it reads (a JSONPath-lite of our
own: `$.data.job_title`, `data.emails[0].address`, `$['weird key']`), the lead and company
fields it may write, and the coercion of a provider's value to what such a field holds.

A value that does not fit its field is skipped, never an error: providers are loose with
types, and one odd value must not lose the rest of an answer."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import pycountry

from server.companies.validation import normalise_domain
from server.enrichment.model import COMPANY_TARGETS, LEAD_TARGETS
from server.fields import MAX_CUSTOM_BYTES, MAX_TEXT, has_nul

Step = str | int  # a key of an object, or an index of an array
Coercion = Callable[[Any], Any | None]  # None: the value does not fit, skip it
MAX_PATH = 500  # characters
MAX_STEPS = 32
MAX_FIELD_MAP = 100  # entries
CUSTOM_PREFIX = "custom."
COMPANY_PREFIX = "company."
CUSTOM_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_EMPLOYEES = 2**31 - 1  # companies.employee_count is an Integer column
MAX_REVENUE = 2**63 - 1  # companies.annual_revenue is a BigInteger column

# One step after the root: `.name`, `[0]`, `['any key']` or `["any key"]`.
_STEP = re.compile(
    r"""\.(?P<name>[A-Za-z_][A-Za-z0-9_-]*)"""
    r"""|\[(?P<index>[0-9]{1,9})\]"""
    r"""|\['(?P<single>[^']*)'\]"""
    r"""|\["(?P<double>[^"]*)"\]"""
)


@functools.lru_cache(maxsize=1024)
def parse_path(path: str) -> tuple[Step, ...]:
    """The steps of a path; ValueError saying what is wrong. `$` alone is the whole
    document; the `$` may be left out (`data.title`). Cached: a batch reads the same few
    paths for every lead."""
    if not path:
        raise ValueError("is empty")
    if len(path) > MAX_PATH:
        raise ValueError(f"is longer than {MAX_PATH} characters")
    # After the root: `$.a` is read as `.a`, a bare `a.b` as `.a.b`, `[0]` as it is.
    rest = path[1:] if path.startswith("$") else path if path.startswith("[") else "." + path
    steps: list[Step] = []
    position = 0
    while position < len(rest):
        match = _STEP.match(rest, position)
        if match is None:
            raise ValueError(f"cannot read {rest[position:]!r}: use $.a.b, a[0].b or $['a key']")
        steps.append(_step(match))
        position = match.end()
    if len(steps) > MAX_STEPS:
        raise ValueError(f"has more than {MAX_STEPS} steps")
    return tuple(steps)


def _step(match: re.Match[str]) -> Step:
    index = match.group("index")
    if index is not None:
        return int(index)
    return next(g for g in match.group("name", "single", "double") if g is not None)


def lookup(document: Any, steps: tuple[Step, ...]) -> tuple[bool, Any]:
    """(True, value) at the steps, (False, None) when the document has nothing there."""
    current = document
    for step in steps:
        if not _has(current, step):
            return False, None
        current = current[step]
    return True, current


def _has(container: Any, step: Step) -> bool:
    if isinstance(step, int):
        return isinstance(container, list) and step < len(container)
    return isinstance(container, dict) and step in container


def check_path(path: str) -> str | None:
    """Why a response path cannot be read, or None when it can."""
    if has_nul(path):
        return "cannot contain the NUL character"
    try:
        parse_path(path)
    except ValueError as exc:
        return str(exc)
    return None


def check_target(target: str) -> str | None:
    """Why a connector cannot write this field, or None when it can."""
    if target in LEAD_TARGETS:
        return None
    if target.startswith(CUSTOM_PREFIX):
        if CUSTOM_KEY.fullmatch(target[len(CUSTOM_PREFIX) :]):
            return None
        return "custom keys are letters, digits or _ (not a digit first), up to 64"
    if target.startswith(COMPANY_PREFIX):
        if target[len(COMPANY_PREFIX) :] in COMPANY_TARGETS:
            return None
        return "unknown company field: one of " + ", ".join(COMPANY_TARGETS)
    return "unknown field: one of " + ", ".join(LEAD_TARGETS) + ", custom.<key>, company.<field>"


def check_field_map(field_map: Mapping[str, str]) -> list[tuple[str, str]]:
    """What is wrong with an HTTP_JSON connector's field_map (response path → target)."""
    if not field_map:
        return [("field_map", "maps no response path to a field")]
    problems: list[tuple[str, str]] = []
    if len(field_map) > MAX_FIELD_MAP:
        problems.append(("field_map", f"more than {MAX_FIELD_MAP} entries"))
    for path, target in field_map.items():
        reason = check_path(path)
        if reason is not None:
            problems.append(("field_map", f"path {path!r} {reason}"))
        reason = check_target(target)
        if reason is not None:
            problems.append(("field_map", f"field {target!r} for {path!r}: {reason}"))
    return problems


def coerce(target: str, value: Any) -> Any | None:
    """The value as the (valid) target holds it; None when it does not fit and is skipped."""
    if value is None:
        return None
    if target.startswith(CUSTOM_PREFIX):
        return _custom(value)
    coercion: Coercion = _COERCIONS.get(target, _text)
    return coercion(value)


def _text(value: Any) -> str | None:
    """A string, stripped, or a number written out; never empty, NUL or over MAX_TEXT."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 14155550100.0 is a phone number, not "14155550100.0"
    text = str(value).strip() if isinstance(value, str | int | float) else ""
    return text if text and len(text) <= MAX_TEXT and not has_nul(text) else None


def _number(value: Any) -> float | None:
    """A finite, non-negative number from a JSON number or a numeric string ("1,200")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip().replace(",", "").replace("_", ""))
        except ValueError:
            return None  # a range such as "51-200" is no count: skipped, not guessed
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _count(value: Any) -> int | None:
    number = _number(value)
    if number is None or not number.is_integer() or number > MAX_EMPLOYEES:
        return None
    return int(number)


def _amount(value: Any) -> int | None:
    # The column holds whole currency units: a fraction of a unit says nothing about a firm.
    number = _number(value)
    return None if number is None or number > MAX_REVENUE else round(number)


def _domain(value: Any) -> str | None:
    text = _text(value)
    return (normalise_domain(text) or None) if text is not None else None


def _country(value: Any) -> str | None:
    """An ISO 3166-1 alpha-2 code from a code or a name ("united states" → "US")."""
    text = _text(value)
    if text is None:
        return None
    try:
        return str(pycountry.countries.lookup(text).alpha_2)
    except LookupError:
        return None


def _custom(value: Any) -> Any | None:
    """Any JSON value a custom field can hold: text stripped; empty text, arrays and objects
    (nothing known) and values with NUL or over the custom_fields size skipped."""
    if isinstance(value, str):
        value = value.strip()
    if value in ("", [], {}) or has_nul(value) or len(json.dumps(value)) > MAX_CUSTOM_BYTES:
        return None
    return value


_COERCIONS: dict[str, Coercion] = {
    "company.domain": _domain,
    "company.country": _country,
    "company.employee_count": _count,
    "company.annual_revenue": _amount,
}
