"""Normalising and checking what a client sends for a company: one error naming every bad
field, so a client can fix them all at once."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pycountry

from server.errors import FieldViolation, InvalidArgument
from server.fields import MAX_TEXT, custom_field_violations

MAX_DOMAIN = 253
EARLIEST_FOUNDING = 1000
DEFAULT_CURRENCY = "USD"

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_TLD = re.compile(r"^(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$")

# Fields a client may set, and the update_mask paths that name them.
WRITABLE = (
    "name",
    "domain",
    "industry",
    "employee_count",
    "annual_revenue",
    "annual_revenue_currency",
    "country",
    "city",
    "founded_year",
    "website",
    "linkedin_url",
    "custom_fields",
    "parent_company_id",
)
CUSTOM_PATH = "custom_fields."
_ORDER = {name: i for i, name in enumerate(WRITABLE)}
_PLAIN_TEXT = ("name", "industry", "city")


@dataclass
class CompanyInput:
    """What a client sends: every writable field, with its default when not given."""

    name: str = ""
    domain: str = ""
    industry: str = ""
    employee_count: int | None = None
    annual_revenue: int | None = None
    annual_revenue_currency: str = ""
    country: str = ""
    city: str = ""
    founded_year: int | None = None
    website: str = ""
    linkedin_url: str = ""
    custom_fields: dict[str, Any] = field(default_factory=dict)
    parent_company_id: str = ""


def normalise_domain(raw: str) -> str | None:
    """ "https://WWW.Acme.com/about" → "acme.com"; "" stays ""; None when it is no domain.

    Accepts what people paste (a URL, a host with a port, a trailing dot) because the
    domain is the key leads are linked by: two spellings of one site must be one value."""
    text = raw.strip().lower()
    if not text:
        return ""
    if "://" in text:
        text = text.split("://", 1)[1]
    text = re.split(r"[/?#]", text, maxsplit=1)[0]
    if "@" in text:
        return None
    host, _, port = text.partition(":")
    if port and not port.isdigit():
        return None
    host = host.rstrip(".").removeprefix("www.")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = host.split(".")
    if (
        len(host) > MAX_DOMAIN
        or len(labels) < 2
        or not all(_LABEL.match(label) for label in labels)
        or not _TLD.match(labels[-1])
    ):
        return None
    return host


def normalise_url(raw: str) -> str | None:
    """An http(s) URL, with https:// added when no scheme is given; None when invalid."""
    text = raw.strip()
    if not text:
        return ""
    if "://" not in text:
        text = f"https://{text}"
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if normalise_domain(parts.hostname) is None or any(c.isspace() for c in text):
        return None
    return text


def _is_linkedin(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host == "linkedin.com" or host.endswith(".linkedin.com")


class _Checker:
    def __init__(self, data: CompanyInput, paths: set[str], prefix: str) -> None:
        self.data, self.paths, self.prefix = data, paths, prefix
        self.out = replace(data)
        self.violations: list[FieldViolation] = []

    def bad(self, name: str, description: str) -> None:
        self.violations.append(FieldViolation(f"{self.prefix}{name}", description))

    def run(self) -> CompanyInput:
        data, out, paths = self.data, self.out, self.paths
        for name in _PLAIN_TEXT:
            if name in paths:
                setattr(out, name, getattr(data, name).strip())
                if len(getattr(out, name)) > MAX_TEXT:
                    self.bad(name, f"longer than {MAX_TEXT} characters")
        if "name" in paths and not out.name:
            self.bad("name", "is required")
        if "domain" in paths:
            domain = normalise_domain(data.domain)
            if domain is None:
                self.bad("domain", f"{data.domain!r} is not a domain name such as example.com")
            else:
                out.domain = domain
        for name in ("website", "linkedin_url"):
            if name in paths:
                url = normalise_url(getattr(data, name))
                if url is None or len(url) > MAX_TEXT:
                    self.bad(name, "is not an http(s) URL")
                elif url and name == "linkedin_url" and not _is_linkedin(url):
                    self.bad(name, "is not a linkedin.com URL")
                else:
                    setattr(out, name, url)
        self.numbers()
        self.codes()
        if "custom_fields" in paths or any(p.startswith(CUSTOM_PATH) for p in paths):
            self.violations.extend(custom_field_violations(data.custom_fields, self.prefix))
        if "parent_company_id" in paths:
            out.parent_company_id = data.parent_company_id.strip()
        return out

    def numbers(self) -> None:
        data, paths = self.data, self.paths
        if "employee_count" in paths and (data.employee_count or 0) < 0:
            self.bad("employee_count", "must not be negative")
        if "annual_revenue" in paths and (data.annual_revenue or 0) < 0:
            self.bad("annual_revenue", "must not be negative")
        if "founded_year" in paths and data.founded_year is not None:
            this_year = datetime.now(UTC).year
            if not EARLIEST_FOUNDING <= data.founded_year <= this_year:
                self.bad("founded_year", f"must be between {EARLIEST_FOUNDING} and {this_year}")

    def codes(self) -> None:
        data, out, paths = self.data, self.out, self.paths
        if "country" in paths:
            out.country = data.country.strip().upper()
            if out.country and (
                len(out.country) != 2 or pycountry.countries.get(alpha_2=out.country) is None
            ):
                self.bad("country", f"{data.country!r} is not an ISO 3166-1 alpha-2 code")
        if "annual_revenue_currency" in paths:
            out.annual_revenue_currency = data.annual_revenue_currency.strip().upper()
            code = out.annual_revenue_currency
            if code and (len(code) != 3 or pycountry.currencies.get(alpha_3=code) is None):
                self.bad(
                    "annual_revenue_currency",
                    f"{data.annual_revenue_currency!r} is not an ISO 4217 currency code",
                )


def validate(data: CompanyInput, paths: set[str], *, prefix: str = "company.") -> CompanyInput:
    """Check the named fields; returns the input normalised, or raises one INVALID_ARGUMENT
    listing every violation."""
    checker = _Checker(data, paths, prefix)
    out = checker.run()
    # Reported in the order the fields are declared, however the checks were grouped.
    checker.violations.sort(key=lambda v: _ORDER.get(v.field[len(prefix) :].split(".")[0], 99))
    if checker.violations:
        raise InvalidArgument(
            message="; ".join(f"{v.field}: {v.description}" for v in checker.violations),
            reason="COMPANY_INVALID",
            violations=checker.violations,
        )
    return out
