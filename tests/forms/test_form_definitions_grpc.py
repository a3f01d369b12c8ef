"""FormService over gRPC: defining forms, listing them, and fetching the embed snippet."""

from __future__ import annotations

import html
import time

import grpc
import pytest
from google.protobuf import field_mask_pb2
from tnx.crm.v1 import form_pb2, segment_pb2, segment_service_pb2_grpc
from tnx.crm.v1 import form_service_pb2 as fs
from tnx.crm.v1 import segment_service_pb2 as sps

from server.forms import tokens
from tests.conftest import Workspace
from tests.forms.support import SITE, Field, Forms, code_of, contact_fields, create_form, embed
from tests.support import db
from tests.support.errors import details

Segments = segment_service_pb2_grpc.SegmentServiceStub


def static_segment(stub: Segments, ws: Workspace) -> segment_pb2.Segment:
    reply: segment_pb2.Segment = stub.CreateSegment(
        sps.CreateSegmentRequest(
            segment=segment_pb2.Segment(name="Inbound", membership=segment_pb2.Segment.STATIC)
        ),
        metadata=ws.metadata,
    )
    return reply


def test_form_round_trips_with_defaults_and_normalised_origins(
    forms: Forms, workspace: Workspace, segments: Segments
) -> None:
    segment = static_segment(segments, workspace)
    created = create_form(
        forms,
        workspace,
        origins=["HTTPS://WWW.Example.com:443/", "http://127.0.0.1:8000"],
        segment_ids=[segment.id],
    )
    assert created.id.startswith("form_")
    assert created.slug.startswith("contact-us-")
    assert list(created.allowed_origins) == [SITE, "http://127.0.0.1:8000"]
    assert created.source == "form" and created.submit_label == "Submit"
    assert created.success_message  # a default message
    assert [f.name for f in created.fields] == [f.name for f in contact_fields()]
    assert created.fields[6].label == "campaign"  # no label: the name
    fetched = forms.GetForm(fs.GetFormRequest(id=created.id), metadata=workspace.metadata)
    assert fetched == created


def test_update_changes_named_fields_and_keeps_the_slug(forms: Forms, workspace: Workspace) -> None:
    created = create_form(forms, workspace, slug="spring-webinar")
    assert created.slug == "spring-webinar"
    updated = forms.UpdateForm(
        fs.UpdateFormRequest(
            form=form_pb2.Form(id=created.id, name="Webinar", redirect_url="https://x.io/thanks"),
            update_mask=field_mask_pb2.FieldMask(paths=["name", "redirect_url"]),
        ),
        metadata=workspace.metadata,
    )
    assert (updated.name, updated.redirect_url, updated.slug) == (
        "Webinar",
        "https://x.io/thanks",
        "spring-webinar",
    )
    assert list(updated.fields) == list(created.fields)
    with pytest.raises(grpc.RpcError) as refused:
        forms.UpdateForm(
            fs.UpdateFormRequest(
                form=form_pb2.Form(id=created.id, slug="other"),
                update_mask=field_mask_pb2.FieldMask(paths=["slug"]),
            ),
            metadata=workspace.metadata,
        )
    assert code_of(refused.value) == grpc.StatusCode.INVALID_ARGUMENT
    # Sending the whole form back without a mask ignores the (unchanged) slug.
    again = forms.UpdateForm(fs.UpdateFormRequest(form=updated), metadata=workspace.metadata)
    assert again.slug == "spring-webinar"


