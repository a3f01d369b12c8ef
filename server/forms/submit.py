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
from server.db.engine import Database
from server.errors import NotFound, PermissionDenied
from server.events import catalogue
from server.events import service as events
from server.events.catalogue import EventType
from server.forms import definition, origins, queries, tokens, values
from server.forms.definition import Form
from server.forms.limits import SubmissionLimits
from server.forms.service import to_form
from server.leads import writes
from server.leads.model import LeadInput
from server.scoring import activities
from server.segments import membership

log = logging.getLogger(__name__)

ACTIVITY = "form_submitted"
SOURCE = "form"  # the activity's source
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
        slug = request.slug if definition.SLUG.match(request.slug) else "-"
        await self.limits.take(self.db, client_ip=caller.client_ip, form_slug=slug)
        async with self.db.transaction() as conn:
            row = None
            if definition.SLUG.match(request.slug):
                row = await queries.form_by_slug(conn, slug=request.slug)
            if row is None:
                raise NotFound.resource("form", request.slug)
            form = to_form(row)
            origin = self._authorise(form, caller.origin, request.token)
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
    # A new lead gets every submitted value; an existing one the submitted (non-empty)
    # values of mapped fields, so nothing it had is ever wiped.
    data = LeadInput(
        email=checked.email, source=form.source, custom_fields=checked.custom, last_activity_at=now
    )
    for column, value in checked.lead.items():  # text columns only (forms.definition)
        setattr(data, column, value)
    written = await writes.upsert_by_email(
        conn,
        workspace_id=workspace_id,
        data=data,
        given={*checked.lead, "last_activity_at"},
        origin=writes.Origin(form_id=form.id),
        cause=EventType.FORM_SUBMITTED,
    )
    lead_id = written.row.id
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
    submitted_activity = activities.Item(
        type=ACTIVITY,
        properties={"form_id": form.id, "submission_id": submission_id, "origin": origin},
        occurred_at=now,
        source=SOURCE,
        lead_id=lead_id,
    )
    await activities.record_for_written_lead(
        conn,
        workspace_id=workspace_id,
        item=submitted_activity,
        scored=written.row.scoring_version is not None,
    )
    submitted = {
        "form_id": form.id,
        "slug": form.slug,
        "submission_id": submission_id,
        "lead_id": lead_id,
        "lead_created": written.created,
    }
    submitted_event = catalogue.new(EventType.FORM_SUBMITTED, form.id, submitted)
    await events.record(conn, workspace_id=workspace_id, events=[submitted_event])
    # Member counts are hot rows every submission to the form updates: their row locks are
    # taken last, held only until commit. Every writer updates rule segments' counts (in
    # the lead write) before static segments' (here), so two never wait on each other in
    # opposite orders.
    await membership.add_static(
        conn,
        workspace_id=workspace_id,
        lead_ids=[lead_id],
        segment_ids=form.segment_ids,
        cause=EventType.FORM_SUBMITTED,
    )
    return submission_id
