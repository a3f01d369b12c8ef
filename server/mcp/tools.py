"""The CRM's MCP tools. Each one calls the public API with the caller's key through the
Python client (tnx_crm), never the database, so a tool can do exactly what the key's
workspace allows and fails as the API fails (see errors.py).

Docstrings are the tools' descriptions; parameter types and `Field`s are their input schemas
and the return types (schemas.py) their output schemas. `@tool` records the behaviour hints.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import tnx_crm
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field, StringConstraints
from tnx.crm.v1 import (
    import_pb2,
    import_service_pb2,
    lead_pb2,
    lead_service_pb2,
    segment_service_pb2,
)

from server.mcp import convert, pages, schemas
from server.mcp.callers import Callers
from server.mcp.errors import ApiToolError, api

F = TypeVar("F", bound=Callable[..., Any])
Limit = Annotated[int, Field(ge=1, le=pages.MAX_ITEMS, description="Most items to return.")]
LeadId = Annotated[str, StringConstraints(min_length=1, max_length=100), Field(examples=["lead_…"])]
Text = Annotated[str, StringConstraints(max_length=500)]
CustomFields = Annotated[
    dict[str, schemas.Scalar | None],
    Field(description="Custom fields by key (letters, digits, _ or -).", max_length=100),
]


def tool(title: str, *, read_only: bool, destructive: bool, idempotent: bool) -> Callable[[F], F]:
    """Mark a method as a tool, with its title and behaviour hints (MCP ToolAnnotations).
    All three hints are always given: the spec's defaults for a tool that leaves them out
    are the alarming ones (destructive, not idempotent)."""
    hints = ToolAnnotations(
        title=title,
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        # Only this workspace's CRM data, no outside world.
        open_world_hint=False,
    )

    def mark(method: F) -> F:
        method.__mcp_tool__ = (title, hints)  # type: ignore[attr-defined]
        return method

    return mark


READ: dict[str, bool] = {"read_only": True, "destructive": False, "idempotent": True}


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def _lead_by_email(client: tnx_crm.AsyncClient, email: str) -> lead_pb2.Lead:
    request = lead_service_pb2.ListLeadsRequest(
        filter=f"email = {_quote(email)}", include_archived=True, limit=1
    )
    page = await api(client.call(client.leads.stub.ListLeads, request))
    if not page.leads:
        raise ToolError(f"a lead with email {email!r} exists but could not be read; retry")
    return page.leads[0]


class Tools:
    def __init__(self, callers: Callers) -> None:
        self.callers = callers

    # -- leads ----------------------------------------------------------------------------

    @tool(
        "Create a lead (or find it by email)", read_only=False, destructive=False, idempotent=True
    )
    async def create_lead(
        self,
        ctx: Context,
        email: Annotated[str, StringConstraints(min_length=3, max_length=320)],
        first_name: Text = "",
        last_name: Text = "",
        company: Text = "",
        source: Annotated[str, Field(max_length=100, description="Where the lead came from.")] = "",
        title: Text = "",
        phone: Text = "",
        custom_fields: CustomFields | None = None,
    ) -> schemas.CreateLeadResult:
        """Create a lead, or, when a lead already has this email (in any case), return that
        lead with status "existing" and fill in only its empty fields from the ones given.
        Never overwrites a value: use update_lead to change one."""
        client = self.callers.client(ctx)
        named: dict[str, Any] = {"first_name": first_name, "last_name": last_name}
        named |= {"title": title, "phone": phone, "company": company, "source": source}
        given = {name: value for name, value in named.items() if value}
        custom = {k: v for k, v in (custom_fields or {}).items() if v is not None}
        try:
            created = await api(
                client.leads.create(email=email, custom_fields=custom or None, **given)
            )
        except ApiToolError as exc:
            if exc.error.reason != "LEAD_EMAIL_TAKEN":
                raise
            # The API names the address as it stores it (normalised, lower-cased).
            taken = exc.error.metadata.get("email") or email
        else:
            return schemas.CreateLeadResult(status="created", lead=convert.lead(created))
        return await self._fill_existing(client, taken, given, custom)

    async def _fill_existing(
        self,
        client: tnx_crm.AsyncClient,
        email: str,
        given: dict[str, Any],
        custom: dict[str, Any],
    ) -> schemas.CreateLeadResult:
        """create_lead's other half: the lead that has the email, its empty fields filled."""
        existing = await _lead_by_email(client, email)
        missing = [name for name in given if not getattr(existing, name)]
        missing_custom = [key for key in custom if key not in existing.custom_fields]
        paths = missing + [f"custom_fields.{key}" for key in missing_custom]
        if not paths:
            return schemas.CreateLeadResult(status="existing", lead=convert.lead(existing))
        body = lead_pb2.Lead(id=existing.id)
        for name in missing:
            setattr(body, name, given[name])
        body.custom_fields.update({key: custom[key] for key in missing_custom})
        updated = await api(client.leads.update(existing.id, body, update_mask=paths))
        return schemas.CreateLeadResult(
            status="existing", lead=convert.lead(updated), filled_fields=paths
        )

    @tool("Get a lead", **READ)
    async def get_lead(self, ctx: Context, lead_id: LeadId) -> schemas.Lead:
        """One lead by id (`lead_…`), archived or not, with its custom fields and segments."""
        client = self.callers.client(ctx)
        return convert.lead(await api(client.leads.get(lead_id)))

    @tool("Update a lead", read_only=False, destructive=True, idempotent=True)
    async def update_lead(
        self,
        ctx: Context,
        lead_id: LeadId,
        email: Annotated[str, StringConstraints(min_length=3, max_length=320)] | None = None,
        first_name: Text | None = None,
        last_name: Text | None = None,
        title: Text | None = None,
        phone: Text | None = None,
        company: Text | None = None,
        source: Annotated[str, Field(max_length=100)] | None = None,
        status: schemas.LeadStatus | None = None,
        score: Annotated[int, Field(ge=0)] | None = None,
        custom_fields: CustomFields | None = None,
    ) -> schemas.UpdateLeadResult:
        """Set the fields given, and only those (an empty string clears a text field).
        custom_fields are merged key by key: a key set to null is removed, keys not given
        are kept. `score` is refused (SCORE_COMPUTED) when a scoring model computes it."""
        texts: dict[str, Any] = {"email": email, "first_name": first_name, "last_name": last_name}
        texts |= {"title": title, "phone": phone, "company": company, "source": source}
        body = lead_pb2.Lead(id=lead_id, **{k: v for k, v in texts.items() if v is not None})
        paths = [name for name, value in texts.items() if value is not None]
        if status is not None:
            body.status = convert.lead_status(status)
            paths.append("status")
        if score is not None:
            body.score = score
            paths.append("score")
        for key, value in (custom_fields or {}).items():
            if value is not None:
                body.custom_fields[key] = value
            paths.append(f"custom_fields.{key}")
        if not paths:
            raise ToolError("nothing to change: give at least one field")
        client = self.callers.client(ctx)
        updated = await api(client.leads.update(lead_id, body, update_mask=paths))
        return schemas.UpdateLeadResult(lead=convert.lead(updated), changed_fields=paths)

    @tool("Search leads", **READ)
    async def search_leads(
        self,
        ctx: Context,
        query: Annotated[
            str,
            Field(
                max_length=200,
                description='Free text; every word must match, the last as a prefix ("head of '
                'gro"). Empty: every lead, oldest first.',
            ),
        ] = "",
        segment_id: Annotated[str, Field(description="Only members of this segment.")] = "",
        filter: Annotated[
            str,
            Field(
                max_length=4000,
                description='An AIP-160 filter, e.g. score >= 50 AND custom.industry = "SaaS" '
                "(fields as in rule conditions).",
            ),
        ] = "",
        limit: Limit = 20,
        cursor: schemas.Cursor = "",
    ) -> schemas.LeadPage:
        """Find leads by free text, segment and filter; best matches first (names and title,
        then email, company and custom values). Archived leads are left out."""
        client = self.callers.client(ctx)

        async def fetch(api_cursor: str, size: int) -> tuple[list[schemas.Lead], str]:
            common: dict[str, Any] = {
                "segment_id": segment_id,
                "filter": filter,
                "limit": size,
                "cursor": api_cursor,
            }
            if query.strip():
                search = lead_service_pb2.SearchLeadsRequest(query=query, **common)
                reply: Any = await api(client.call(client.leads.stub.SearchLeads, search))
            else:
                listing = lead_service_pb2.ListLeadsRequest(**common)
                reply = await api(client.call(client.leads.stub.ListLeads, listing))
            found = [convert.lead(lead, convert.LIST_CUSTOM_BYTES) for lead in reply.leads]
            return found, str(reply.next_cursor)

        page = await pages.page(fetch, cursor, limit)
        return schemas.LeadPage(
            leads=page.items, next_cursor=page.next_cursor, truncated=page.truncated
        )

    # -- segments -------------------------------------------------------------------------

    @tool("List segments", **READ)
    async def list_segments(
        self, ctx: Context, limit: Limit = 50, cursor: schemas.Cursor = ""
    ) -> schemas.SegmentPage:
        """The workspace's segments (lists) with their rules and member counts, oldest first."""
        client = self.callers.client(ctx)

        async def fetch(api_cursor: str, size: int) -> tuple[list[schemas.Segment], str]:
            request = segment_service_pb2.ListSegmentsRequest(limit=size, cursor=api_cursor)
            reply = await api(client.call(client.lists.stub.ListSegments, request))
            return [convert.segment(s) for s in reply.segments], reply.next_cursor

        page = await pages.page(fetch, cursor, limit)
        return schemas.SegmentPage(
            segments=page.items, next_cursor=page.next_cursor, truncated=page.truncated
        )

    @tool("Create a segment", read_only=False, destructive=False, idempotent=False)
    async def create_segment(
        self,
        ctx: Context,
        name: Annotated[str, StringConstraints(min_length=1, max_length=200)],
        rules: Annotated[
            schemas.RuleGroup | None,
            Field(description="A RULE segment's rules; leave out for a STATIC (hand-kept) one."),
        ] = None,
        description: Annotated[str, Field(max_length=2000)] = "",
        dry_run: Annotated[
            bool,
            Field(description="Create nothing: return how many leads match and up to 10 of them."),
        ] = False,
    ) -> schemas.CreateSegmentResult:
        """Create a segment. With rules it is a RULE segment whose members the CRM keeps
        current on every change; without, a STATIC one filled with add_to_segment. Use
        dry_run first to check the rules' reach."""
        client = self.callers.client(ctx)
        if dry_run:
            if rules is None:
                raise ToolError("rules: a dry run previews rules; give some")
            request = segment_service_pb2.PreviewSegmentRequest(rules=convert.rules_to_proto(rules))
            preview = await api(client.call(client.lists.stub.PreviewSegment, request))
            return schemas.CreateSegmentResult(
                dry_run=True,
                estimated_size=preview.estimated_size,
                sample_leads=[
                    convert.lead(x, convert.LIST_CUSTOM_BYTES) for x in preview.sample_leads
                ],
            )
        fields: dict[str, Any] = {"name": name, "description": description}
        if rules is not None:
            fields |= {"membership": "RULE", "rules": convert.rules_to_proto(rules)}
        else:
            fields["membership"] = "STATIC"
        created = await api(client.lists.create(**fields))
        return schemas.CreateSegmentResult(dry_run=False, segment=convert.segment(created))

    @tool("Add leads to a segment", read_only=False, destructive=False, idempotent=True)
    async def add_to_segment(
        self,
        ctx: Context,
        segment_id: Annotated[str, StringConstraints(min_length=1, max_length=100)],
        lead_ids: Annotated[list[LeadId], Field(min_length=1, max_length=100)],
    ) -> schemas.SegmentMembersResult:
        """Add leads to a STATIC segment (a RULE segment's members follow its rules).
        Leads already in it stay; unknown ids are reported, not added."""
        client = self.callers.client(ctx)
        reply = await api(client.lists.add(segment_id, lead_ids))
        return schemas.SegmentMembersResult(
            segment_id=segment_id,
            added=list(reply.changed_lead_ids),
            already_members=list(reply.unchanged_lead_ids),
            not_found=list(reply.not_found_lead_ids),
            member_count=reply.member_count,
        )

    # -- activities, scores, imports ------------------------------------------------------

    @tool("Record an activity", read_only=False, destructive=False, idempotent=False)
    async def record_activity(
        self,
        ctx: Context,
        lead_id: LeadId,
        type: Annotated[
            str,
            StringConstraints(pattern=r"^[a-z][a-z0-9_.]{0,63}$"),
            Field(
                description="page_view, email_open, email_click, form_submitted, meeting_booked, "
                "webinar_attended, score_adjusted (properties.points: a whole number), or a "
                "custom name."
            ),
        ],
        properties: Annotated[
            dict[str, Any] | None, Field(description='e.g. {"url": "/pricing"}; at most 16 KiB.')
        ] = None,
        occurred_at: Annotated[datetime | None, Field(description="Default: now.")] = None,
        source: Annotated[str, Field(max_length=100)] = "",
        idempotency_key: Annotated[
            str,
            Field(max_length=200, description="The same key again records nothing new."),
        ] = "",
    ) -> schemas.Activity:
        """Record something a lead did. It moves the lead's last_activity_at and, with a
        scoring model, its score (see get_score)."""
        client = self.callers.client(ctx)
        recorded = await api(
            client.activities.record(
                lead_id,
                type,
                properties=properties or None,
                occurred_at=occurred_at,
                source=source or None,
                idempotency_key=idempotency_key or None,
            )
        )
        return convert.activity(recorded)

    @tool("Explain a lead's score", **READ)
    async def get_score(self, ctx: Context, lead_id: LeadId) -> schemas.LeadScore:
        """A lead's score, its fit and engagement parts, where it stands against each
        threshold, and the contributions that make it up (largest first)."""
        client = self.callers.client(ctx)
        return convert.score(await api(client.scoring.get_score(lead_id)))

    @tool("Import status", **READ)
    async def import_status(
        self,
        ctx: Context,
        import_id: Annotated[str, Field(description="`imp_…`; empty: the latest imports.")] = "",
        limit: Annotated[int, Field(ge=1, le=20)] = 5,
    ) -> schemas.ImportStatusPage:
        """A bulk import's progress and counters, with its first failed rows; or, without an
        id, the latest imports."""
        client = self.callers.client(ctx)
        stub = client.imports.stub
        if not import_id:
            listing = import_service_pb2.ListImportsRequest(limit=limit)
            recent = await api(client.call(stub.ListImports, listing))
            return schemas.ImportStatusPage(
                imports=[convert.import_status(j) for j in recent.imports]
            )
        job = await api(client.imports.get(import_id))
        errors: list[import_pb2.ImportRowError] = []
        if job.rows_failed:
            request = import_service_pb2.ListImportErrorsRequest(id=import_id, limit=10)
            errors = list((await api(client.call(stub.ListImportErrors, request))).errors)
        return schemas.ImportStatusPage(imports=[convert.import_status(job, errors)])
