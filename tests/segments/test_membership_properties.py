"""Property-based tests of rule membership and of CSV formula neutralisation.

1. Rule membership equals an independent evaluation of the rule. Hypothesis draws a few
   companies and leads (titles, sources, scores, statuses, email domains, custom fields of
   every JSON type or missing, links to companies), creates them through gRPC in a fresh
   workspace, draws random rule trees (AND/OR, depth <= 3, every operator) with values taken
   partly from what the leads hold, creates RULE segments, and compares ListSegmentMembers
   with `Evaluator` below — plain Python written from the documented semantics (the module
   docstring of server/filtering/compiler.py and DESIGN.md), never calling the compiler:

   - strings compare case-insensitively; `contains` / `starts_with` are substring / prefix;
   - a comparison with a missing value is false (a built-in string is missing when empty,
     a timestamp or nullable number when unset, a `company.*` field when the lead has no
     company, a custom field when the key is absent or JSON null);
   - every negative operator (neq, not_in, not_contains, not_exists) is the exact
     complement of its positive one;
   - a custom field is typed by the value it is compared with: numbers only match JSON
     numbers, booleans only JSON booleans (exactly), strings only JSON strings;
   - `within_last N` on a timestamp: at or after now - N days; on a custom field: a date
     (YYYY-MM-DD…) on or after the UTC date N days ago;
   - archived leads are in no rule segment.

   Random writes follow (UpdateLead with a mask, archive, unarchive, UpdateCompany of a
   linked company), and membership must still match after each one: "kept current on
   every write". Every lead's segment_ids must name exactly the segments listing it.

2. CSV neutralisation holds for any text: arbitrary strings in first_name and a custom field,
   exported as CSV through ExportSegment and parsed with the csv module, come back either
   unchanged (no formula trigger in front) or as an apostrophe followed by the original.

Bugs these properties found are pinned by single-case tests near the end of this file; the
strategies still stay out of those regions (each exclusion names its test), so widening
them is the next step. CRM_PROPERTY_EXAMPLES=500 runs more
examples than the default (30 and 40), for a deeper search.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from tnx.crm.v1 import (
    company_pb2,
    company_service_pb2,
    company_service_pb2_grpc,
    lead_pb2,
    lead_service_pb2,
    lead_service_pb2_grpc,
    segment_pb2,
    segment_service_pb2_grpc,
)
from tnx.crm.v1 import segment_service_pb2 as sps

from tests.conftest import Workspace
from tests.segments.helpers import member_ids
from tests.support import db

Json = Any
SegmentStub = segment_service_pb2_grpc.SegmentServiceStub
LeadStub = lead_service_pb2_grpc.LeadServiceStub
CompanyStub = company_service_pb2_grpc.CompanyServiceStub

# -- the independent evaluator ---------------------------------------------------------

NEGATIVE = {"neq": "eq", "not_in": "in", "not_contains": "contains", "not_exists": "exists"}
STATUSES = ("new", "contacted", "qualified", "customer", "disqualified")
STATUS_FROM_PROTO = {
    lead_pb2.LEAD_STATUS_NEW: "new",
    lead_pb2.LEAD_STATUS_CONTACTED: "contacted",
    lead_pb2.LEAD_STATUS_QUALIFIED: "qualified",
    lead_pb2.LEAD_STATUS_CUSTOMER: "customer",
    lead_pb2.LEAD_STATUS_DISQUALIFIED: "disqualified",
}
STATUS_TO_PROTO = {name: number for number, name in STATUS_FROM_PROTO.items()}

Kind = Literal["string", "id", "number", "timestamp", "enum"]


@dataclass(frozen=True)
class CompanyFacts:
    id: str
    name: str
    domain: str
    industry: str
    employee_count: int | None
    annual_revenue: int | None
    country: str


@dataclass(frozen=True)
class LeadFacts:
    """A lead as the API reports it: what the rule is evaluated against."""

    id: str
    email: str
    first_name: str
    title: str
    company: str
    company_id: str
    source: str
    score: int
    status: str
    custom: dict[str, Json]
    created_at: datetime
    last_activity_at: datetime | None
    archived: bool
    linked: CompanyFacts | None
    segment_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cond:
    field: str
    op: str
    value: Json = None


@dataclass(frozen=True)
class Grp:
    kind: Literal["AND", "OR"]
    children: tuple[Cond | Grp, ...]


Node = Cond | Grp


@dataclass(frozen=True)
class FieldDef:
    name: str
    kind: Kind
    read: Callable[[LeadFacts], Json]
    # A lead may lack the value although the column is never NULL (an empty string).
    # Ordering operators are not drawn for these fields: see
    # test_ordering_with_a_missing_string_is_false (known bug).
    may_be_empty: bool = False
    nullable: bool = False


def _company(attr: str) -> Callable[[LeadFacts], Json]:
    def read(lead: LeadFacts) -> Json:
        return getattr(lead.linked, attr) if lead.linked is not None else None

    return read


FIELDS: dict[str, FieldDef] = {
    f.name: f
    for f in [
        FieldDef("title", "string", lambda lead: lead.title),
        FieldDef("first_name", "string", lambda lead: lead.first_name, may_be_empty=True),
        FieldDef("source", "string", lambda lead: lead.source),
        FieldDef("company", "string", lambda lead: lead.company, may_be_empty=True),
        FieldDef("email", "string", lambda lead: lead.email),
        FieldDef("email_domain", "string", lambda lead: lead.email.split("@", 1)[1]),
        FieldDef("score", "number", lambda lead: lead.score),
        FieldDef("status", "enum", lambda lead: lead.status),
        FieldDef("created_at", "timestamp", lambda lead: lead.created_at),
        FieldDef(
            "last_activity_at", "timestamp", lambda lead: lead.last_activity_at, nullable=True
        ),
        FieldDef("id", "id", lambda lead: lead.id),
        FieldDef("company_id", "id", lambda lead: lead.company_id or None, nullable=True),
        FieldDef("company.name", "string", _company("name")),
        FieldDef("company.domain", "string", _company("domain"), may_be_empty=True),
        FieldDef("company.industry", "string", _company("industry"), may_be_empty=True),
        FieldDef("company.country", "string", _company("country"), may_be_empty=True),
        FieldDef("company.employee_count", "number", _company("employee_count"), nullable=True),
        FieldDef("company.annual_revenue", "number", _company("annual_revenue"), nullable=True),
    ]
}


def parse_when(text: str) -> datetime:
    """An RFC 3339 timestamp or a date (midnight UTC)."""
    if len(text) == 10:
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def leading_date(text: str) -> date | None:
    """The date a custom string value names (YYYY-MM-DD, optionally followed by a time)."""
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def is_number(value: Json) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def compare(op: str, actual: Any, wanted: Json, coerce: Callable[[Json], Any]) -> bool:
    """An ordering or membership operator between a present value and the rule's value."""
    if op == "eq":
        return bool(actual == coerce(wanted))
    if op == "in":
        return any(actual == coerce(item) for item in wanted)
    if op == "between":
        return bool(coerce(wanted[0]) <= actual <= coerce(wanted[1]))
    if op == "gt":
        return bool(actual > coerce(wanted))
    if op == "gte":
        return bool(actual >= coerce(wanted))
    if op == "lt":
        return bool(actual < coerce(wanted))
    if op == "lte":
        return bool(actual <= coerce(wanted))
    raise AssertionError(f"no ordering operator {op!r}")


