"""Forms: defining them, the embed snippet that puts one on a site, and reading back what
was submitted. The public submission itself is server/forms/submit.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from server import ids
from server.db.engine import AnyRow, Database
from server.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound
from server.events import catalogue
from server.events import service as events
from server.events.catalogue import EventType
from server.forms import definition, embed, origins, queries, tokens
from server.forms.definition import Form, FormField, FormInput
from server.pagination import CursorCodec, Keyset, fingerprint, page_size
from server.segments import service as segments

DEFAULT_TTL_DAYS = 180
MAX_TTL_DAYS = 365
PUBLIC_PATH = "/api/v1/public/forms/{slug}/submissions"


@dataclass(frozen=True)
class FormPage:
    forms: list[Form]
    next_cursor: str


@dataclass(frozen=True)
class Embed:
    html: str
    token: str
    origin: str
    expires_at: datetime
    submit_url: str


@dataclass(frozen=True)
class Submission:
    id: str
    form_id: str
    lead_id: str
    fields: dict[str, Any]
    origin: str
    page_url: str
    user_agent: str
    submitted_at: datetime


@dataclass(frozen=True)
class SubmissionPage:
    submissions: list[Submission]
    next_cursor: str


def to_form(row: AnyRow) -> Form:
    return Form(
        id=row.id,
        workspace_id=row.workspace_id,
        slug=row.slug,
        name=row.name,
        fields=tuple(FormField.from_json(item) for item in row.fields),
        segment_ids=tuple(row.segment_ids),
        source=row.source,
        allowed_origins=tuple(row.allowed_origins),
        success_message=row.success_message,
        redirect_url=row.redirect_url,
        submit_label=row.submit_label,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _columns(values: dict[str, Any]) -> dict[str, Any]:
    """Checked values as stored: fields as JSON, tuples as arrays."""
    out = dict(values)
    if "fields" in out:
        out["fields"] = [item.to_json() for item in out["fields"]]
    for name in ("segment_ids", "allowed_origins"):
        if name in out:
            out[name] = list(out[name])
    return out


async def _check_segments(
    conn: AsyncConnection, *, workspace_id: str, segment_ids: Sequence[str]
) -> None:
    found = await segments.static_segment_ids(
        conn, workspace_id=workspace_id, segment_ids=segment_ids
    )
    missing = [
        FieldViolation(f"form.segment_ids[{i}]", "not a STATIC segment of this workspace")
        for i, segment_id in enumerate(segment_ids)
        if segment_id not in found
    ]
    if missing:
        raise InvalidArgument(
            message="; ".join(f"{v.field}: {v.description}" for v in missing),
            reason="FORM_INVALID",
            violations=missing,
        )


def _slug_taken(slug: str) -> AlreadyExists:
    return AlreadyExists(
        message=f"the slug {slug!r} is taken",
        reason="FORM_SLUG_TAKEN",
        violations=[FieldViolation("form.slug", "already used by another form")],
        metadata={"slug": slug},
    )


async def create_form(db: Database, *, workspace_id: str, data: FormInput) -> Form:
    values = definition.validate(data, set(definition.UPDATABLE), creating=True)
    form_id = ids.new_id("form")
    try:
        async with db.transaction() as conn:
            await _check_segments(
                conn, workspace_id=workspace_id, segment_ids=values["segment_ids"]
            )
            row = await queries.insert_form(
                conn, values={"id": form_id, "workspace_id": workspace_id, **_columns(values)}
            )
            created = catalogue.new(EventType.FORM_CREATED, form_id, {"slug": row.slug})
            await events.record(conn, workspace_id=workspace_id, events=[created])
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) == "23505":
            raise _slug_taken(values["slug"]) from None
        raise
    return to_form(row)


async def get_form(db: Database, *, workspace_id: str, form_id: str) -> Form:
    async with db.transaction() as conn:
        row = await queries.get_form(conn, workspace_id=workspace_id, form_id=form_id)
    if row is None:
        raise NotFound.resource("form", form_id)
    return to_form(row)


async def update_form(
    db: Database, *, workspace_id: str, form_id: str, data: FormInput, paths: Sequence[str]
) -> Form:
    for path in paths:
        if path == "slug":
            raise InvalidArgument.on(
                "update_mask", "the slug cannot change: embedded forms use it", "FORM_INVALID"
            )
        if path not in definition.UPDATABLE:
            raise InvalidArgument.on(
                "update_mask", f"unknown or read-only field path {path!r}", "UPDATE_MASK_INVALID"
            )
    values = definition.validate(data, set(paths), creating=False)
    async with db.transaction() as conn:
        if "segment_ids" in values:
            await _check_segments(
                conn, workspace_id=workspace_id, segment_ids=values["segment_ids"]
            )
        if not values:
            row = await queries.get_form(conn, workspace_id=workspace_id, form_id=form_id)
        else:
            row = await queries.update_form(
                conn, workspace_id=workspace_id, form_id=form_id, values=_columns(values)
            )
        if row is None:
            raise NotFound.resource("form", form_id)
        if values:
            updated = catalogue.new(EventType.FORM_UPDATED, form_id, {"fields": sorted(values)})
            await events.record(conn, workspace_id=workspace_id, events=[updated])
    return to_form(row)


async def delete_form(db: Database, *, workspace_id: str, form_id: str) -> None:
    async with db.transaction() as conn:
        if not await queries.delete_form(conn, workspace_id=workspace_id, form_id=form_id):
            raise NotFound.resource("form", form_id)
        deleted = catalogue.new(EventType.FORM_DELETED, form_id)
        await events.record(conn, workspace_id=workspace_id, events=[deleted])


async def list_forms(
    db: Database, codec: CursorCodec, *, workspace_id: str, limit: int, cursor: str
) -> FormPage:
    size = page_size(limit)
    keyset = Keyset(codec, workspace_id, fingerprint("forms"))
    after = keyset.after_id(cursor)
    async with db.transaction() as conn:
        rows = await queries.list_forms(conn, workspace_id=workspace_id, after_id=after, limit=size)
    rows, next_cursor = keyset.page(rows, size, lambda r: [r.id])
    return FormPage(forms=[to_form(row) for row in rows], next_cursor=next_cursor)


async def list_submissions(
    db: Database, codec: CursorCodec, *, workspace_id: str, form_id: str, limit: int, cursor: str
) -> SubmissionPage:
    size = page_size(limit)
    keyset = Keyset(codec, workspace_id, fingerprint("form_submissions", form_id))
    before = keyset.after_id(cursor)  # newest first, so the next page is below this id
    async with db.transaction() as conn:
        if await queries.get_form(conn, workspace_id=workspace_id, form_id=form_id) is None:
            raise NotFound.resource("form", form_id)
        rows = await queries.list_submissions(conn, form_id=form_id, before_id=before, limit=size)
    rows, next_cursor = keyset.page(rows, size, lambda r: [r.id])
    found = [
        Submission(
            id=row.id,
            form_id=row.form_id,
            lead_id=row.lead_id,
            fields=row.payload,
            origin=row.origin,
            page_url=row.page_url,
            user_agent=row.user_agent,
            submitted_at=row.submitted_at,
        )
        for row in rows
    ]
    return SubmissionPage(submissions=found, next_cursor=next_cursor)


async def get_embed(
    db: Database,
    secret: bytes,
    *,
    workspace_id: str,
    form_id: str,
    origin: str,
    ttl_days: int,
    public_base_url: str,
    now: datetime | None = None,
) -> Embed:
    """The snippet for pages of `origin`; only an origin the form allows gets a token."""
    if ttl_days < 0 or ttl_days > MAX_TTL_DAYS:
        raise InvalidArgument.on("ttl_days", f"0 (default) to {MAX_TTL_DAYS}", "EMBED_INVALID")
    clean = origins.normalise(origin)
    if clean is None:
        raise InvalidArgument.on(
            "origin", "required: the pages' origin, e.g. https://www.example.com", "EMBED_INVALID"
        )
    form = await get_form(db, workspace_id=workspace_id, form_id=form_id)
    if clean not in form.allowed_origins:
        raise InvalidArgument(
            message=f"origin: {clean} is not one of the form's allowed origins",
            reason="FORM_ORIGIN_NOT_ALLOWED",
            violations=[FieldViolation("origin", "not one of the form's allowed_origins")],
            metadata={"origin": clean},
        )
    expires_at = (now or datetime.now(UTC)) + timedelta(days=ttl_days or DEFAULT_TTL_DAYS)
    token = tokens.issue(
        secret,
        tokens.Claims(slug=form.slug, origin=clean, expires_at=int(expires_at.timestamp())),
    )
    submit_url = public_base_url.rstrip("/") + PUBLIC_PATH.format(slug=form.slug)
    return Embed(
        html=embed.render(form, token=token, submit_url=submit_url),
        token=token,
        origin=clean,
        expires_at=expires_at.replace(microsecond=0),
        submit_url=submit_url,
    )
