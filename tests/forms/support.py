"""Building forms and submitting them in tests, and reading what a submission wrote."""

from __future__ import annotations

import time
from typing import Any

import grpc
from google.protobuf import json_format
from tnx.crm.v1 import form_pb2, form_service_pb2, form_service_pb2_grpc
from tnx.public.v1 import public_form_service_pb2 as public_pb
from tnx.public.v1 import public_form_service_pb2_grpc as public_grpc

from server.forms import tokens
from tests.conftest import Workspace
from tests.support import db

Forms = form_service_pb2_grpc.FormServiceStub
Public = public_grpc.PublicFormServiceStub
Field = form_pb2.FormField
SITE = "https://www.example.com"


def contact_fields() -> list[form_pb2.FormField]:
    return [
        Field(name="email", label="Work email", type=Field.EMAIL, required=True, maps_to="email"),
        Field(name="first_name", label="First name", type=Field.TEXT, maps_to="first_name"),
        Field(name="company", label="Company", type=Field.TEXT, maps_to="company"),
        Field(name="phone", label="Phone", type=Field.PHONE, maps_to="phone"),
        Field(
            name="team_size",
            label="Team size",
            type=Field.SELECT,
            options=["1-10", "11-50", "51+"],
            maps_to="custom.team_size",
        ),
        Field(
            name="consent",
            label="I agree to be contacted",
            type=Field.CHECKBOX,
            required=True,
            maps_to="custom.consent",
        ),
        Field(name="campaign", type=Field.HIDDEN, default_value="spring", maps_to="custom.utm"),
        Field(name="note", label="Anything else?", type=Field.TEXT),
    ]


def create_form(
    stub: Forms, ws: Workspace, *, origins: list[str] | None = None, **extra: Any
) -> form_pb2.Form:
    form = form_pb2.Form(
        name=extra.pop("name", "Contact us"),
        fields=extra.pop("fields", contact_fields()),
        allowed_origins=[SITE] if origins is None else origins,
        **extra,
    )
    reply: form_pb2.Form = stub.CreateForm(
        form_service_pb2.CreateFormRequest(form=form), metadata=ws.metadata
    )
    return reply


def embed(stub: Forms, ws: Workspace, form_id: str, origin: str = SITE) -> Any:
    return stub.GetFormEmbed(
        form_service_pb2.GetFormEmbedRequest(id=form_id, origin=origin), metadata=ws.metadata
    )


def valid_values(email: str = "ada@lovelace.io", **overrides: Any) -> dict[str, Any]:
    return {
        "email": email,
        "first_name": "Ada",
        "company": "Analytical Engines",
        "phone": "+44 20 7946 0958",
        "team_size": "11-50",
        "consent": True,
        "campaign": "spring",
        **overrides,
    }


def submit(
    stub: Public,
    slug: str,
    token: str,
    values: dict[str, Any],
    *,
    origin: str | None = SITE,
    client_ip: str | None = None,
    honeypot: str = "",
) -> public_pb.SubmitFormResponse:
    request = public_pb.SubmitFormRequest(slug=slug, token=token, honeypot=honeypot)
    json_format.ParseDict(values, request.fields)
    metadata: list[tuple[str, str]] = []
    if origin is not None:
        metadata.append(("origin", origin))
    if client_ip is not None:
        metadata.append(("x-forwarded-for", client_ip))
    reply: public_pb.SubmitFormResponse = stub.SubmitForm(request, metadata=tuple(metadata))
    return reply


def form_secret(database_url: str) -> bytes:
    rows = db.query(
        database_url, "SELECT secret FROM server_secrets WHERE name = %s", tokens.SECRET_NAME
    )
    return bytes(rows[0][0])


def signed_token(database_url: str, *, slug: str, origin: str, expires_in: float) -> str:
    """A token signed with the deployment's real secret, expiring as a test needs."""
    claims = tokens.Claims(slug=slug, origin=origin, expires_at=int(time.time() + expires_in))
    return tokens.issue(form_secret(database_url), claims)


def written(database_url: str, workspace_id: str) -> list[tuple[Any, ...]]:
    """Everything a submission can write in a workspace, to show a refusal wrote nothing."""
    return [
        *db.query(
            database_url,
            "SELECT id, email, updated_at, last_activity_at, custom_fields::text FROM leads "
            "WHERE workspace_id = %s ORDER BY id",
            workspace_id,
        ),
        *db.query(
            database_url,
            "SELECT (SELECT count(*) FROM form_submissions WHERE workspace_id = %s),"
            " (SELECT count(*) FROM activities WHERE workspace_id = %s),"
            " (SELECT count(*) FROM events WHERE workspace_id = %s),"
            " (SELECT count(*) FROM segment_members m JOIN segments s ON s.id = m.segment_id"
            "  WHERE s.workspace_id = %s),"
            " (SELECT coalesce(sum(member_count), 0) FROM segments WHERE workspace_id = %s)",
            *[workspace_id] * 5,
        ),
    ]


def code_of(error: grpc.RpcError) -> grpc.StatusCode:
    code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
    return code