def text_match(op: str, actual: str, wanted: Json) -> bool:
    """Case-insensitive string operators."""
    lowered = actual.lower()
    if op == "contains":
        return str(wanted).lower() in lowered
    if op == "starts_with":
        return lowered.startswith(str(wanted).lower())
    return compare(op, lowered, wanted, lambda v: str(v).lower())


@dataclass(frozen=True)
class Evaluator:
    now: datetime

    def holds(self, node: Node, lead: LeadFacts) -> bool:
        if isinstance(node, Grp):
            results = [self.holds(child, lead) for child in node.children]
            return all(results) if node.kind == "AND" else any(results)
        if node.op in NEGATIVE:
            return not self.holds(replace(node, op=NEGATIVE[node.op]), lead)
        if node.field.startswith("custom."):
            return self.custom(node, lead.custom)
        return self.builtin(FIELDS[node.field], node, lead)

    def builtin(self, spec: FieldDef, cond: Cond, lead: LeadFacts) -> bool:
        value = spec.read(lead)
        missing = value is None or value == ""
        if cond.op == "exists":
            return not missing
        if missing:
            return False
        if spec.kind == "number":
            return compare(cond.op, value, cond.value, lambda v: v)
        if spec.kind == "timestamp":
            if cond.op == "within_last":
                return bool(value >= self.now - timedelta(days=cond.value))
            return compare(cond.op, value, cond.value, parse_when)
        if spec.kind == "enum":
            return compare(
                cond.op, value, cond.value, lambda v: v.lower().removeprefix("lead_status_")
            )
        if spec.kind == "id" and cond.op in ("eq", "in"):
            return compare(cond.op, value, cond.value, lambda v: v)  # ids are exact
        return text_match(cond.op, str(value), cond.value)

    def custom(self, cond: Cond, custom: dict[str, Json]) -> bool:
        value = custom.get(cond.field.removeprefix("custom."))
        if cond.op == "exists":
            return value is not None
        if cond.op == "within_last":
            day = leading_date(value) if isinstance(value, str) else None
            return day is not None and day >= (self.now - timedelta(days=cond.value)).date()
        sample = cond.value[0] if cond.op in ("in", "between") else cond.value
        if isinstance(sample, bool):
            return isinstance(value, bool) and compare(cond.op, value, cond.value, lambda v: v)
        if is_number(sample):
            return is_number(value) and compare(cond.op, value, cond.value, lambda v: v)
        return isinstance(value, str) and text_match(cond.op, value, cond.value)


# -- gRPC glue --------------------------------------------------------------------------


def to_proto(node: Grp) -> segment_pb2.RuleGroup:
    message = segment_pb2.RuleGroup(
        combinator=segment_pb2.RuleGroup.OR if node.kind == "OR" else segment_pb2.RuleGroup.AND
    )
    for child in node.children:
        if isinstance(child, Grp):
            message.rules.add(group=to_proto(child))
        else:
            condition = segment_pb2.RuleCondition(field=child.field, op=child.op)
            if child.value is not None:
                json_format.ParseDict(child.value, condition.value)
            message.rules.add(condition=condition)
    return message


def to_json(node: Node) -> Json:
    if isinstance(node, Grp):
        return {node.kind: [to_json(child) for child in node.children]}
    return [node.field, node.op, node.value]