def test_slugs_are_unique_across_workspaces(
    forms: Forms, workspace: Workspace, other_workspace: Workspace
) -> None:
    create_form(forms, workspace, slug="shared-slug")
    with pytest.raises(grpc.RpcError) as taken:
        create_form(forms, other_workspace, slug="shared-slug")
    assert code_of(taken.value) == grpc.StatusCode.ALREADY_EXISTS
    assert details(taken.value) == ("FORM_SLUG_TAKEN", ["form.slug"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "form.name"),
        ({"slug": "Bad Slug!"}, "form.slug"),
        ({"fields": []}, "form.fields"),
        ({"origins": ["https://x.io/page"]}, "form.allowed_origins[0]"),
        ({"origins": ["ftp://x.io"]}, "form.allowed_origins[0]"),
        ({"redirect_url": "javascript:alert(1)"}, "form.redirect_url"),
        ({"segment_ids": ["seg_missing"]}, "form.segment_ids[0]"),
        ({"fields": [Field(name="email", type=Field.EMAIL, required=True)]}, "form.fields"),
        (
            {"fields": [Field(name="email", type=Field.EMAIL, maps_to="email")]},
            "form.fields",
        ),
        (
            {"fields": [*contact_fields(), Field(name="x", type=Field.TEXT, maps_to="email")]},
            "form.fields[8].maps_to",
        ),
        (
            {"fields": [*contact_fields(), Field(name="x", type=Field.SELECT)]},
            "form.fields[8].options",
        ),
        (
            {"fields": [*contact_fields(), Field(name="Email", type=Field.TEXT)]},
            "form.fields[8].name",
        ),
        (
            {"fields": [*contact_fields(), Field(name="9lives", type=Field.TEXT)]},
            "form.fields[8].name",
        ),
        (
            {"fields": [*contact_fields(), Field(name="x", maps_to="custom.a")]},
            "form.fields[8].type",
        ),
        (
            {"fields": [*contact_fields(), Field(name="x", type=Field.TEXT, maps_to="score")]},
            "form.fields[8].maps_to",
        ),
    ],
)
def test_bad_definitions_are_invalid_argument_naming_the_field(
    forms: Forms, workspace: Workspace, database_url: str, change: dict[str, object], field: str
) -> None:
    before = db.snapshot(database_url, workspace.id)
    with pytest.raises(grpc.RpcError) as refused:
        create_form(forms, workspace, **change)  # type: ignore[arg-type]
    assert code_of(refused.value) == grpc.StatusCode.INVALID_ARGUMENT
    reason, fields = details(refused.value)
    assert reason == "FORM_INVALID" and field in fields
    assert db.snapshot(database_url, workspace.id) == before


def test_a_rule_segment_cannot_be_a_form_target(
    forms: Forms, workspace: Workspace, segments: Segments
) -> None:
    rule = segments.CreateSegment(
        sps.CreateSegmentRequest(
            segment=segment_pb2.Segment(
                name="r",
                membership=segment_pb2.Segment.RULE,
                rules=segment_pb2.RuleGroup(
                    rules=[
                        segment_pb2.Rule(
                            condition=segment_pb2.RuleCondition(field="email", op="exists")
                        )
                    ]
                ),
            )
        ),
        metadata=workspace.metadata,
    )
    with pytest.raises(grpc.RpcError) as refused:
        create_form(forms, workspace, segment_ids=[rule.id])
    assert details(refused.value) == ("FORM_INVALID", ["form.segment_ids[0]"])


def test_list_pages_through_forms_and_other_workspaces_see_nothing(
    forms: Forms, workspace: Workspace, other_workspace: Workspace
) -> None:
    made = [create_form(forms, workspace, name=f"Form {i}").id for i in range(5)]
    seen: list[str] = []
    cursor = ""
    while True:
        page = forms.ListForms(
            fs.ListFormsRequest(limit=2, cursor=cursor), metadata=workspace.metadata
        )
        seen.extend(form.id for form in page.forms)
        cursor = page.next_cursor
        if not cursor:
            break
    assert seen == sorted(made)
    theirs = forms.ListForms(fs.ListFormsRequest(), metadata=other_workspace.metadata)
    assert list(theirs.forms) == []
    for call in (
        lambda: forms.GetForm(fs.GetFormRequest(id=made[0]), metadata=other_workspace.metadata),
        lambda: embed(forms, other_workspace, made[0]),
        lambda: forms.DeleteForm(
            fs.DeleteFormRequest(id=made[0]), metadata=other_workspace.metadata
        ),
        lambda: forms.ListFormSubmissions(
            fs.ListFormSubmissionsRequest(id=made[0]), metadata=other_workspace.metadata
        ),
    ):
        with pytest.raises(grpc.RpcError) as missing:
            call()
        assert code_of(missing.value) == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as negative:
        forms.ListForms(fs.ListFormsRequest(limit=-1), metadata=workspace.metadata)
    assert code_of(negative.value) == grpc.StatusCode.INVALID_ARGUMENT


