"""Every event type the CRM writes, with the shape of its payload: the one place a consumer
(the events feed, triggers, flows) learns what an event means.

Writers build events with the functions below (Python writers) or with `sql_payload` (the
set-based writers, which build payloads inside their SQL); both check the payload's keys
against the same TypedDict, so an event's shape is defined once. The proto mirrors this
catalogue in comments on `Event` (proto/tnx/crm/v1/event_service.proto).

Every event also carries a stable id (`evt_…`, `event_id`), the same on every read, so a
consumer can de-duplicate deliveries.
"""

# No `from __future__ import annotations`: TypedDict reads NotRequired from evaluated
# annotations on Python 3.11.
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NotRequired, TypedDict

EVENT_ID_PREFIX = "evt_"


class EventType(StrEnum):
    LEAD_CREATED = "lead.created"
    LEAD_UPDATED = "lead.updated"
    LEAD_ARCHIVED = "lead.archived"
    LEAD_UNARCHIVED = "lead.unarchived"
    LEAD_SCORE_CHANGED = "lead.score_changed"
    LEAD_THRESHOLD_CROSSED = "lead.threshold_crossed"
    LEAD_ENRICHED = "lead.enriched"
    COMPANY_CREATED = "company.created"
    COMPANY_UPDATED = "company.updated"
    COMPANY_ARCHIVED = "company.archived"
    COMPANY_UNARCHIVED = "company.unarchived"
    SEGMENT_CREATED = "segment.created"
    SEGMENT_UPDATED = "segment.updated"
    SEGMENT_DELETED = "segment.deleted"
    SEGMENT_LEAD_ENTERED = "segment.lead_entered"
    SEGMENT_LEAD_EXITED = "segment.lead_exited"
    FORM_CREATED = "form.created"
    FORM_UPDATED = "form.updated"
    FORM_DELETED = "form.deleted"
    FORM_SUBMITTED = "form.submitted"


# -- payloads (subject: what `subject_id` names) ----------------------------------------


class LeadCreated(TypedDict):
    """Subject: the lead. `form_id`/`import_id` name the form or import that created it."""

    email: str
    form_id: NotRequired[str]
    import_id: NotRequired[str]


class LeadUpdated(TypedDict):
    """Subject: the lead. `fields`: the paths written (`title`, `custom_fields.industry`)."""

    fields: list[str]
    form_id: NotRequired[str]
    import_id: NotRequired[str]


class LeadEnriched(TypedDict):
    """Subject: the lead. `fields`: the paths an enrichment run wrote (`title`,
    `custom_fields.industry`, `company.employee_count`), by the connectors of `connector_ids`."""

    fields: list[str]
    run_id: str
    connector_ids: list[str]


class ScoreChanged(TypedDict):
    """Subject: the lead. The score the model computed, before and after."""

    old: int
    new: int
    model_version: int


class ThresholdCrossed(TypedDict):
    """Subject: the lead. `direction`: "up" (reached the threshold's score) or "down" (fell
    below its score minus its hysteresis); `score`: the lead's new score."""

    threshold: str
    direction: str
    score: int


class NoPayload(TypedDict):
    """lead.archived/unarchived, segment.created/deleted, form.deleted: the subject says all."""


class MembershipChanged(TypedDict):
    """segment.lead_entered/exited. Subject: the lead. `cause`: what moved it (an event type
    such as lead.updated, or `manual`, `import`, `segment.built`)."""

    segment_id: str
    lead_id: str
    cause: str
    import_id: NotRequired[str]


class CompanyCreated(TypedDict):
    """Subject: the company. `linked_leads`: leads linked to it by their email domain."""

    name: str
    domain: str | None
    linked_leads: int


class CompanyUpdated(TypedDict):
    """Subject: the company."""

    fields: list[str]
    linked_leads: int


class CompanyArchived(TypedDict):
    """company.archived/unarchived. Subject: the company; `with` names the company whose
    (forced) archive took this subsidiary along."""

    with_: NotRequired[str]  # written as "with" (a Python keyword)


class FieldsChanged(TypedDict):
    """segment.updated, form.updated. Subject: the segment or form."""

    fields: list[str]


class FormCreated(TypedDict):
    """Subject: the form."""

    slug: str


