"""PublicFormService over gRPC: what an accepted submission writes, and every refusal
(404, 403, 400, honeypot, 429) writing nothing."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from tnx.crm.v1 import form_service_pb2 as fs
from tnx.crm.v1 import lead_pb2, lead_service_pb2, segment_pb2
from tnx.crm.v1 import segment_service_pb2 as sps

from tests.conftest import Workspace
from tests.forms.conftest import FORM_LIMIT, IP_LIMIT, LimitedStack
from tests.forms.support import (
    SITE,
    Field,
    Forms,
    Public,
    code_of,
    contact_fields,
    create_form,
    embed,
    signed_token,
    submit,
    valid_values,
    written,
)
from tests.segments.helpers import Leads, Segments, all_of, cond, member_ids, rule_segment
from tests.support import db
from tests.support.errors import details

OTHER_SITE = "http://127.0.0.1:8000"


def _lead_by_email(leads: Leads, ws: Workspace, database_url: str, email: str) -> lead_pb2.Lead:
    rows = db.query(
        database_url,
        "SELECT id FROM leads WHERE workspace_id = %s AND lower(email) = %s",
        ws.id,
        email.lower(),
    )
    assert len(rows) == 1, rows
    reply: lead_pb2.Lead = leads.GetLead(
        lead_service_pb2.GetLeadRequest(id=rows[0][0]), metadata=ws.metadata
    )
    return reply


def _static(segments: Segments, ws: Workspace) -> segment_pb2.Segment:
    reply: segment_pb2.Segment = segments.CreateSegment(
        sps.CreateSegmentRequest(
            segment=segment_pb2.Segment(name="Inbound", membership=segment_pb2.Segment.STATIC)
        ),
        metadata=ws.metadata,
    )
    return reply


def test_a_submission_creates_the_lead_and_records_submission_activity_segments_events(
    forms: Forms,
    public: Public,
    leads: Leads,
    segments: Segments,
    workspace: Workspace,
    database_url: str,
) -> None:
    static = _static(segments, workspace)
    mid_size = rule_segment(
        segments, workspace, "11-50", all_of(cond("custom.team_size", "eq", "11-50"))
    )
    form = create_form(forms, workspace, segment_ids=[static.id], source="webinar")
    token = embed(forms, workspace, form.id).token

    reply = submit(public, form.slug, token, valid_values(email="Ada@Lovelace.io"))

    assert reply.submission_id.startswith("fsub_") and reply.success_message
    lead = _lead_by_email(leads, workspace, database_url, "ada@lovelace.io")
    assert (lead.email, lead.first_name, lead.company, lead.phone, lead.source) == (
        "ada@lovelace.io",
        "Ada",
        "Analytical Engines",
        "+44 20 7946 0958",
        "webinar",
    )
    assert dict(lead.custom_fields) == {"team_size": "11-50", "consent": True, "utm": "spring"}
    assert lead.HasField("last_activity_at")
    assert sorted(lead.segment_ids) == sorted([static.id, mid_size.id])
    assert member_ids(segments, workspace, static.id) == [lead.id]
    assert (
        segments.GetSegment(
            sps.GetSegmentRequest(id=static.id), metadata=workspace.metadata
        ).member_count
        == 1
    )

    listed = forms.ListFormSubmissions(
        fs.ListFormSubmissionsRequest(id=form.id), metadata=workspace.metadata
    )
    [submission] = listed.submissions
    assert (submission.id, submission.lead_id, submission.origin) == (
        reply.submission_id,
        lead.id,
        SITE,
    )
    assert submission.user_agent  # the caller's user-agent metadata
    assert submission.fields["email"] == "ada@lovelace.io"
    assert "note" not in submission.fields  # left empty: not stored
    assert submission.submitted_at.ToDatetime() == lead.last_activity_at.ToDatetime()

    activities = db.query(
        database_url,
        "SELECT lead_id, type, data FROM activities WHERE workspace_id = %s",
        workspace.id,
    )
    assert activities == [
        (
            lead.id,
            "form_submitted",
            {"form_id": form.id, "submission_id": reply.submission_id, "origin": SITE},
        )
    ]
    events = db.query(
        database_url,
        "SELECT type, subject_id, payload->>'segment_id' FROM events WHERE workspace_id = %s "
        "AND type IN ('lead.created', 'segment.lead_entered', 'form.submitted')",
        workspace.id,
    )
    assert sorted(events) == sorted(
        [
            ("lead.created", lead.id, None),
            ("segment.lead_entered", lead.id, static.id),
            ("segment.lead_entered", lead.id, mid_size.id),
            ("form.submitted", form.id, None),
        ]
    )


def test_a_known_email_updates_mapped_fields_and_never_wipes_anything(
    forms: Forms, public: Public, leads: Leads, workspace: Workspace, database_url: str
) -> None:
    existing = lead_pb2.Lead(email="grace@navy.mil", title="Rear Admiral", source="import")
    existing.custom_fields.update({"tier": "gold", "team_size": "1-10"})
    leads.CreateLead(lead_service_pb2.CreateLeadRequest(lead=existing), metadata=workspace.metadata)
    form = create_form(forms, workspace)
    token = embed(forms, workspace, form.id).token

    submit(
        public,
        form.slug,
        token,
        {"email": "GRACE@navy.mil", "first_name": "Grace", "company": "", "consent": True},
    )
    lead = _lead_by_email(leads, workspace, database_url, "grace@navy.mil")
    assert (lead.first_name, lead.title, lead.company, lead.source) == (
        "Grace",
        "Rear Admiral",
        "",
        "import",
    )
    # Present keys kept, submitted ones merged; the hidden field's default fills custom.utm.
    assert dict(lead.custom_fields) == {
        "tier": "gold",
        "team_size": "1-10",
        "consent": True,
        "utm": "spring",
    }

    submit(
        public,
        form.slug,
        token,
        {
            "email": "grace@navy.mil",
            "first_name": "Amazing Grace",
            "team_size": "51+",
            "consent": True,
        },
    )
    lead = _lead_by_email(leads, workspace, database_url, "grace@navy.mil")
    assert lead.first_name == "Amazing Grace" and lead.custom_fields["team_size"] == "51+"
    assert lead.title == "Rear Admiral" and lead.custom_fields["tier"] == "gold"
    updates = db.query(
        database_url,
        "SELECT payload->'fields' FROM events WHERE workspace_id = %s AND type = 'lead.updated' "
        "ORDER BY id",
        workspace.id,
    )
    assert updates[-1] == (["custom_fields.team_size", "first_name"],)
    page = forms.ListFormSubmissions(
        fs.ListFormSubmissionsRequest(id=form.id, limit=1), metadata=workspace.metadata
    )
    assert page.submissions[0].fields["first_name"] == "Amazing Grace"  # newest first
    rest = forms.ListFormSubmissions(
        fs.ListFormSubmissionsRequest(id=form.id, limit=1, cursor=page.next_cursor),
        metadata=workspace.metadata,
    )
    assert rest.submissions[0].fields["first_name"] == "Grace" and not rest.next_cursor


def test_simultaneous_first_submissions_of_one_email_make_one_lead(
    forms: Forms, public: Public, workspace: Workspace, database_url: str
) -> None:
    form = create_form(forms, workspace)
    token = embed(forms, workspace, form.id).token
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(
            pool.map(
                lambda i: submit(public, form.slug, token, valid_values(email="race@x.io")),
                range(8),
            )
        )
    assert len({r.submission_id for r in replies}) == 8
    counts = db.query(
        database_url,
        "SELECT (SELECT count(*) FROM leads WHERE workspace_id = %s),"
        " (SELECT count(*) FROM form_submissions WHERE workspace_id = %s)",
        workspace.id,
        workspace.id,
    )
    assert counts == [(1, 8)]


@dataclass
class Setup:
    form: Any
    token: str
    other_form: Any
    other_token: str


def _tamper(token: str) -> str:
    """Same signature, the claims changed to another origin: a forgery."""
    body, mac = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["o"] = "https://evil.example"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{forged}.{mac}"


def _flip_last(token: str) -> str:
    return token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]


Case = Callable[[Setup, str], tuple[str, str, dict[str, Any], str | None]]
# Each case: (slug, token, values, origin) from the setup and the database URL.
REFUSALS: list[tuple[str, Case, grpc.StatusCode, str, list[str]]] = [
    (
        "unknown slug",
        lambda s, _: ("no-such-form", s.token, valid_values(), SITE),
        grpc.StatusCode.NOT_FOUND,
        "FORM_NOT_FOUND",
        [],
    ),
    (
        "no origin",
        lambda s, _: (s.form.slug, s.token, valid_values(), None),
        grpc.StatusCode.PERMISSION_DENIED,
        "FORM_ORIGIN_MISSING",
        [],
    ),
    (
        "disallowed origin",
        lambda s, _: (s.form.slug, s.token, valid_values(), "https://evil.example"),
        grpc.StatusCode.PERMISSION_DENIED,
        "FORM_ORIGIN_NOT_ALLOWED",
        [],
    ),
    (
        "opaque origin",
        lambda s, _: (s.form.slug, s.token, valid_values(), "null"),
        grpc.StatusCode.PERMISSION_DENIED,
        "FORM_ORIGIN_NOT_ALLOWED",
        [],
    ),
    (
        "no token",
        lambda s, _: (s.form.slug, "", valid_values(), SITE),
        grpc.StatusCode.PERMISSION_DENIED,
        "FORM_TOKEN_INVALID",
        [],
    ),
    (
        "altered signature",
        lambda s, _: (s.form.slug, _flip_last(s.token), valid_values(), SITE),
        grpc.StatusCode.PERMISSION_DENIED,
        "FORM_TOKEN_INVALID",
        [],
    ),
    (
        "altered claims",
        lambda s, _: (s.form.slug, _tamper(s.token), valid_values(), SITE),
        grpc.StatusCode.PERMISSION_DENIED,
        "FORM_TOKEN_INVALID",
        [],
    ),
    (
        "garbage token",
        lambda s, _: (s.form.slug, "not-a-token", valid_values(), SITE),
        grpc.StatusCode.PERMISSION_DENIED,
        "FORM_TOKEN_INVALID",
        [],
    ),
    (
        "another form's token",
        lambda s, _: (s.form.slug, s.other_token, valid_values(), SITE),
        grpc.StatusCode.PERMISSION_DENIED,
        "FORM_TOKEN_WRONG_FORM",
        [],
    ),
    (
        "token of another allowed origin",
        lambda s, _: (s.form.slug, s.token, valid_values(), OTHER_SITE),
        grpc.StatusCode.PERMISSION_DENIED,
        "FORM_TOKEN_ORIGIN_MISMATCH",
        [],
    ),
    (
        "expired token",
        lambda s, url: (
            s.form.slug,
            signed_token(url, slug=s.form.slug, origin=SITE, expires_in=-1),
            valid_values(),
            SITE,
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "FORM_TOKEN_EXPIRED",
        [],
    ),
    (
        "missing email",
        lambda s, _: (s.form.slug, s.token, valid_values(email=""), SITE),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FORM_SUBMISSION_INVALID",
        ["fields.email"],
    ),
    (
        "bad email",
        lambda s, _: (s.form.slug, s.token, valid_values(email="ada@"), SITE),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FORM_SUBMISSION_INVALID",
        ["fields.email"],
    ),
    (
        "consent not ticked, bad choice, bad phone",
        lambda s, _: (
            s.form.slug,
            s.token,
            valid_values(consent=False, team_size="huge", phone="call me"),
            SITE,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FORM_SUBMISSION_INVALID",
        ["fields.phone", "fields.team_size", "fields.consent"],
    ),
    (
        "NUL in a value",
        lambda s, _: (s.form.slug, s.token, valid_values(first_name="Ada\x00"), SITE),
        grpc.StatusCode.INVALID_ARGUMENT,
        "NUL_CHARACTER",
        ["fields.first_name"],
    ),
    (
        "wrong types, unknown field, too long",
        lambda s, _: (
            s.form.slug,
            s.token,
            valid_values(consent="yes", first_name="x" * 501, favourite_colour="blue"),
            SITE,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FORM_SUBMISSION_INVALID",
        ["fields.favourite_colour", "fields.first_name", "fields.consent"],
    ),
]


@pytest.mark.parametrize(
    ("case", "code", "reason", "fields"),
    [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
def test_refused_submissions_change_nothing(
    forms: Forms,
    public: Public,
    segments: Segments,
    workspace: Workspace,
    database_url: str,
    case: Case,
    code: grpc.StatusCode,
    reason: str,
    fields: list[str],
) -> None:
    static = _static(segments, workspace)
    form = create_form(forms, workspace, origins=[SITE, OTHER_SITE], segment_ids=[static.id])
    other = create_form(forms, workspace, name="Other")
    setup = Setup(
        form=form,
        token=embed(forms, workspace, form.id).token,
        other_form=other,
        other_token=embed(forms, workspace, other.id).token,
    )
    slug, token, values, origin = case(setup, database_url)
    before = written(database_url, workspace.id)
    with pytest.raises(grpc.RpcError) as refused:
        submit(public, slug, token, values, origin=origin)
    assert code_of(refused.value) == code
    assert details(refused.value) == (reason, fields)
    assert written(database_url, workspace.id) == before


def test_a_filled_honeypot_looks_accepted_and_stores_nothing(
    forms: Forms, public: Public, workspace: Workspace, database_url: str
) -> None:
    form = create_form(forms, workspace, success_message="Thanks!")
    token = embed(forms, workspace, form.id).token
    before = written(database_url, workspace.id)
    reply = submit(public, form.slug, token, valid_values(), honeypot="http://spam.example")
    assert reply.submission_id.startswith("fsub_") and reply.success_message == "Thanks!"
    assert written(database_url, workspace.id) == before
    listed = forms.ListFormSubmissions(
        fs.ListFormSubmissionsRequest(id=form.id), metadata=workspace.metadata
    )
    assert list(listed.submissions) == []


def test_deleting_a_form_stops_its_embeds_and_a_deleted_segment_is_skipped(
    forms: Forms, public: Public, segments: Segments, workspace: Workspace
) -> None:
    static = _static(segments, workspace)
    form = create_form(forms, workspace, segment_ids=[static.id])
    token = embed(forms, workspace, form.id).token
    segments.DeleteSegment(sps.DeleteSegmentRequest(id=static.id), metadata=workspace.metadata)
    assert submit(public, form.slug, token, valid_values()).submission_id
    forms.DeleteForm(fs.DeleteFormRequest(id=form.id), metadata=workspace.metadata)
    with pytest.raises(grpc.RpcError) as gone:
        submit(public, form.slug, token, valid_values())
    assert code_of(gone.value) == grpc.StatusCode.NOT_FOUND


def test_the_public_service_needs_no_key_but_form_service_does(
    forms: Forms, public: Public, workspace: Workspace
) -> None:
    with pytest.raises(grpc.RpcError) as anonymous:
        forms.ListForms(fs.ListFormsRequest())
    assert code_of(anonymous.value) == grpc.StatusCode.UNAUTHENTICATED
    form = create_form(forms, workspace)
    token = embed(forms, workspace, form.id).token
    assert submit(public, form.slug, token, valid_values()).submission_id


# -- rate limits (a server of their own: IP_LIMIT per client IP, FORM_LIMIT per form) ---


def test_past_the_per_ip_limit_submissions_are_refused_with_429(
    limited: LimitedStack, workspace: Workspace, database_url: str
) -> None:
    forms, public = Forms(limited.channel), Public(limited.channel)
    form = create_form(forms, workspace)
    token = embed(forms, workspace, form.id).token
    for i in range(IP_LIMIT):
        submit(public, form.slug, token, valid_values(email=f"p{i}@x.io"), client_ip="198.51.100.7")
    before = written(database_url, workspace.id)
    with pytest.raises(grpc.RpcError) as limited_out:
        # Whatever the client put before the gateway's hop is not its address.
        submit(public, form.slug, token, valid_values(), client_ip="203.0.113.1, 198.51.100.7")
    assert code_of(limited_out.value) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details(limited_out.value) == ("FORM_RATE_LIMITED", [])
    assert written(database_url, workspace.id) == before
    # Another client is not affected.
    submit(public, form.slug, token, valid_values(), client_ip="198.51.100.8")


def test_x_forwarded_for_sent_straight_to_the_grpc_port_cannot_escape_the_per_ip_limit(
    limited: LimitedStack, workspace: Workspace
) -> None:
    """Issue 16, fault 9: a new made-up address in each call used to get a new bucket."""
    forms = Forms(limited.channel)
    form = create_form(forms, workspace)
    token = embed(forms, workspace, form.id).token
    public = Public(limited.direct)
    refused = 0
    for i in range(IP_LIMIT + 2):
        try:
            submit(public, form.slug, token, valid_values(), client_ip=f"203.0.113.{i + 1}")
        except grpc.RpcError as error:
            assert code_of(error) == grpc.StatusCode.RESOURCE_EXHAUSTED
            refused += 1
    assert refused >= 2


def test_past_the_per_form_limit_submissions_are_refused_with_429(
    limited: LimitedStack, workspace: Workspace, database_url: str
) -> None:
    forms, public = Forms(limited.channel), Public(limited.channel)
    form = create_form(forms, workspace)
    token = embed(forms, workspace, form.id).token
    for i in range(FORM_LIMIT):
        submit(public, form.slug, token, valid_values(), client_ip=f"192.0.2.{i + 10}")
    before = written(database_url, workspace.id)
    with pytest.raises(grpc.RpcError) as limited_out:
        submit(public, form.slug, token, valid_values(), client_ip="192.0.2.200")
    assert code_of(limited_out.value) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert written(database_url, workspace.id) == before
    other = create_form(forms, workspace, name="Other")
    other_token = embed(forms, workspace, other.id).token
    assert submit(public, other.slug, other_token, valid_values(), client_ip="192.0.2.201")


def test_a_submission_too_large_to_store_is_invalid_and_writes_nothing(
    forms: Forms, public: Public, workspace: Workspace, database_url: str
) -> None:
    long_fields = [Field(name=f"answer_{i}", type=Field.TEXT) for i in range(20)]
    form = create_form(forms, workspace, fields=[*contact_fields(), *long_fields])
    token = embed(forms, workspace, form.id).token
    values = valid_values(**{f"answer_{i}": "x" * 1900 for i in range(20)})  # ~38 KB
    before = written(database_url, workspace.id)
    with pytest.raises(grpc.RpcError) as refused:
        submit(public, form.slug, token, values)
    assert code_of(refused.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert details(refused.value) == ("FORM_SUBMISSION_INVALID", ["fields"])
    assert written(database_url, workspace.id) == before