def test_delete_removes_the_form(forms: Forms, workspace: Workspace) -> None:
    created = create_form(forms, workspace)
    forms.DeleteForm(fs.DeleteFormRequest(id=created.id), metadata=workspace.metadata)
    with pytest.raises(grpc.RpcError) as gone:
        forms.GetForm(fs.GetFormRequest(id=created.id), metadata=workspace.metadata)
    assert code_of(gone.value) == grpc.StatusCode.NOT_FOUND


def test_embed_carries_a_token_bound_to_slug_and_origin(
    forms: Forms, workspace: Workspace, database_url: str
) -> None:
    created = create_form(forms, workspace, origins=[SITE, "http://127.0.0.1:8000"])
    snippet = embed(forms, workspace, created.id, origin="https://WWW.example.com/")
    assert snippet.origin == SITE
    secret = db.query(
        database_url, "SELECT secret FROM server_secrets WHERE name = %s", tokens.SECRET_NAME
    )[0][0]
    claims = tokens.verify(bytes(secret), snippet.token)
    assert (claims.slug, claims.origin) == (created.slug, SITE)
    days = (claims.expires_at - time.time()) / 86400
    assert 179 < days <= 180
    assert snippet.expires_at.seconds == claims.expires_at
    assert snippet.submit_url.endswith(f"/api/v1/public/forms/{created.slug}/submissions")
    assert snippet.token in snippet.html and snippet.submit_url in snippet.html
    assert "<form" in snippet.html and "<script>" in snippet.html
    assert 'src="' not in snippet.html  # no external dependencies
    short = forms.GetFormEmbed(
        fs.GetFormEmbedRequest(id=created.id, origin=SITE, ttl_days=1), metadata=workspace.metadata
    )
    assert short.expires_at.seconds - time.time() < 86400 + 5


@pytest.mark.parametrize(
    ("origin", "ttl_days", "reason"),
    [
        ("https://evil.example", 0, "FORM_ORIGIN_NOT_ALLOWED"),
        ("", 0, "EMBED_INVALID"),
        ("https://www.example.com/path", 0, "EMBED_INVALID"),
        (SITE, 366, "EMBED_INVALID"),
        (SITE, -1, "EMBED_INVALID"),
    ],
)
def test_only_an_allowed_origin_gets_a_snippet(
    forms: Forms, workspace: Workspace, origin: str, ttl_days: int, reason: str
) -> None:
    created = create_form(forms, workspace)
    with pytest.raises(grpc.RpcError) as refused:
        forms.GetFormEmbed(
            fs.GetFormEmbedRequest(id=created.id, origin=origin, ttl_days=ttl_days),
            metadata=workspace.metadata,
        )
    assert code_of(refused.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert details(refused.value)[0] == reason


def test_embed_escapes_whatever_the_owner_typed(forms: Forms, workspace: Workspace) -> None:
    attack = '</script><script>alert("x")</script><img src=x onerror=alert(1)>'
    fields = contact_fields()
    fields[1].label = attack
    fields[4].options[:] = [attack, "b"]
    created = create_form(
        forms, workspace, fields=fields, success_message=attack, submit_label=attack
    )
    page = embed(forms, workspace, created.id).html
    # As text in the markup, as \u003c-escaped JSON in the script: never a tag.
    assert "<img" not in page
    assert page.count("<script>") == 1 and page.count("</script>") == 1
    assert html.escape(attack) in page