class FormSubmitted(TypedDict):
    """Subject: the form."""

    form_id: str
    slug: str
    submission_id: str
    lead_id: str
    lead_created: bool


PAYLOADS: dict[EventType, Any] = {  # each a TypedDict class
    EventType.LEAD_CREATED: LeadCreated,
    EventType.LEAD_UPDATED: LeadUpdated,
    EventType.LEAD_ARCHIVED: NoPayload,
    EventType.LEAD_UNARCHIVED: NoPayload,
    EventType.LEAD_ENRICHED: LeadEnriched,
    EventType.LEAD_SCORE_CHANGED: ScoreChanged,
    EventType.LEAD_THRESHOLD_CROSSED: ThresholdCrossed,
    EventType.COMPANY_CREATED: CompanyCreated,
    EventType.COMPANY_UPDATED: CompanyUpdated,
    EventType.COMPANY_ARCHIVED: CompanyArchived,
    EventType.COMPANY_UNARCHIVED: CompanyArchived,
    EventType.SEGMENT_CREATED: NoPayload,
    EventType.SEGMENT_UPDATED: FieldsChanged,
    EventType.SEGMENT_DELETED: NoPayload,
    EventType.SEGMENT_LEAD_ENTERED: MembershipChanged,
    EventType.SEGMENT_LEAD_EXITED: MembershipChanged,
    EventType.FORM_CREATED: FormCreated,
    EventType.FORM_UPDATED: FieldsChanged,
    EventType.FORM_DELETED: NoPayload,
    EventType.FORM_SUBMITTED: FormSubmitted,
}


def _key(name: str) -> str:
    return name.rstrip("_")  # `with_` is stored as `with`


def payload_keys(event_type: EventType) -> tuple[frozenset[str], frozenset[str]]:
    """(required, optional) payload keys of an event type, as stored."""
    shape = PAYLOADS[event_type]
    required = frozenset(_key(k) for k in shape.__required_keys__)
    optional = frozenset(_key(k) for k in shape.__optional_keys__)
    return required, optional


def check_payload(event_type: EventType, keys: set[str]) -> None:
    """Raise ValueError unless `keys` fit the catalogued shape: a writer bug, caught by
    the tests of every writer rather than by a consumer."""
    required, optional = payload_keys(event_type)
    if not required <= keys <= required | optional:
        raise ValueError(
            f"{event_type}: payload keys {sorted(keys)} do not match the catalogue "
            f"(required {sorted(required)}, optional {sorted(optional)})"
        )


@dataclass(frozen=True)
class NewEvent:
    """An event about to be written in the caller's transaction."""

    type: EventType
    subject_id: str
    payload: dict[str, Any]


def new(event_type: EventType, subject_id: str, payload: Any = None) -> NewEvent:
    """An event of this type; `payload` is the type's TypedDict (checked here too)."""
    stored = {_key(k): v for k, v in (payload or {}).items()}
    check_payload(event_type, set(stored))
    return NewEvent(event_type, subject_id, stored)


def sql_payload(event_type: EventType, **expressions: str) -> str:
    """The payload as a SQL `jsonb_build_object(…)` of the given SQL expressions, for
    writers that build events set-based; keys are checked against the catalogue."""
    stored = {_key(k): v for k, v in expressions.items()}
    check_payload(event_type, set(stored))
    if not stored:
        return "'{}'::jsonb"
    pairs = ", ".join(f"'{key}', {value}" for key, value in stored.items())
    return f"jsonb_build_object({pairs})"


def event_id(number: int) -> str:
    """The public id of the event stored as row `number`: stable on every read."""
    return f"{EVENT_ID_PREFIX}{number}"


_ABOUT_THEIR_SUBJECT_LEAD = ("lead.", "segment.lead_")


def lead_of(event_type: str, subject_id: str, payload: dict[str, Any]) -> str | None:
    """The lead an event is about, if any: the subject of lead.* and segment.lead_* events,
    the submitting lead of form.submitted."""
    if event_type.startswith(_ABOUT_THEIR_SUBJECT_LEAD):
        return subject_id
    if event_type == EventType.FORM_SUBMITTED:
        lead_id = payload.get("lead_id")
        return lead_id if isinstance(lead_id, str) else None
    return None
