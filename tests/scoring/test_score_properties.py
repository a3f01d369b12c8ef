"""Property: the server's explained score equals the independent evaluator's.

Hypothesis draws a model (fit rules on simple lead fields, engagement rules with random
half-lives, points, max_per_day and property conditions, caps), a lead, and activities up to
200 days in the past (often several on one UTC day, sometimes at the same second). In a fresh
workspace the model is set (UpdateScoringModel), the lead created, the activities recorded
(CreateActivity one by one or BatchCreateActivities), then GetLeadScore must equal
tests/scoring/evaluator.py at T = its `computed_at`: score, fit, engagement, and the
contributions as a multiset. CRM_PROPERTY_EXAMPLES=500 runs more examples.

The model is set before the lead exists, so the lead is scored with that version on every
write and no background rebuild is waited for.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from tnx.crm.v1 import (
    lead_pb2,
    lead_service_pb2,
    lead_service_pb2_grpc,
    scoring_pb2,
    scoring_service_pb2,
    scoring_service_pb2_grpc,
    segment_pb2,
)

from tests.conftest import Workspace
from tests.scoring import evaluator
from tests.segments.test_membership_properties import STATUS_FROM_PROTO, plain
from tests.support import db

Json = Any
ScoringStub = scoring_service_pb2_grpc.ScoringServiceStub
LeadStub = lead_service_pb2_grpc.LeadServiceStub

# -- the lead -----------------------------------------------------------------------------

TITLES = ("VP Growth", "Head of Growth", "CTO", "Growth Engineer", "")
SOURCES = ("webinar", "api", "import")
DOMAINS = ("acme.com", "beta.io")
PLANS = ("pro", "Pro", "free", "enterprise")


@dataclass(frozen=True)
class LeadSpec:
    title: str
    source: str
    domain: str
    custom: dict[str, Json]


custom_fields = st.fixed_dictionaries(
    {},
    optional={
        "plan": st.sampled_from(PLANS),
        "seats": st.integers(0, 50) | st.sampled_from([2.5, 10.25]),
        "active": st.booleans(),
    },
)
lead_st = st.builds(
    LeadSpec,
    title=st.sampled_from(TITLES),
    source=st.sampled_from(SOURCES),
    domain=st.sampled_from(DOMAINS),
    custom=custom_fields,
)

# -- the model ----------------------------------------------------------------------------


def condition(
    field: str, ops: list[str], values: st.SearchStrategy[Json]
) -> st.SearchStrategy[Json]:
    return st.builds(
        lambda op, value: {"field": field, "op": op, "value": value},
        st.sampled_from(ops),
        values,
    )


fit_condition = st.one_of(
    condition(
        "title",
        ["eq", "neq", "contains", "starts_with"],
        st.sampled_from(["vp growth", "CTO", "growth", "Head", "engineer"]),
    ),
    condition("source", ["eq", "neq"], st.sampled_from(SOURCES)),
    condition("email_domain", ["eq", "neq"], st.sampled_from(DOMAINS)),
    condition("custom.plan", ["eq", "neq", "contains"], st.sampled_from(PLANS)),
    st.builds(
        lambda op: {"field": "custom.plan", "op": op, "value": None},
        st.sampled_from(["exists", "not_exists"]),
    ),
    condition("custom.seats", ["eq", "gt", "gte", "lt", "lte"], st.integers(0, 50)),
    condition("custom.active", ["eq", "neq"], st.booleans()),
)
nonzero_points = st.integers(-50, -1) | st.integers(1, 60)


@st.composite
def fit_rule(draw: st.DrawFn) -> Json:
    tree = {
        "combinator": draw(st.sampled_from(["AND", "OR"])),
        "rules": draw(st.lists(fit_condition, min_size=1, max_size=2)),
    }
    rule_id = draw(st.sampled_from(["", "", "saas", "vp", "big"]))
    return {"id": rule_id, "rules": tree, "points": draw(nonzero_points)}


ACTIVITY_TYPES = ("page_view", "email_click", "form_submitted")
URLS = ("/pricing", "/pricing/teams", "/Pricing", "/docs", "/blog/pricing-news")

property_condition = st.one_of(
    st.builds(
        lambda op, value: {"property": "url", "op": op, "value": value},
        st.sampled_from(["eq", "neq", "contains"]),
        st.sampled_from([*URLS, "pricing", "/"]),
    ),
    st.builds(
        lambda op, value: {"property": "seconds", "op": op, "value": value},
        st.sampled_from(["eq", "neq", "gt", "gte", "lt", "lte"]),
        st.integers(0, 120) | st.just(30.5),
    ),
    st.builds(
        lambda op, value: {"property": "paid", "op": op, "value": value},
        st.sampled_from(["eq", "neq"]),
        st.booleans(),
    ),
    st.builds(
        lambda prop: {"property": prop, "op": "exists", "value": None},
        st.sampled_from(["url", "seconds", "paid"]),
    ),
)
half_lives = st.one_of(
    st.sampled_from([0.0, 0.5, 1.0, 7.0, 14.0, 30.0, 90.0]),
    st.floats(0.1, 400).map(lambda x: round(x, 3)),
)


@st.composite
def engagement_rule(draw: st.DrawFn) -> Json:
    return {
        "id": draw(st.sampled_from(["", "", "clicks", "pricing"])),
        "activity_type": draw(st.sampled_from(ACTIVITY_TYPES)),
        "conditions": draw(st.lists(property_condition, max_size=2)),
        "points": draw(nonzero_points),
        "half_life_days": draw(half_lives),
        "max_per_day": draw(st.integers(0, 3)),
    }


def unique_ids(rules: list[Json]) -> bool:
    named = [r["id"] for r in rules if r["id"]]
    return len(named) == len(set(named))


model_st = st.fixed_dictionaries(
    {
        "fit_rules": st.lists(fit_rule(), max_size=3).filter(unique_ids),
        "engagement_rules": st.lists(engagement_rule(), min_size=1, max_size=3).filter(unique_ids),
        "fit_cap": st.just(0) | st.integers(1, 100),
        "engagement_cap": st.just(0) | st.integers(1, 150),
        "thresholds": st.just([]),
    }
)


def named(model: Json) -> Json:
    """The model with every rule named as the server names it (fit_<n>, engagement_<n>)."""
    return {
        **model,
        "fit_rules": [
            {**r, "id": r["id"] or f"fit_{n}"} for n, r in enumerate(model["fit_rules"], 1)
        ],
        "engagement_rules": [
            {**r, "id": r["id"] or f"engagement_{n}"}
            for n, r in enumerate(model["engagement_rules"], 1)
        ],
    }


# -- the activities -------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivitySpec:
    type: str
    days_ago: int
    second: int  # of its UTC day
    properties: dict[str, Json]


activity_properties = st.fixed_dictionaries(
    {},
    optional={
        "url": st.sampled_from(URLS) | st.none(),
        "seconds": st.integers(0, 120) | st.just(30.5),
        "paid": st.booleans(),
    },
)


@st.composite
def activities_st(draw: st.DrawFn) -> list[ActivitySpec]:
    # A few days only, so max_per_day has several activities of one UTC day to rank.
    days = draw(st.lists(st.integers(1, 200), min_size=1, max_size=3, unique=True))
    specs: list[ActivitySpec] = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from([*ACTIVITY_TYPES, *ACTIVITY_TYPES, "score_adjusted"]))
        if kind == "score_adjusted":
            properties: dict[str, Json] = {
                "points": draw(st.integers(-30, -1) | st.integers(1, 30))
            }
        else:
            properties = draw(activity_properties)
        specs.append(
            ActivitySpec(
                type=kind,
                days_ago=draw(st.sampled_from(days)),
                # The day's edges and its noon often, so activities tie on time.
                second=draw(st.integers(0, 86399) | st.sampled_from([0, 43200, 86399])),
                properties=properties,
            )
        )
    return specs


def occurred_at(spec: ActivitySpec, today: datetime) -> datetime:
    return today - timedelta(days=spec.days_ago) + timedelta(seconds=spec.second)


# -- gRPC glue ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Api:
    scoring: ScoringStub
    leads: LeadStub


@pytest.fixture(scope="module")
def api(channel: grpc.Channel) -> Api:
    return Api(scoring=ScoringStub(channel), leads=LeadStub(channel))


def fresh_workspace(database_url: str) -> Workspace:
    created = db.create_workspace(database_url, name="score properties")
    return Workspace(id=created.workspace_id, key=created.key)


def model_proto(model: Json) -> scoring_pb2.ScoringModel:
    message = scoring_pb2.ScoringModel(
        fit_cap=model["fit_cap"], engagement_cap=model["engagement_cap"]
    )
    for rule in model["fit_rules"]:
        tree = segment_pb2.RuleGroup(
            combinator=(
                segment_pb2.RuleGroup.OR
                if rule["rules"]["combinator"] == "OR"
                else segment_pb2.RuleGroup.AND
            )
        )
        for cond in rule["rules"]["rules"]:
            proto_cond = segment_pb2.RuleCondition(field=cond["field"], op=cond["op"])
            if cond["value"] is not None:
                json_format.ParseDict(cond["value"], proto_cond.value)
            tree.rules.add(condition=proto_cond)
        message.fit_rules.add(id=rule["id"], rules=tree, points=rule["points"])
    for rule in model["engagement_rules"]:
        added = message.engagement_rules.add(
            id=rule["id"],
            activity_type=rule["activity_type"],
            points=rule["points"],
            half_life_days=rule["half_life_days"],
            max_per_day=rule["max_per_day"],
        )
        for cond in rule["conditions"]:
            proto_property = added.conditions.add(property=cond["property"], op=cond["op"])
            if cond["value"] is not None:
                json_format.ParseDict(cond["value"], proto_property.value)
    return message


def set_model(api: Api, ws: Workspace, model: Json) -> scoring_pb2.ScoringModel:
    paths = ["fit_rules", "engagement_rules", "fit_cap", "engagement_cap", "thresholds"]
    reply: scoring_pb2.ScoringModel = api.scoring.UpdateScoringModel(
        scoring_service_pb2.UpdateScoringModelRequest(
            model=model_proto(model), update_mask=field_mask_pb2.FieldMask(paths=paths)
        ),
        metadata=ws.metadata,
    )
    return reply


def create_lead(api: Api, ws: Workspace, spec: LeadSpec) -> lead_pb2.Lead:
    message = lead_pb2.Lead(email=f"ada@{spec.domain}", title=spec.title, source=spec.source)
    message.custom_fields.update(spec.custom)
    reply: lead_pb2.Lead = api.leads.CreateLead(
        lead_service_pb2.CreateLeadRequest(lead=message), metadata=ws.metadata
    )
    return reply


def activity_message(spec: ActivitySpec, today: datetime) -> scoring_pb2.Activity:
    message = scoring_pb2.Activity(type=spec.type, source="api")
    message.occurred_at.FromDatetime(occurred_at(spec, today))
    message.properties.update(spec.properties)
    return message


def record(
    api: Api, ws: Workspace, lead_id: str, specs: list[ActivitySpec], batch: bool
) -> list[scoring_pb2.Activity]:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    messages = [activity_message(spec, today) for spec in specs]
    if not batch:
        return [
            api.scoring.CreateActivity(
                scoring_service_pb2.CreateActivityRequest(lead_id=lead_id, activity=message),
                metadata=ws.metadata,
            )
            for message in messages
        ]
    if not messages:
        return []
    for message in messages:
        message.lead_id = lead_id
    reply = api.scoring.BatchCreateActivities(
        scoring_service_pb2.BatchCreateActivitiesRequest(activities=messages),
        metadata=ws.metadata,
    )
    assert [r.index for r in reply.results] == list(range(len(messages)))
    errors = [r.error for r in reply.results if r.HasField("error")]
    assert not errors, errors
    return [r.activity for r in reply.results]


def lead_dict(lead: lead_pb2.Lead) -> Json:
    return {
        "id": lead.id,
        "email": lead.email,
        "first_name": lead.first_name,
        "title": lead.title,
        "company": lead.company,
        "company_id": lead.company_id,
        "source": lead.source,
        "score": lead.score,
        "status": STATUS_FROM_PROTO[lead.status],
        "custom_fields": plain(json_format.MessageToDict(lead.custom_fields)),
        "created_at": lead.created_at.ToDatetime(tzinfo=UTC),
        "last_activity_at": (
            lead.last_activity_at.ToDatetime(tzinfo=UTC)
            if lead.HasField("last_activity_at")
            else None
        ),
        "linked_company": None,  # the strategies link no company
    }


def activity_dict(activity: scoring_pb2.Activity) -> Json:
    return {
        "id": activity.id,
        "type": activity.type,
        "occurred_at": activity.occurred_at.ToDatetime(tzinfo=UTC),
        "properties": json_format.MessageToDict(activity.properties),
    }


Key = tuple[str, str, str, int, int]


def server_contributions(score: scoring_pb2.LeadScore) -> Counter[Key]:
    return Counter(
        (
            scoring_pb2.ScoreContribution.Kind.Name(c.kind),
            c.rule_id,
            c.activity_id,
            c.points,
            c.decayed_from,
        )
        for c in score.contributions
    )


def evaluator_contributions(score: evaluator.Score) -> Counter[Key]:
    return Counter(
        (c.kind, c.rule_id, c.activity_id, c.points, c.decayed_from) for c in score.contributions
    )


# -- the property -----------------------------------------------------------------------------

EXAMPLES = int(os.environ.get("CRM_PROPERTY_EXAMPLES", "0")) or 25


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    model=model_st,
    lead_spec=lead_st,
    activity_specs=activities_st(),
    batch=st.booleans(),
)
def test_the_server_s_score_equals_an_independent_evaluation(
    api: Api,
    database_url: str,
    model: Json,
    lead_spec: LeadSpec,
    activity_specs: list[ActivitySpec],
    batch: bool,
) -> None:
    ws = fresh_workspace(database_url)
    stored = set_model(api, ws, model)
    expected_model = named(model)
    assert [r.id for r in stored.fit_rules] == [r["id"] for r in expected_model["fit_rules"]]
    assert [r.id for r in stored.engagement_rules] == [
        r["id"] for r in expected_model["engagement_rules"]
    ]

    lead = create_lead(api, ws, lead_spec)
    activities = [activity_dict(a) for a in record(api, ws, lead.id, activity_specs, batch)]
    lead = api.leads.GetLead(lead_service_pb2.GetLeadRequest(id=lead.id), metadata=ws.metadata)
    actual = api.scoring.GetLeadScore(
        scoring_service_pb2.GetLeadScoreRequest(lead_id=lead.id), metadata=ws.metadata
    )
    at = actual.computed_at.ToDatetime(tzinfo=UTC)
    expected = evaluator.score(expected_model, lead_dict(lead), activities, at)
    note(f"computed_at {at.isoformat()}; activities {activities}")
    note(f"server: {actual}")
    note(f"evaluator: {expected}")
    for kind in sorted({c.kind for c in expected.contributions}):
        event(f"has {kind}")

    assert actual.model_version == stored.version
    assert (actual.score, actual.fit, actual.engagement) == (
        expected.score,
        expected.fit,
        expected.engagement,
    )
    assert server_contributions(actual) == evaluator_contributions(expected)
