"""The public submission: every check first, then one transaction that writes it all.

Order of checks, cheapest and least revealing first: the client's rate limit; the form (by
slug); the page's Origin against the form's allowed origins and the signed token; the
form's rate limit; the honeypot; the values. Any refusal raises before the first write, and
all writes share one transaction, so a refused submission leaves nothing behind."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from server import ids
from server.companies import linking
from server.db.engine import AnyRow, Database
from server.errors import NotFound, PermissionDenied
from server.events import service as events
from server.forms import definition, origins, queries, tokens, values
from server.forms.definition import Form
from server.forms.limits import SubmissionLimits
from server.forms.service import to_form
from server.leads.phones import to_e164
from server.segments import membership

log = logging.getLogger(__name__)

ACTIVITY = "form_submitted"
EVENT = "form.submitted"
MAX_PAGE_URL = 2000
MAX_USER_AGENT = 500


@dataclass(frozen=True)
class Caller:
    """What the transport knows about who is asking."""

    client_ip: str
    origin: str  # the request's Origin header; "" when it had none
    user_agent: str


@dataclass(frozen=True)
class SubmissionRequest:
    slug: str
    token: str
    fields: dict[str, Any]
    honeypot: str = ""
    page_url: str = ""


@dataclass(frozen=True)
class Accepted:
    submission_id: str
    success_message: str
    redirect_url: str


def _denied(reason: str, message: str, **metadata: str) -> PermissionDenied:
    return PermissionDenied(message=message, reason=reason, metadata=metadata)


class PublicForms:
    def __init__(
        self,
        db: Database,
        secret: bytes,
        limits: SubmissionLimits,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db, self.secret, self.limits, self.clock = db, secret, limits, clock

    def _authorise(self, form: Form, raw_origin: str, token: str) -> str:
        """The page's origin, once it is allowed and matches a valid token for this form."""
        if not raw_origin.strip():
            raise _denied("FORM_ORIGIN_MISSING", "the request carries no Origin header")
        origin = origins.normalise(raw_origin)
        if origin is None or origin not in form.allowed_origins:
            raise _denied(
                "FORM_ORIGIN_NOT_ALLOWED",
                "this form does not accept submissions from this origin",
                origin=raw_origin[: origins.MAX_ORIGIN],
            )
        try:
            claims = tokens.verify(self.secret, token)
        except tokens.TokenInvalid:
            raise _denied("FORM_TOKEN_INVALID", "the form token is not valid") from None
        if claims.slug != form.slug:
            raise _denied("FORM_TOKEN_WRONG_FORM", "the form token belongs to another form")
        if claims.origin != origin:
            raise _denied(
                "FORM_TOKEN_ORIGIN_MISMATCH", "the form token was issued for another origin"
            )
        if claims.expires_at <= self.clock():
            raise _denied("FORM_TOKEN_EXPIRED", "the form token has expired: re-embed the form")
        return origin

    async def submit(self, request: SubmissionRequest, caller: Caller) -> Accepted:
        self.limits.check_ip(caller.client_ip)
        async with self.db.transaction() as conn:
            row = None
            if definition.SLUG.match(request.slug):
                row = await queries.form_by_slug(conn, slug=request.slug)
            if row is None:
                raise NotFound.resource("form", request.slug)
            form = to_form(row)
            origin = self._authorise(form, caller.origin, request.token)
            self.limits.check_form(form.id)
            if request.honeypot.strip():
                # Looks accepted, so a bot learns nothing; nothing is written.
                log.info("form %s: honeypot filled, submission dropped", form.id)
                return Accepted(ids.new_id("fsub"), form.success_message, form.redirect_url)
            checked = values.check(form, request.fields)
            submission_id = await _record(
                conn,
                form=form,
                checked=checked,
                origin=origin,
                # Informational only: trimmed and NUL-free rather than refused.
                page_url=request.page_url.replace("\x00", "").strip()[:MAX_PAGE_URL],
                user_agent=caller.user_agent.replace("\x00", "")[:MAX_USER_AGENT],
            )
        return Accepted(submission_id, form.success_message, form.redirect_url)