def plain(value: Json) -> Json:
    """Struct numbers are doubles: whole ones back to int, as the server stores them."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def company_facts(company: company_pb2.Company) -> CompanyFacts:
    return CompanyFacts(
        id=company.id,
        name=company.name,
        domain=company.domain,
        industry=company.industry,
        employee_count=(company.employee_count if company.HasField("employee_count") else None),
        annual_revenue=(company.annual_revenue if company.HasField("annual_revenue") else None),
        country=company.country,
    )


def lead_facts(lead: lead_pb2.Lead) -> LeadFacts:
    return LeadFacts(
        id=lead.id,
        email=lead.email,
        first_name=lead.first_name,
        title=lead.title,
        company=lead.company,
        company_id=lead.company_id,
        source=lead.source,
        score=lead.score,
        status=STATUS_FROM_PROTO[lead.status],
        custom=plain(json_format.MessageToDict(lead.custom_fields)),
        created_at=lead.created_at.ToDatetime(tzinfo=UTC),
        last_activity_at=(
            lead.last_activity_at.ToDatetime(tzinfo=UTC)
            if lead.HasField("last_activity_at")
            else None
        ),
        archived=lead.HasField("archived_at"),
        linked=company_facts(lead.linked_company) if lead.HasField("linked_company") else None,
        segment_ids=tuple(lead.segment_ids),
    )


@dataclass(frozen=True)
class Api:
    segments: SegmentStub
    leads: LeadStub
    companies: CompanyStub


@pytest.fixture(scope="module")
def api(channel: grpc.Channel) -> Api:
    return Api(
        segments=SegmentStub(channel),
        leads=LeadStub(channel),
        companies=CompanyStub(channel),
    )


def fresh_workspace(database_url: str) -> Workspace:
    created = db.create_workspace(database_url, name="properties")
    return Workspace(id=created.workspace_id, key=created.key)


# -- what the leads and companies look like ---------------------------------------------

TEXT_ALPHABET = "abzABZ é%_'\\-"  # LIKE wildcards, a quote and a backslash on purpose
TITLES = (
    "VP Growth",
    "vp of growth",
    "Head of Growth",
    "CTO",
    "Growth Engineer",
    "Café Owner",
    "100% Growth",
    "under_score",
    "O'Brien's aide",
    "back\\slash",
)
SOURCES = ("webinar", "import", "api", "Form", "LinkedIn")
FIRST_NAMES = ("", "Ada", "ada", "Émile", "Zoë", "Grace")
COMPANY_NAMES = ("", "Acme", "acme inc", "Globex", "Initech")
LEAD_DOMAINS = ("acme.com", "beta.io", "corp.net", "example.org", "gmail.com")
COMPANY_DOMAINS = ("acme.com", "beta.io", "corp.net")
INDUSTRIES = ("", "SaaS", "saas", "Retail", "Fintech")
COUNTRIES = ("", "US", "DE", "GB")
CUSTOM_KEYS = ("plan", "seats", "active", "signup", "tags")
TODAY = datetime.now(UTC).date()

# Strings made of letters Python and PostgreSQL lower-case the same way (not Σ or İ: see
# test_unicode_strings_equal_themselves_case_insensitively, a known bug).
texts = st.text(TEXT_ALPHABET, min_size=1, max_size=8).map(str.strip).filter(bool)
numbers = st.one_of(
    st.integers(-1000, 1000),
    st.floats(-1000, 1000, allow_nan=False).map(lambda x: round(x, 2)),
)
date_strings = st.integers(0, 400).map(lambda k: (TODAY - timedelta(days=k)).isoformat())
datetime_strings = date_strings.map(lambda d: f"{d}T10:30:00Z")


def custom_value(key: str) -> st.SearchStrategy[Json]:
    """Mostly the type the key usually holds, sometimes any other (typing is by value)."""
    usual: dict[str, st.SearchStrategy[Json]] = {
        "plan": st.sampled_from(["pro", "Pro", "free", "enterprise", "", "Pro plus"]),
        "seats": numbers,
        "active": st.booleans(),
        # Only dates (or no string at all) here: a non-date string under a key compared
        # with within_last is a known bug (test_custom_within_last_needs_a_date).
        "signup": st.one_of(date_strings, datetime_strings),
        "tags": st.lists(texts, max_size=2),
    }
    others: list[st.SearchStrategy[Json]] = [
        st.none(),
        st.booleans(),
        numbers,
        st.dictionaries(st.sampled_from(["a", "b"]), numbers, max_size=1),
    ]
    if key != "signup":
        others += [texts, st.sampled_from(["50", "true", ""])]
    return st.one_of(usual[key], usual[key], usual[key], *others)


@st.composite
def custom_fields(draw: st.DrawFn) -> dict[str, Json]:
    keys = draw(st.lists(st.sampled_from(CUSTOM_KEYS), unique=True, max_size=len(CUSTOM_KEYS)))
    return {key: draw(custom_value(key)) for key in keys}


@dataclass(frozen=True)
class CompanySpec:
    name: str
    domain: str
    industry: str
    employee_count: int | None
    annual_revenue: int | None
    country: str


@dataclass(frozen=True)
class LeadSpec:
    first_name: str
    title: str
    company: str
    source: str
    score: int
    status: str
    domain: str
    custom: dict[str, Json]
    activity_hours: int | None  # last activity this many hours ago; never a whole day
    company_index: int | None  # linked explicitly to this company


def hours_ago() -> st.SearchStrategy[int]:
    """Hours that keep an hour or more away from whole days, so within_last N (whole days)
    has the same answer when the server writes and when the test checks."""
    return st.integers(1, 24 * 60).filter(lambda h: h % 24 not in (0, 23))


companies_st = st.lists(
    st.builds(
        CompanySpec,
        name=st.sampled_from(COMPANY_NAMES[1:]),
        domain=st.sampled_from(COMPANY_DOMAINS),
        industry=st.sampled_from(INDUSTRIES),
        employee_count=st.none() | st.integers(0, 1000),
        annual_revenue=st.none() | st.integers(0, 10**9),
        country=st.sampled_from(COUNTRIES),
    ),
    max_size=3,
    unique_by=lambda c: c.domain,
)


def leads_st(companies: int) -> st.SearchStrategy[list[LeadSpec]]:
    return st.lists(
        st.builds(
            LeadSpec,
            first_name=st.sampled_from(FIRST_NAMES) | texts,
            title=st.sampled_from(TITLES) | texts,
            company=st.sampled_from(COMPANY_NAMES),
            source=st.sampled_from(SOURCES),
            score=st.integers(0, 100),
            status=st.sampled_from(STATUSES),
            domain=st.sampled_from(LEAD_DOMAINS),
            custom=custom_fields(),
            activity_hours=st.none() | hours_ago(),
            company_index=st.none() | st.integers(0, companies - 1) if companies else st.none(),
        ),
        min_size=1,
        max_size=8,
    )


def create_company(api: Api, ws: Workspace, spec: CompanySpec) -> CompanyFacts:
    company = company_pb2.Company(
        name=spec.name, domain=spec.domain, industry=spec.industry, country=spec.country
    )
    if spec.employee_count is not None:
        company.employee_count = spec.employee_count
    if spec.annual_revenue is not None:
        company.annual_revenue = spec.annual_revenue
    reply = api.companies.CreateCompany(
        company_service_pb2.CreateCompanyRequest(company=company), metadata=ws.metadata
    )
    return company_facts(reply)


def ago(hours: int) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


def create_lead(
    api: Api, ws: Workspace, index: int, spec: LeadSpec, companies: Sequence[CompanyFacts]
) -> LeadFacts:
    lead = lead_pb2.Lead(
        email=f"u{index}@{spec.domain}",
        first_name=spec.first_name,
        title=spec.title,
        company=spec.company,
        source=spec.source,
        score=spec.score,
        status=STATUS_TO_PROTO[spec.status],
    )
    lead.custom_fields.update(spec.custom)
    if spec.activity_hours is not None:
        lead.last_activity_at.FromDatetime(ago(spec.activity_hours))
    if spec.company_index is not None:
        lead.company_id = companies[spec.company_index].id
    reply = api.leads.CreateLead(
        lead_service_pb2.CreateLeadRequest(lead=lead), metadata=ws.metadata
    )
    facts = lead_facts(reply)
    assert facts.custom == plain(spec.custom)
    return facts


# -- what the rules look like -----------------------------------------------------------

ORDERING = ("gt", "gte", "lt", "lte", "between")
STRING_OPS = ("eq", "neq", "in", "not_in", "contains", "not_contains", "starts_with")
PRESENCE = ("exists", "not_exists")


@st.composite
def case_variant(draw: st.DrawFn, text: str) -> str:
    change: Callable[[str], str] = draw(
        st.sampled_from([str.lower, str.upper, str.title, lambda s: s])
    )
    return change(text)


@st.composite
def piece_of(draw: st.DrawFn, text: str) -> str:
    start = draw(st.integers(0, len(text) - 1))
    end = draw(st.integers(start + 1, len(text)))
    return text[start:end]


@dataclass(frozen=True)
class Observed:
    """Values the leads actually hold, so conditions often hit them (and their edges)."""

    strings: dict[str, list[str]] = field(default_factory=dict)
    numbers: dict[str, list[float]] = field(default_factory=dict)
    instants: list[datetime] = field(default_factory=list)

    @staticmethod
    def of(leads: Sequence[LeadFacts]) -> Observed:
        strings: dict[str, list[str]] = {}
        numbers: dict[str, list[float]] = {}
        for spec in FIELDS.values():
            values = [spec.read(lead) for lead in leads]
            if spec.kind in ("string", "id", "enum"):
                strings[spec.name] = sorted({v for v in values if isinstance(v, str) and v})
            elif spec.kind == "number":
                numbers[spec.name] = sorted({v for v in values if v is not None})
        for key in CUSTOM_KEYS:
            values = [lead.custom.get(key) for lead in leads]
            strings[f"custom.{key}"] = sorted({v for v in values if isinstance(v, str) and v})
            numbers[f"custom.{key}"] = sorted({v for v in values if is_number(v)})
        instants = sorted(
            {lead.created_at for lead in leads}
            | {lead.last_activity_at for lead in leads if lead.last_activity_at}
        )
        return Observed(strings, numbers, instants)


def no_bind_marker(text: str) -> bool:
    """A ':' before a word character in a rule value becomes a bind parameter of the
    refresh statement: a known bug (test_rule_values_with_a_colon_are_plain_text)."""
    return re.search(r":\w", text) is None


def string_value(observed: Sequence[str], *, prefix: bool = False) -> st.SearchStrategy[str]:
    pool = sorted({*observed, *TITLES, *SOURCES, "acme", "growth", "a"} - {""})
    base = st.sampled_from(pool)
    parts = base.flatmap(lambda s: st.just(s[: max(1, len(s) // 2)]) if prefix else piece_of(s))
    return st.one_of(base, parts, texts).flatmap(case_variant).filter(no_bind_marker)


def number_value(observed: Sequence[float], low: int, high: int) -> st.SearchStrategy[Json]:
    near = st.builds(
        lambda n, d: n + d, st.sampled_from(observed), st.sampled_from([-1, 0, 0.5, 1])
    )
    return st.one_of(*([near] if observed else []), st.integers(low, high), numbers)


def instant_value(observed: Sequence[datetime]) -> st.SearchStrategy[str]:
    steps = [timedelta(0), timedelta(microseconds=1), timedelta(seconds=1), timedelta(hours=2)]
    shifted = st.builds(
        lambda t, d, sign: t + sign * d,
        st.sampled_from(observed),
        st.sampled_from(steps),
        st.sampled_from([1, -1]),
    )
    return st.one_of(
        shifted.map(lambda t: t.isoformat().replace("+00:00", "Z")),
        shifted.map(lambda t: t.isoformat()),
        shifted.map(lambda t: t.date().isoformat()),
    )


def values_for(op: str, single: st.SearchStrategy[Json]) -> st.SearchStrategy[Json]:
    if op in ("in", "not_in"):
        return st.lists(single, min_size=1, max_size=3)
    if op == "between":
        return st.lists(single, min_size=2, max_size=2)
    return single


@st.composite
def builtin_condition(draw: st.DrawFn, observed: Observed) -> Cond:
    spec = draw(st.sampled_from(list(FIELDS.values())))
    ops: tuple[str, ...]
    if spec.kind == "string":
        ops = STRING_OPS + PRESENCE + (() if spec.may_be_empty else ORDERING)
    elif spec.kind == "id":
        ops = STRING_OPS + PRESENCE
    elif spec.kind == "number":
        # `exists` on a never-NULL number is a known bug (test_exists_on_score_...).
        ops = ("eq", "neq", "in", "not_in", *ORDERING) + (PRESENCE if spec.nullable else ())
    elif spec.kind == "timestamp":
        ops = ("eq", "neq", "in", "not_in", *ORDERING, *PRESENCE, "within_last")
    else:
        ops = ("eq", "neq", "in", "not_in", *PRESENCE)
    op = draw(st.sampled_from(ops))
    if op in PRESENCE:
        return Cond(spec.name, op)
    single: st.SearchStrategy[Json]
    if spec.kind == "number":
        limit = 2000 if spec.name == "company.employee_count" else 120
        single = number_value(observed.numbers[spec.name], 0, limit)
        if op in ("in", "not_in"):
            # A fraction in the list of an integer column is rendered truncated (1.5 as
            # 1): a known bug, test_in_with_a_fraction_on_an_integer_field_is_not_truncated.
            single = single.filter(lambda n: float(n).is_integer())
    elif spec.kind == "timestamp":
        if op == "within_last":
            return Cond(spec.name, op, draw(st.integers(1, 90)))
        single = instant_value(observed.instants)
    elif spec.kind == "enum":
        single = st.sampled_from(STATUSES).flatmap(
            lambda s: st.sampled_from([s, s.upper(), f"LEAD_STATUS_{s.upper()}"])
        )
    elif spec.kind == "id":
        pool = observed.strings[spec.name] or ["lead_x"]
        single = st.one_of(st.sampled_from(pool), st.sampled_from(pool).flatmap(case_variant))
        if op not in ("eq", "neq", "in", "not_in"):
            single = st.sampled_from(pool).flatmap(piece_of).flatmap(case_variant)
    else:
        single = string_value(observed.strings[spec.name], prefix=op == "starts_with")
    return Cond(spec.name, op, draw(values_for(op, single)))


@st.composite
def custom_condition(draw: st.DrawFn, observed: Observed) -> Cond:
    key = draw(st.sampled_from((*CUSTOM_KEYS, "never_set")))
    name = f"custom.{key}"
    typed = draw(st.sampled_from(["string", "number", "bool", "presence", "within_last"]))
    if typed == "presence":
        return Cond(name, draw(st.sampled_from(PRESENCE)))
    if typed == "within_last" and key in ("signup", "never_set"):
        return Cond(name, "within_last", draw(st.integers(1, 400)))
    if typed == "bool":
        op = draw(st.sampled_from(["eq", "neq", "in", "not_in"]))
        return Cond(name, op, draw(values_for(op, st.booleans())))
    if typed == "number":
        op = draw(st.sampled_from(["eq", "neq", "in", "not_in", *ORDERING]))
        return Cond(
            name, op, draw(values_for(op, number_value(observed.numbers.get(name, []), -5, 5)))
        )
    op = draw(st.sampled_from([*STRING_OPS, *ORDERING]))
    single = string_value(observed.strings.get(name, []), prefix=op == "starts_with")
    if key == "signup" and op in ORDERING:
        single = date_strings
    return Cond(name, op, draw(values_for(op, single)))


def condition_st(observed: Observed) -> st.SearchStrategy[Cond]:
    return st.one_of(builtin_condition(observed), custom_condition(observed))


@st.composite
def rule_tree(draw: st.DrawFn, observed: Observed, depth: int = 1) -> Grp:
    size = draw(st.integers(1, 3))
    children: list[Node] = []
    for _ in range(size):
        if depth < 3 and draw(st.integers(0, 3)) == 0:
            children.append(draw(rule_tree(observed, depth + 1)))
        else:
            children.append(draw(condition_st(observed)))
    return Grp(draw(st.sampled_from(["AND", "OR"])), tuple(children))


# -- updates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Update:
    index: int
    kind: str
    value: Json = None


LEAD_UPDATES = [
    "score",
    "title",
    "status",
    "source",
    "first_name",
    "custom_set",
    "custom_remove",
    "activity",
    "email",
    "archive",
    "unarchive",
]
COMPANY_UPDATES: dict[str, st.SearchStrategy[Json]] = {
    "name": st.sampled_from(COMPANY_NAMES[1:]),
    "industry": st.sampled_from(INDUSTRIES),
    "country": st.sampled_from(COUNTRIES),
    "employee_count": st.none() | st.integers(0, 1000),
    "annual_revenue": st.none() | st.integers(0, 10**9),
}


@st.composite
def update_st(draw: st.DrawFn, leads: int, companies: int) -> Update:
    if companies and draw(st.integers(0, 4)) == 0:
        name = draw(st.sampled_from(sorted(COMPANY_UPDATES)))
        value = draw(COMPANY_UPDATES[name])
        return Update(draw(st.integers(0, companies - 1)), "company", (name, value))
    index = draw(st.integers(0, leads - 1))
    kind = draw(st.sampled_from(LEAD_UPDATES))
    strategies: dict[str, st.SearchStrategy[Json]] = {
        "score": st.integers(0, 100),
        "title": st.sampled_from(TITLES) | texts,
        "status": st.sampled_from(STATUSES),
        "source": st.sampled_from(SOURCES),
        "first_name": st.sampled_from(FIRST_NAMES),
        "custom_set": st.sampled_from(CUSTOM_KEYS).flatmap(
            lambda k: custom_value(k).map(lambda v: (k, v))
        ),
        "custom_remove": st.sampled_from(CUSTOM_KEYS),
        "activity": st.none() | hours_ago(),
        "email": st.sampled_from(LEAD_DOMAINS),
    }
    return Update(index, kind, draw(strategies[kind]) if kind in strategies else None)


def update_company(api: Api, ws: Workspace, company: CompanyFacts, update: Update) -> None:
    name, value = update.value
    message = company_pb2.Company(id=company.id)
    if value is not None:
        setattr(message, name, value)  # None leaves it unset: the mask clears it
    api.companies.UpdateCompany(
        company_service_pb2.UpdateCompanyRequest(
            company=message, update_mask=field_mask_pb2.FieldMask(paths=[name])
        ),
        metadata=ws.metadata,
    )


def reread(api: Api, ws: Workspace, lead: LeadFacts) -> LeadFacts:
    reply = api.leads.GetLead(lead_service_pb2.GetLeadRequest(id=lead.id), metadata=ws.metadata)
    return lead_facts(reply)


def apply_update(api: Api, ws: Workspace, lead: LeadFacts, index: int, update: Update) -> LeadFacts:
    if update.kind in ("archive", "unarchive"):
        if update.kind == "archive":
            reply = api.leads.ArchiveLead(
                lead_service_pb2.ArchiveLeadRequest(id=lead.id), metadata=ws.metadata
            )
        else:
            reply = api.leads.UnarchiveLead(
                lead_service_pb2.UnarchiveLeadRequest(id=lead.id), metadata=ws.metadata
            )
        return lead_facts(reply)
    message = lead_pb2.Lead(id=lead.id)
    path = update.kind
    if update.kind in ("score", "title", "source", "first_name"):
        setattr(message, update.kind, update.value)
    elif update.kind == "status":
        message.status = STATUS_TO_PROTO[update.value]
    elif update.kind == "custom_set":
        key, value = update.value
        message.custom_fields.update({key: value})
        path = f"custom_fields.{key}"
    elif update.kind == "custom_remove":
        path = f"custom_fields.{update.value}"
    elif update.kind == "activity":
        path = "last_activity_at"
        if update.value is not None:
            message.last_activity_at.FromDatetime(ago(update.value))
    elif update.kind == "email":
        path = "email"
        message.email = f"u{index}@{update.value}"
    request = lead_service_pb2.UpdateLeadRequest(
        lead=message, update_mask=field_mask_pb2.FieldMask(paths=[path])
    )
    return lead_facts(api.leads.UpdateLead(request, metadata=ws.metadata))


# -- property 1: membership ---------------------------------------------------------------


def explain(evaluator: Evaluator, node: Node, lead: LeadFacts) -> Iterator[str]:
    if isinstance(node, Grp):
        for child in node.children:
            yield from explain(evaluator, child, lead)
    else:
        yield f"    {node.field} {node.op} {node.value!r} -> {evaluator.holds(node, lead)}"


def check_membership(
    api: Api, ws: Workspace, segments: dict[str, Grp], leads: Sequence[LeadFacts], when: str
) -> None:
    evaluator = Evaluator(now=datetime.now(UTC))
    by_id = {lead.id: lead for lead in leads}
    for segment_id, tree in segments.items():
        expected = {lead.id for lead in leads if not lead.archived and evaluator.holds(tree, lead)}
        actual = set(member_ids(api.segments, ws, segment_id))
        if actual != expected:
            lines = [f"{when}: membership differs for rule {json.dumps(to_json(tree))}"]
            for lead_id in sorted(actual ^ expected):
                side = "server only" if lead_id in actual else "evaluator only"
                lines.append(f"  {side}: {by_id[lead_id]}")
                lines.extend(explain(evaluator, tree, by_id[lead_id]))
            raise AssertionError("\n".join(lines))
        segment = api.segments.GetSegment(
            sps.GetSegmentRequest(id=segment_id), metadata=ws.metadata
        )
        assert segment.member_count == len(actual), when


# Moderate by default so the file runs in seconds; CRM_PROPERTY_EXAMPLES=500 digs deeper.
EXAMPLES = int(os.environ.get("CRM_PROPERTY_EXAMPLES", "0")) or None


@settings(
    max_examples=EXAMPLES or 30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_rule_membership_matches_an_independent_evaluation(
    api: Api, database_url: str, data: st.DataObject
) -> None:
    ws = fresh_workspace(database_url)
    company_specs = data.draw(companies_st, label="companies")
    companies = [create_company(api, ws, spec) for spec in company_specs]
    lead_specs = data.draw(leads_st(len(companies)), label="leads")
    leads = [create_lead(api, ws, i, spec, companies) for i, spec in enumerate(lead_specs)]
    observed = Observed.of(leads)
    trees = data.draw(st.lists(rule_tree(observed), min_size=1, max_size=3), label="rules")
    segments: dict[str, Grp] = {}
    for n, tree in enumerate(trees):
        note(f"segment {n}: {json.dumps(to_json(tree))}")
        created = api.segments.CreateSegment(
            sps.CreateSegmentRequest(
                segment=segment_pb2.Segment(
                    name=f"random {n}", membership=segment_pb2.Segment.RULE, rules=to_proto(tree)
                )
            ),
            metadata=ws.metadata,
        )
        assert created.state == segment_pb2.Segment.READY
        segments[created.id] = tree
    check_membership(api, ws, segments, leads, "after create")

    updates = data.draw(
        st.lists(update_st(len(leads), len(companies)), max_size=6), label="updates"
    )
    for step, update in enumerate(updates):
        if update.kind == "company":
            update_company(api, ws, companies[update.index], update)
            leads = [reread(api, ws, lead) for lead in leads]  # their company.* changed
        else:
            leads[update.index] = apply_update(api, ws, leads[update.index], update.index, update)
        check_membership(api, ws, segments, leads, f"after update {step} {update}")

    # Every lead reports exactly the rule segments it is a member of.
    members = {sid: set(member_ids(api.segments, ws, sid)) for sid in segments}
    for lead in leads:
        fresh = reread(api, ws, lead)
        assert set(fresh.segment_ids) == {sid for sid, ids in members.items() if lead.id in ids}


# -- property 2: CSV formula neutralisation -----------------------------------------------

TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
# Any text PostgreSQL can store: no NUL (see test_nul_in_lead_text_is_invalid_argument, a
# known bug) and no lone surrogates (not UTF-8; protobuf refuses them before the server).
any_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=200
)
cells = st.one_of(
    any_text,
    st.builds(
        lambda head, tail: head + tail,
        st.sampled_from([*TRIGGERS, "'", '"', ",", " =", "'=", '"=']),
        any_text,
    ),
)


def neutralised(original: str) -> str:
    return "'" + original if original.startswith(TRIGGERS) else original


def export_csv(api: Api, ws: Workspace, segment_id: str, fields: list[str]) -> list[list[str]]:
    chunks = api.segments.ExportSegment(
        sps.ExportSegmentRequest(id=segment_id, format=sps.ExportSegmentRequest.CSV, fields=fields),
        metadata=ws.metadata,
    )
    body = b"".join(chunk.data for chunk in chunks).decode("utf-8")
    return list(csv.reader(io.StringIO(body, newline="")))


@pytest.fixture(scope="module")
def csv_workspace(database_url: str) -> Workspace:
    return fresh_workspace(database_url)


@settings(max_examples=EXAMPLES or 40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.tuples(cells, cells), min_size=1, max_size=4))
def test_csv_export_neutralises_any_cell_and_round_trips_it(
    api: Api, csv_workspace: Workspace, values: list[tuple[str, str]]
) -> None:
    ws = csv_workspace
    segment = api.segments.CreateSegment(
        sps.CreateSegmentRequest(
            segment=segment_pb2.Segment(name="csv", membership=segment_pb2.Segment.STATIC)
        ),
        metadata=ws.metadata,
    )
    expected: dict[str, tuple[str, str]] = {}
    for first_name, note_text in values:
        message = lead_pb2.Lead(
            email=f"csv-{len(expected)}-{segment.id[-10:].lower()}@example.com",
            first_name=first_name,
        )
        message.custom_fields.update({"note": note_text})
        lead = api.leads.CreateLead(
            lead_service_pb2.CreateLeadRequest(lead=message), metadata=ws.metadata
        )
        # Names are trimmed on write; custom values are kept as given.
        assert lead.first_name == first_name.strip()
        assert json_format.MessageToDict(lead.custom_fields) == {"note": note_text}
        expected[lead.id] = (lead.first_name, note_text)
    api.segments.AddSegmentMembers(
        sps.AddSegmentMembersRequest(id=segment.id, lead_ids=list(expected)), metadata=ws.metadata
    )
    rows = export_csv(api, ws, segment.id, ["id", "first_name", "custom.note"])
    assert rows[0] == ["id", "first_name", "custom.note"]
    assert len(rows) == len(expected) + 1
    for lead_id, first_cell, note_cell in rows[1:]:
        first_name, note_text = expected[lead_id]
        for original, cell in ((first_name, first_cell), (note_text, note_cell)):
            assert not cell.startswith(TRIGGERS), repr(cell)
            assert cell == neutralised(original), (original, cell)
            recovered = cell[1:] if original.startswith(TRIGGERS) else cell
            assert recovered == original


# -- single cases: bugs the properties found (fixed), then regressions ---------------------


def rule_members(api: Api, ws: Workspace, tree: Grp) -> set[str]:
    segment = api.segments.CreateSegment(
        sps.CreateSegmentRequest(
            segment=segment_pb2.Segment(
                name="pinned", membership=segment_pb2.Segment.RULE, rules=to_proto(tree)
            )
        ),
        metadata=ws.metadata,
    )
    return set(member_ids(api.segments, ws, segment.id))


def simple_lead(api: Api, ws: Workspace, email: str, **fields: Any) -> lead_pb2.Lead:
    custom = fields.pop("custom", None)
    message = lead_pb2.Lead(email=email, **fields)
    if custom:
        message.custom_fields.update(custom)
    reply: lead_pb2.Lead = api.leads.CreateLead(
        lead_service_pb2.CreateLeadRequest(lead=message), metadata=ws.metadata
    )
    return reply


def test_exists_on_score_is_true_for_every_lead(api: Api, database_url: str) -> None:
    ws = fresh_workspace(database_url)
    lead = simple_lead(api, ws, "s@x.io", score=5)
    assert rule_members(api, ws, Grp("AND", (Cond("score", "exists"),))) == {lead.id}
    assert rule_members(api, ws, Grp("AND", (Cond("score", "not_exists"),))) == set()


@pytest.mark.parametrize("title", ["ΟΔΟΣ", "İstanbul"])
def test_unicode_strings_equal_themselves_case_insensitively(
    api: Api, database_url: str, title: str
) -> None:
    ws = fresh_workspace(database_url)
    lead = simple_lead(api, ws, "u@x.io", title=title)
    assert rule_members(api, ws, Grp("AND", (Cond("title", "eq", title),))) == {lead.id}


def test_custom_within_last_needs_a_date(api: Api, database_url: str) -> None:
    ws = fresh_workspace(database_url)
    simple_lead(api, ws, "p@x.io", custom={"signup": "pro"})
    assert rule_members(api, ws, Grp("AND", (Cond("custom.signup", "within_last", 30),))) == set()


def test_ordering_with_a_missing_string_is_false(api: Api, database_url: str) -> None:
    ws = fresh_workspace(database_url)
    simple_lead(api, ws, "no-title@x.io")
    assert rule_members(api, ws, Grp("AND", (Cond("title", "lt", "m"),))) == set()


def make_company(api: Api, ws: Workspace, **fields: Any) -> company_pb2.Company:
    reply: company_pb2.Company = api.companies.CreateCompany(
        company_service_pb2.CreateCompanyRequest(company=company_pb2.Company(**fields)),
        metadata=ws.metadata,
    )
    return reply


def test_in_with_a_fraction_on_an_integer_field_is_not_truncated(
    api: Api, database_url: str
) -> None:
    ws = fresh_workspace(database_url)
    simple_lead(api, ws, "fifty@x.io", score=50)
    assert rule_members(api, ws, Grp("AND", (Cond("score", "in", [1, 50.5]),))) == set()


@pytest.mark.parametrize("value", [":0", "ratio :a", "see :lead_ids"])
def test_rule_values_with_a_colon_are_plain_text(api: Api, database_url: str, value: str) -> None:
    ws = fresh_workspace(database_url)
    lead = simple_lead(api, ws, "colon@x.io", title=value)
    assert rule_members(api, ws, Grp("AND", (Cond("title", "eq", value),))) == {lead.id}


@pytest.mark.parametrize("where", ["first_name", "custom", "rule"])
def test_nul_in_lead_text_is_invalid_argument(api: Api, database_url: str, where: str) -> None:
    ws = fresh_workspace(database_url)
    with pytest.raises(grpc.RpcError) as caught:
        if where == "first_name":
            simple_lead(api, ws, "n@x.io", first_name="a\x00b")
        elif where == "custom":
            simple_lead(api, ws, "n@x.io", custom={"note": "a\x00b"})
        else:
            rule_members(api, ws, Grp("AND", (Cond("title", "eq", "a\x00"),)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# Fixed in b6d685f; kept as regressions.


def test_company_linking_leads_by_domain_refreshes_their_membership(
    api: Api, database_url: str
) -> None:
    ws = fresh_workspace(database_url)
    industry = f"Industry {ws.id}"  # no other company of the database has it
    lead = simple_lead(api, ws, "y@beta.io")
    tree = Grp("AND", (Cond("company.industry", "eq", industry),))
    segment = api.segments.CreateSegment(
        sps.CreateSegmentRequest(
            segment=segment_pb2.Segment(
                name="industry", membership=segment_pb2.Segment.RULE, rules=to_proto(tree)
            )
        ),
        metadata=ws.metadata,
    )
    make_company(api, ws, name="Beta", domain="beta.io", industry=industry)
    fresh = api.leads.GetLead(lead_service_pb2.GetLeadRequest(id=lead.id), metadata=ws.metadata)
    assert fresh.company_id  # linked by the company's domain
    assert member_ids(api.segments, ws, segment.id) == [lead.id]


def test_company_conditions_look_at_the_lead_s_own_company(api: Api, database_url: str) -> None:
    theirs = fresh_workspace(database_url)
    make_company(api, theirs, name="Big", domain="big-corp.io", employee_count=100)
    assert simple_lead(api, theirs, "someone@big-corp.io").company_id
    mine = fresh_workspace(database_url)
    simple_lead(api, mine, "alone@nowhere.io")  # no company at all
    tree = Grp("AND", (Cond("company.employee_count", "gt", 50),))
    assert rule_members(api, mine, tree) == set()
