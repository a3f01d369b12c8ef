"""FormService over gRPC: proto ↔ domain translation only."""

from __future__ import annotations

import re
from typing import Any

import grpc
from google.protobuf import empty_pb2, struct_pb2
from tnx.crm.v1 import form_pb2, form_service_pb2, form_service_pb2_grpc

from server.config import Settings
from server.db.engine import Database
from server.forms import service
from server.forms.definition import Form, FormField, FormInput
from server.pagination import CursorCodec
from server.rpc.context import workspace_id
from server.rpc.convert import timestamp

Context = grpc.aio.ServicerContext[Any, Any]
FieldType = form_pb2.FormField

_TYPE_TO_PROTO = {
    "email": FieldType.EMAIL,
    "text": FieldType.TEXT,
    "phone": FieldType.PHONE,
    "select": FieldType.SELECT,
    "checkbox": FieldType.CHECKBOX,
    "hidden": FieldType.HIDDEN,
}
_TYPE_FROM_PROTO = {v: k for k, v in _TYPE_TO_PROTO.items()}
# Fields a client cannot set: they never count towards an implied update mask.
_READ_ONLY = {"id", "slug", "created_at", "updated_at"}
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


def to_proto(form: Form) -> form_pb2.Form:
    return form_pb2.Form(
        id=form.id,
        slug=form.slug,
        name=form.name,
        fields=[
            form_pb2.FormField(
                name=item.name,
                label=item.label,
                type=_TYPE_TO_PROTO[item.type],
                required=item.required,
                options=list(item.options),
                maps_to=item.maps_to,
                default_value=item.default_value,
                placeholder=item.placeholder,
            )
            for item in form.fields
        ],
        segment_ids=list(form.segment_ids),
        source=form.source,
        allowed_origins=list(form.allowed_origins),
        success_message=form.success_message,
        redirect_url=form.redirect_url,
        submit_label=form.submit_label,
        created_at=timestamp(form.created_at),
        updated_at=timestamp(form.updated_at),
    )


def from_proto(message: form_pb2.Form) -> FormInput:
    return FormInput(
        slug=message.slug,
        name=message.name,
        fields=[
            FormField(
                name=item.name,
                type=_TYPE_FROM_PROTO.get(item.type, ""),
                label=item.label,
                required=item.required,
                options=tuple(item.options),
                maps_to=item.maps_to,
                default_value=item.default_value,
                placeholder=item.placeholder,
            )
            for item in message.fields
        ],
        segment_ids=list(message.segment_ids),
        source=message.source,
        allowed_origins=list(message.allowed_origins),
        success_message=message.success_message,
        redirect_url=message.redirect_url,
        submit_label=message.submit_label,
    )


def public_base_url(settings: Settings, context: Context) -> str:
    """Where the gateway is reachable: the configured URL; else the Host the caller used to
    reach the gateway (which passes it on as x-forwarded-host); else the local gateway."""
    if settings.public_base_url:
        return settings.public_base_url
    metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
    host = metadata.get("x-forwarded-host", "")
    scheme = metadata.get("x-forwarded-proto", "http")
    if _HOST.match(host) and scheme in ("http", "https"):
        return f"{scheme}://{host}"
    return f"http://{settings.http_host}:{settings.http_port}"


class FormServicer(form_service_pb2_grpc.FormServiceServicer):
    def __init__(
        self, db: Database, cursors: CursorCodec, secret: bytes, settings: Settings
    ) -> None:
        self.db, self.cursors, self.secret, self.settings = db, cursors, secret, settings

    async def CreateForm(
        self, request: form_service_pb2.CreateFormRequest, context: Context
    ) -> form_pb2.Form:
        form = await service.create_form(
            self.db, workspace_id=workspace_id(), data=from_proto(request.form)
        )
        return to_proto(form)

    async def GetForm(
        self, request: form_service_pb2.GetFormRequest, context: Context
    ) -> form_pb2.Form:
        return to_proto(
            await service.get_form(self.db, workspace_id=workspace_id(), form_id=request.id)
        )

    async def UpdateForm(
        self, request: form_service_pb2.UpdateFormRequest, context: Context
    ) -> form_pb2.Form:
        if request.HasField("update_mask") and request.update_mask.paths:
            paths = list(request.update_mask.paths)
        else:
            paths = [d.name for d, _ in request.form.ListFields() if d.name not in _READ_ONLY]
        form = await service.update_form(
            self.db,
            workspace_id=workspace_id(),
            form_id=request.form.id,
            data=from_proto(request.form),
            paths=paths,
        )
        return to_proto(form)

    async def DeleteForm(
        self, request: form_service_pb2.DeleteFormRequest, context: Context
    ) -> empty_pb2.Empty:
        await service.delete_form(self.db, workspace_id=workspace_id(), form_id=request.id)
        return empty_pb2.Empty()

    async def ListForms(
        self, request: form_service_pb2.ListFormsRequest, context: Context
    ) -> form_service_pb2.ListFormsResponse:
        page = await service.list_forms(
            self.db,
            self.cursors,
            workspace_id=workspace_id(),
            limit=request.limit,
            cursor=request.cursor,
        )
        return form_service_pb2.ListFormsResponse(
            forms=[to_proto(form) for form in page.forms], next_cursor=page.next_cursor
        )

    async def GetFormEmbed(
        self, request: form_service_pb2.GetFormEmbedRequest, context: Context
    ) -> form_service_pb2.FormEmbed:
        embed = await service.get_embed(
            self.db,
            self.secret,
            workspace_id=workspace_id(),
            form_id=request.id,
            origin=request.origin,
            ttl_days=request.ttl_days,
            public_base_url=public_base_url(self.settings, context),
        )
        return form_service_pb2.FormEmbed(
            html=embed.html,
            token=embed.token,
            origin=embed.origin,
            expires_at=timestamp(embed.expires_at),
            submit_url=embed.submit_url,
        )

    async def ListFormSubmissions(
        self, request: form_service_pb2.ListFormSubmissionsRequest, context: Context
    ) -> form_service_pb2.ListFormSubmissionsResponse:
        page = await service.list_submissions(
            self.db,
            self.cursors,
            workspace_id=workspace_id(),
            form_id=request.id,
            limit=request.limit,
            cursor=request.cursor,
        )
        return form_service_pb2.ListFormSubmissionsResponse(
            submissions=[_submission(item) for item in page.submissions],
            next_cursor=page.next_cursor,
        )


def _submission(item: service.Submission) -> form_pb2.FormSubmission:
    fields = struct_pb2.Struct()
    fields.update(item.fields)
    return form_pb2.FormSubmission(
        id=item.id,
        form_id=item.form_id,
        lead_id=item.lead_id,
        fields=fields,
        origin=item.origin,
        page_url=item.page_url,
        user_agent=item.user_agent,
        submitted_at=timestamp(item.submitted_at),
    )
