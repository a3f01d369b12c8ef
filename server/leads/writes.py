"""The one way to write a lead, on a connection (and transaction) the caller already holds.

Every writer of leads — the Leads API, public form submissions, and (set-based) imports —
goes through here or takes its rules from here: the defaults (server.leads.model), the
limits (server.fields), company linking by email domain (server.companies.linking), the
rule-membership refresh (server.segments.membership), and the lead events (catalogued in
server.events.catalogue). Each function returns what it wrote (`Written`), so the caller
can reply, chain more writes in the same transaction, or raise to undo it all.

Input is validated by the caller's domain (leads.validation for the API, forms.values for a
submission, imports.mapping for a file): what arrives here is clean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, null
from sqlalchemy.ext.asyncio import AsyncConnection

from server import ids
from server.companies import linking
from server.db.engine import AnyRow
from server.errors import FailedPrecondition, FieldViolation, NotFound
from server.events import catalogue
from server.events import service as events
from server.events.catalogue import EventType
from server.fields import CUSTOM_PATH, CustomPatch
from server.filtering.fields import CUSTOM_PREFIX
from server.leads import queries
from server.leads.model import DEFAULT_SOURCE, DEFAULT_STATUS, WRITABLE, LeadInput
from server.leads.phones import to_e164
from server.scoring import rescoring
from server.segments import membership

ACTIVITY_CAUSE = "activity"  # why recording activities moved a lead in or out of a segment

# Lead columns a patch can set from LeadInput (company_id is resolved by company linking).
_COLUMNS = tuple(name for name in WRITABLE if name not in ("custom_fields", "company_id"))


@dataclass(frozen=True)
class Origin:
    """What made a write, beyond the API: named in its events."""

    form_id: str | None = None
    import_id: str | None = None
    # An enrichment run (and its connectors): its writes are lead.enriched, not lead.updated.
    run_id: str | None = None
    connector_ids: tuple[str, ...] = ()

    def keys(self) -> dict[str, Any]:
        if self.run_id is not None:
            return {"run_id": self.run_id, "connector_ids": list(self.connector_ids)}
        found = {"form_id": self.form_id, "import_id": self.import_id}
        return {key: value for key, value in found.items() if value is not None}

    def update_event(self) -> EventType:
        return EventType.LEAD_ENRICHED if self.run_id is not None else EventType.LEAD_UPDATED


API = Origin()


@dataclass(frozen=True)
class Written:
    """A lead as one write left it."""

    row: AnyRow  # the stored lead (queries.LEAD_COLUMNS)
    created: bool
    changed: list[str]  # the field paths written ([] for a create)
    segment_ids: list[str]  # after the rule refresh, without reading the lead again


def phone_e164(phone: str, custom_fields: dict[str, Any]) -> str:
    """The normalised phone stored beside the typed one (ad-platform exports use it)."""
    return to_e164(phone, str(custom_fields.get("country", "")))


async def create(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    data: LeadInput,
    origin: Origin = API,
    if_absent: bool = False,
    cause: str = EventType.LEAD_CREATED,
) -> Written | None:
    """Insert a lead with the defaults, linked to its company (the one named by
    data.company_id, else the live company of its email's domain), with its lead.created
    event, and rule segments refreshed. A taken email raises IntegrityError, or, with
    `if_absent`, writes nothing and returns None."""
    values = {
        "id": ids.new_id("lead"),
        "workspace_id": workspace_id,
        **{name: getattr(data, name) for name in _COLUMNS},
        "custom_fields": data.custom_fields,
        "source": data.source or DEFAULT_SOURCE,
        "status": data.status or DEFAULT_STATUS,
        "phone_e164": phone_e164(data.phone, data.custom_fields),
    }
    link_domain: str | None = None
    if data.company_id:
        company = await linking.explicit(
            conn,
            workspace_id=workspace_id,
            company_id=data.company_id,
            field_name="lead.company_id",
        )
        values.update(linking.lead_columns(company))
    else:
        # The insert statement itself links by domain: no look-up of its own.
        link_domain = linking.linkable_domain(data.email)
    payload = {"email": data.email, **origin.keys()}
    event = catalogue.new(EventType.LEAD_CREATED, values["id"], payload)
    row = await queries.insert_lead(
        conn, values=values, link_domain=link_domain, event=event, if_absent=if_absent
    )
    if row is None:
        return None
    versions = row.rule_segment_versions
    row = await _score(conn, workspace_id, row, cause, score_written=data.score != 0)
    segment_ids = await _refresh(conn, workspace_id, row, cause, versions)
    return Written(row=row, created=True, changed=[], segment_ids=segment_ids)


async def patch(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    lead_id: str,
    data: LeadInput,
    whole: set[str],
    custom: CustomPatch,
    changed: list[str] | None = None,
    current: AnyRow | None = None,
    relink: bool = False,
    origin: Origin = API,
    cause: str = EventType.LEAD_UPDATED,
) -> Written:
    """Write the fields named in `whole` (from `data`) and the custom-fields patch, relink
    the company when the email or company changes (or, with `relink`, whenever the lead has
    none), refresh rule segments and record lead.updated with `changed` (default: every
    path written; no event when empty). `current`: the lead, if the caller locked it."""
    values: dict[str, Any] = {name: getattr(data, name) for name in whole if name in _COLUMNS}
    if custom.replace is not None:
        values["custom_fields"] = custom.replace
    if "status" in values and not values["status"]:
        values["status"] = DEFAULT_STATUS
    country = custom.merge.get("country", (custom.replace or {}).get("country"))
    if "phone" in whole or country is not None:
        if "phone" not in whole or country is None:
            # The other half of the pair is stored: read it (under lock, as the write will).
            current = current or await _locked(conn, workspace_id, lead_id)
        values["phone_e164"] = _phone_e164(data, whole, country, current)
    relinked = relink or bool(whole & {"company_id", "company", "email"})
    if relinked:
        link_by_email = relink or "email" in whole
        values.update(
            await _company_link(conn, workspace_id, lead_id, data, whole, current, link_by_email)
        )
    row = await queries.update_lead(
        conn,
        workspace_id=workspace_id,
        lead_id=lead_id,
        values=values,
        custom_merge=custom.merge,
        custom_remove=custom.remove,
        with_versions=True,
    )
    if row is None:
        raise NotFound.resource("lead", lead_id)
    versions = row.rule_segment_versions
    written = row
    row = await _score(conn, workspace_id, row, cause, score_written="score" in whole)
    touched = _touched(whole, custom, relinked=relinked, rescored=row.score != written.score)
    segment_ids = await _refresh(conn, workspace_id, row, cause, versions, touched)
    if changed is None:
        changed = sorted(whole | {f"{CUSTOM_PATH}{key}" for key in [*custom.merge, *custom.remove]})
    if changed:
        payload = {"fields": changed, **origin.keys()}
        await events.record(
            conn,
            workspace_id=workspace_id,
            events=[catalogue.new(origin.update_event(), lead_id, payload)],
        )
    return Written(row=row, created=False, changed=changed, segment_ids=segment_ids)


def _touched(
    whole: set[str], custom: CustomPatch, *, relinked: bool, rescored: bool
) -> frozenset[str]:
    """The rule fields a patch may have changed: those written (updated_at always moves),
    what derives from them, the company's fields when the link may have moved, the score
    when the scoring model moved it."""
    fields = {"updated_at", *whole}
    if "email" in whole:
        fields.add("email_domain")
    if relinked:
        fields |= {"company_id", "company", membership.ANY_COMPANY}
    if custom.replace is not None:
        fields.add(membership.ANY_CUSTOM)
    fields |= {f"{CUSTOM_PREFIX}{key}" for key in [*custom.merge, *custom.remove]}
    if rescored:
        fields.add("score")
    return frozenset(fields)


def _phone_e164(
    data: LeadInput, whole: set[str], country: str | None, current: AnyRow | None
) -> str:
    """The normalised phone after a patch: the new or stored phone, in the new or stored
    country (`current` is read whenever one of the two is not in the patch)."""
    phone = data.phone if "phone" in whole or current is None else current.phone
    if country is None and current is not None:
        country = current.custom_fields.get("country", "")
    return phone_e164(phone, {"country": country or ""})


async def upsert_by_email(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    data: LeadInput,
    given: set[str],
    origin: Origin,
    cause: str,
) -> Written:
    """Create the lead of data.email with every given value, or fill in the existing one:
    a given field is written only where its value differs (nothing is ever wiped), custom
    fields merge key by key, an unlinked lead is linked by its email's domain, and
    last_activity_at, when given, is always written."""
    existing = await queries.lock_lead_by_email(conn, workspace_id=workspace_id, email=data.email)
    if existing is None:
        written = await create(
            conn, workspace_id=workspace_id, data=data, origin=origin, if_absent=True, cause=cause
        )
        if written is not None:
            return written
        # A concurrent writer created this lead after our look-up: update it instead.
        existing = await queries.lock_lead_by_email(
            conn, workspace_id=workspace_id, email=data.email
        )
        assert existing is not None
    differing = {
        name
        for name in given & set(_COLUMNS)
        if getattr(existing, name) != getattr(data, name)
        # A linked lead shows its company's name: a write cannot rename it.
        and not (name == "company" and existing.company_id is not None)
    }
    merge = {k: v for k, v in data.custom_fields.items() if existing.custom_fields.get(k) != v}
    changed = sorted([*differing, *(f"{CUSTOM_PATH}{key}" for key in merge)])
    whole = differing | (given & {"last_activity_at"})
    return await patch(
        conn,
        workspace_id=workspace_id,
        lead_id=existing.id,
        data=data,
        whole=whole,
        custom=CustomPatch(merge=merge),
        changed=[path for path in changed if path != "last_activity_at"],
        current=existing,
        relink=True,
        origin=origin,
        cause=cause,
    )


async def set_archived(
    conn: AsyncConnection, *, workspace_id: str, lead_id: str, archived: bool
) -> Written:
    """Archive or unarchive; doing it twice writes nothing and returns the lead as it is."""
    row = await _locked(conn, workspace_id, lead_id)
    if (row.archived_at is not None) == archived:
        return Written(row=row, created=False, changed=[], segment_ids=list(row.segment_ids))
    updated = await queries.update_lead(
        conn,
        workspace_id=workspace_id,
        lead_id=lead_id,
        values={"archived_at": func.now() if archived else null()},
    )
    assert updated is not None
    event_type = EventType.LEAD_ARCHIVED if archived else EventType.LEAD_UNARCHIVED
    segment_ids = await _refresh(conn, workspace_id, updated, event_type)
    await events.record(
        conn, workspace_id=workspace_id, events=[catalogue.new(event_type, lead_id)]
    )
    return Written(row=updated, created=False, changed=["archived_at"], segment_ids=segment_ids)


async def record_activity_times(
    conn: AsyncConnection, *, workspace_id: str, latest: Mapping[str, datetime]
) -> None:
    """These leads did something at these times (activities just recorded): their
    last_activity_at moves forward (never back), their scores follow (under an active
    scoring model), and rule segments follow. No lead event:
    the activities are the record. Leads are locked in id order, as every batch writer
    does, so two batches never wait on each other in opposite orders."""
    if not latest:
        return
    lead_ids = sorted(latest)
    await queries.touch_activity(
        conn,
        workspace_id=workspace_id,
        lead_ids=lead_ids,
        times=[latest[lead_id] for lead_id in lead_ids],
    )
    await activity_followups(conn, workspace_id=workspace_id, lead_ids=lead_ids)


# What new activities change on a lead (updated_at is the lead's own fields' time).
ACTIVITY_TOUCHES = frozenset({"last_activity_at", "score"})


async def activity_followups(
    conn: AsyncConnection, *, workspace_id: str, lead_ids: Sequence[str]
) -> None:
    """What follows new activities of these leads once their last_activity_at is current
    (`record_activity_times`, or the NDJSON ingest statement, which moves it itself): their
    scores under an active scoring model, then rule segments. Nothing without either."""
    if not lead_ids:
        return
    await rescoring.rescore(
        conn, workspace_id=workspace_id, lead_ids=lead_ids, cause=ACTIVITY_CAUSE, refresh=False
    )
    await membership.refresh(
        conn,
        workspace_id=workspace_id,
        lead_ids=lead_ids,
        cause=ACTIVITY_CAUSE,
        touched=ACTIVITY_TOUCHES,
    )


# -- the rules every write shares ---------------------------------------------------------


async def _locked(conn: AsyncConnection, workspace_id: str, lead_id: str) -> AnyRow:
    row = await queries.lock_lead(conn, workspace_id=workspace_id, lead_id=lead_id)
    if row is None:
        raise NotFound.resource("lead", lead_id)
    return row


async def _company_link(
    conn: AsyncConnection,
    workspace_id: str,
    lead_id: str,
    data: LeadInput,
    whole: set[str],
    current: AnyRow | None,
    link_by_email: bool,
) -> dict[str, Any]:
    """The company columns a patch sets. An explicit company_id links (an empty one
    unlinks); otherwise, with `link_by_email`, an unlinked lead is linked by its email's
    domain. A linked lead's
    stored `company` is its company's name, so search and the `company` filter see the
    name the lead shows."""
    if "company_id" in whole:
        if not data.company_id:
            return {"company_id": None, "company_path": None}
        company = await linking.explicit(
            conn,
            workspace_id=workspace_id,
            company_id=data.company_id,
            field_name="lead.company_id",
        )
        return linking.lead_columns(company)
    current = current or await _locked(conn, workspace_id, lead_id)
    if current.company_id is not None:
        return {"company": current.company}
    if not link_by_email:
        return {}
    email = data.email if "email" in whole else current.email
    found = await linking.by_email(conn, workspace_id=workspace_id, email=email)
    return linking.lead_columns(found) if found is not None else {}


async def _score(
    conn: AsyncConnection, workspace_id: str, row: AnyRow, cause: str, *, score_written: bool
) -> AnyRow:
    """Under an active scoring model (the write statement read its version), the score is
    computed: a client's score is refused, and the lead is rescored (its fields feed the
    fit rules). Returns the lead as it now is."""
    if row.scoring_version is None:
        return row
    if score_written:
        raise FailedPrecondition(
            message="the score is computed by the scoring model: record a score_adjusted "
            "activity with properties.points to change it",
            reason="SCORE_COMPUTED",
            violations=[FieldViolation("lead.score", "computed by the scoring model")],
        )
    model = await rescoring.active_model(conn, workspace_id, row.scoring_version)
    changed = await rescoring.rescore(
        conn,
        workspace_id=workspace_id,
        lead_ids=[row.id],
        cause=cause,
        model=model,
        refresh=False,
    )
    if not changed:
        return row
    return await _locked(conn, workspace_id, row.id)


async def _refresh(
    conn: AsyncConnection,
    workspace_id: str,
    row: AnyRow,
    cause: str,
    versions: list[str] | None = None,
    touched: frozenset[str] | None = None,
) -> list[str]:
    """Keep rule segments current for this lead, in the writing transaction; returns its
    segment ids after that: the ones `row` was written with, plus entries, minus exits (no
    second read of the lead). `versions`, `touched`: see membership.refresh."""
    changes = await membership.refresh(
        conn,
        workspace_id=workspace_id,
        lead_ids=[row.id],
        cause=cause,
        versions=versions,
        touched=touched,
    )
    segment_ids = set(row.segment_ids or [])
    for change in changes:
        if change.type == EventType.SEGMENT_LEAD_ENTERED:
            segment_ids.add(change.segment_id)
        else:
            segment_ids.discard(change.segment_id)
    return sorted(segment_ids)