async def _record(
    conn: AsyncConnection,
    *,
    form: Form,
    checked: values.Mapped,
    origin: str,
    page_url: str,
    user_agent: str,
) -> str:
    now = datetime.now(UTC)
    workspace_id = form.workspace_id
    lead_id, created, changed = await _upsert_lead(conn, form=form, checked=checked, now=now)
    submission_id = ids.new_id("fsub")
    await queries.insert_submission(
        conn,
        values={
            "id": submission_id,
            "workspace_id": workspace_id,
            "form_id": form.id,
            "lead_id": lead_id,
            "payload": checked.payload,
            "origin": origin,
            "page_url": page_url,
            "user_agent": user_agent,
            "submitted_at": now,
        },
    )
    await queries.insert_activity(
        conn,
        values={
            "id": ids.new_id("act"),
            "workspace_id": workspace_id,
            "lead_id": lead_id,
            "type": ACTIVITY,
            "data": {"form_id": form.id, "submission_id": submission_id, "origin": origin},
            "occurred_at": now,
        },
    )
    entered = await queries.add_to_segments(
        conn, workspace_id=workspace_id, lead_id=lead_id, segment_ids=form.segment_ids
    )
    lead_event = (
        ("lead.created", lead_id, {"email": checked.email, "form_id": form.id})
        if created
        else ("lead.updated", lead_id, {"fields": changed, "form_id": form.id})
    )
    await events.record_many(
        conn,
        workspace_id=workspace_id,
        items=[
            *([lead_event] if created or changed else []),
            *(
                (
                    membership.ENTERED,
                    lead_id,
                    {"segment_id": s, "lead_id": lead_id, "cause": EVENT},
                )
                for s in entered
            ),
            (
                EVENT,
                form.id,
                {
                    "form_id": form.id,
                    "slug": form.slug,
                    "submission_id": submission_id,
                    "lead_id": lead_id,
                    "lead_created": created,
                },
            ),
        ],
    )
    # Member counts are hot rows every submission to the form updates: their row locks are
    # taken last, held only until commit. Static before rule segments, as imports do, so
    # the two never wait on each other in opposite orders.
    await membership.apply_count_deltas(
        conn, [membership.Change(s, lead_id, membership.ENTERED) for s in entered]
    )
    # Rule segments see the new values and last_activity_at in this same transaction.
    await membership.refresh(conn, workspace_id=workspace_id, lead_ids=[lead_id], cause=EVENT)
    return submission_id


async def _upsert_lead(
    conn: AsyncConnection, *, form: Form, checked: values.Mapped, now: datetime
) -> tuple[str, bool, list[str]]:
    """(lead id, created, changed field paths). A new lead gets every submitted value; an
    existing one gets the submitted (non-empty) values of mapped fields, so nothing it had
    is ever wiped."""
    workspace_id = form.workspace_id
    existing = await queries.lock_lead_by_email(
        conn, workspace_id=workspace_id, email=checked.email
    )
    if existing is None:
        lead_values: dict[str, Any] = {
            "id": ids.new_id("lead"),
            "workspace_id": workspace_id,
            "email": checked.email,
            **{column: checked.lead.get(column, "") for column in _TEXT_COLUMNS},
            "source": form.source,
            "status": "new",
            "custom_fields": checked.custom,
            "last_activity_at": now,
            "phone_e164": to_e164(
                checked.lead.get("phone", ""), str(checked.custom.get("country", ""))
            ),
        }
        lead_values.update(await _company_link(conn, workspace_id, checked.email))
        inserted = await queries.insert_lead_if_absent(conn, values=lead_values)
        if inserted is not None:
            return inserted, True, []
        # A concurrent submission created this lead after our look-up; update it instead.
        existing = await queries.lock_lead_by_email(
            conn, workspace_id=workspace_id, email=checked.email
        )
        assert existing is not None
    return await _update_existing(conn, existing, checked, now)


_TEXT_COLUMNS = ("first_name", "last_name", "title", "phone", "company")


async def _company_link(conn: AsyncConnection, workspace_id: str, email: str) -> dict[str, Any]:
    company = await linking.by_email(conn, workspace_id=workspace_id, email=email)
    if company is None:
        return {}
    return {"company_id": company.id, "company": company.name, "company_path": company.path}


async def _update_existing(
    conn: AsyncConnection, existing: AnyRow, checked: values.Mapped, now: datetime
) -> tuple[str, bool, list[str]]:
    updates: dict[str, Any] = {}
    for column, value in checked.lead.items():
        # A linked lead shows its company's name; the form cannot rename it.
        if column == "company" and existing.company_id is not None:
            continue
        if getattr(existing, column) != value:
            updates[column] = value
    custom = {k: v for k, v in checked.custom.items() if existing.custom_fields.get(k) != v}
    changed = sorted([*updates, *(f"custom_fields.{key}" for key in custom)])
    if existing.company_id is None:
        updates.update(await _company_link(conn, existing.workspace_id, existing.email))
    if "phone" in updates or "country" in custom:
        country = {**existing.custom_fields, **custom}.get("country", "")
        updates["phone_e164"] = to_e164(updates.get("phone", existing.phone), str(country))
    await queries.update_lead(
        conn, lead_id=existing.id, values={**updates, "last_activity_at": now}, custom=custom
    )
    return existing.id, False, changed
