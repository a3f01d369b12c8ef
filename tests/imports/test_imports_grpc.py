"""Bulk imports over gRPC with a real worker: formats, mapping, modes, idempotency,
segments, company linking, row errors, cancel and watch."""

from __future__ import annotations

import codecs
import csv
import io
import json
from typing import Any

import grpc
import pytest
from tnx.crm.v1 import company_pb2, company_service_pb2, company_service_pb2_grpc
from tnx.crm.v1 import import_service_pb2 as ims

from server.events import catalogue
from tests.conftest import Workspace
from tests.segments import helpers as seg
from tests.support import db
from tests.support.errors import details
from tests.support.imports import Job, Stub, csv_bytes, leads_by_email, run, upload, wait

HEADER = ["Email", "First Name", "Last Name", "Company", "Job Title", "Plan"]


def test_a_csv_is_imported_with_common_headers_mapped_and_others_as_custom_fields(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    data = csv_bytes(
        [HEADER, ["Ann@Example.org", "Ann", "Lee", "Acme", "CEO", "gold"], ["bob@x.io", "Bob"]]
    )
    job = run(imports, workspace.metadata, data)
    assert job.status == Job.SUCCEEDED and job.rows_total == 2
    assert (job.rows_created, job.rows_updated, job.rows_failed, job.rows_processed) == (2, 0, 0, 2)
    leads = leads_by_email(database_url, workspace.id)
    assert leads["ann@example.org"]["first_name"] == "Ann"
    assert leads["ann@example.org"]["title"] == "CEO"
    assert leads["ann@example.org"]["custom"] == {"plan": "gold"}
    assert leads["ann@example.org"]["source"] == "import"
    assert leads["bob@x.io"]["last_name"] == ""


@pytest.mark.parametrize(
    ("encoding", "delimiter", "newline", "bom"),
    [
        ("utf-8", ",", "\n", False),
        ("utf-8", ";", "\r\n", True),
        ("utf-16", "\t", "\r\n", False),
        ("utf-16-le", ",", "\n", False),
        ("windows-1252", ";", "\r\n", False),
    ],
)
def test_encodings_delimiters_and_line_endings_are_detected(
    imports: Stub,
    workspace: Workspace,
    database_url: str,
    encoding: str,
    delimiter: str,
    newline: str,
    bom: bool,
) -> None:
    rows = [
        ["E-mail", "Vorname", "Notes"],
        ["jose@example.com", "José", 'He said "hi",\nthen left'],
    ]
    text = io.StringIO()
    csv.writer(text, delimiter=delimiter, lineterminator=newline).writerows(rows)
    data = (codecs.BOM_UTF8 if bom else b"") + text.getvalue().encode(encoding)
    job = run(imports, workspace.metadata, data)
    assert job.status == Job.SUCCEEDED, job.error
    lead = leads_by_email(database_url, workspace.id)["jose@example.com"]
    assert lead["first_name"] == "José"
    assert lead["custom"]["notes"] == 'He said "hi",\nthen left'


def test_ragged_rows_are_padded_and_extra_cells_are_a_row_error(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    data = b"email,first_name,title\na@r.io,Al\nb@r.io,Bo,CTO,,\nc@r.io,Cy,VP,surprise\n"
    job = run(imports, workspace.metadata, data)
    assert (job.rows_created, job.rows_failed) == (2, 1)
    errors = imports.ListImportErrors(
        ims.ListImportErrorsRequest(id=job.id), metadata=workspace.metadata
    )
    assert [e.row for e in errors.errors] == [4]
    assert "4 fields" in errors.errors[0].reason


def test_explicit_mapping_wins_and_can_skip_columns(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    data = csv_bytes([["Contact", "Who", "Internal"], ["m@map.io", "Mo", "secret"]])
    job = run(
        imports,
        workspace.metadata,
        data,
        mapping=["Contact=email", "Who=first_name", "Internal=skip"],
    )
    assert job.status == Job.SUCCEEDED, job.error
    assert "Contact=email" in job.mapping
    lead = leads_by_email(database_url, workspace.id)["m@map.io"]
    assert lead["first_name"] == "Mo" and lead["custom"] == {}


def test_a_mapping_to_an_unknown_field_is_refused_and_creates_nothing(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        upload(imports, workspace.metadata, b"a\nb@c.io\n", mapping=["a=nickname"])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(caught.value) == ("IMPORT_MAPPING_INVALID", ["mapping[0]"])
    assert db.query(
        database_url, "SELECT count(*) FROM import_jobs WHERE workspace_id = %s", workspace.id
    ) == [(0,)]


def test_a_file_without_an_email_column_fails_with_the_reason(
    imports: Stub, workspace: Workspace
) -> None:
    job = run(imports, workspace.metadata, b"name,city\nAnn,Paris\n")
    assert job.status == Job.FAILED
    assert "no column maps to email" in job.error


def test_upsert_fills_and_updates_given_fields_and_never_wipes(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    run(imports, workspace.metadata, csv_bytes([HEADER, ["u@up.io", "Una", "Old", "", "Dev", "a"]]))
    second = csv_bytes([["email", "last_name", "title", "tier"], ["U@UP.io", "New", "", "vip"]])
    job = run(imports, workspace.metadata, second)
    assert (job.rows_created, job.rows_updated) == (0, 1)
    lead = leads_by_email(database_url, workspace.id)["u@up.io"]
    assert (lead["first_name"], lead["last_name"], lead["title"]) == ("Una", "New", "Dev")
    assert lead["custom"] == {"plan": "a", "tier": "vip"}
    again = run(imports, workspace.metadata, second)
    assert (again.rows_updated, again.rows_skipped) == (0, 1)  # nothing changed


def test_create_only_skips_existing_and_update_only_skips_missing(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    run(imports, workspace.metadata, b"email,title\nold@m.io,Old\n")
    data = b"email,title\nold@m.io,Changed\nnew@m.io,New\n"
    created = run(imports, workspace.metadata, data, mode=Job.CREATE_ONLY)
    assert (created.rows_created, created.rows_skipped) == (1, 1)
    assert leads_by_email(database_url, workspace.id)["old@m.io"]["title"] == "Old"
    data = b"email,title\nold@m.io,Changed\nnone@m.io,New\n"
    updated = run(imports, workspace.metadata, data, mode=Job.UPDATE_ONLY)
    assert (updated.rows_updated, updated.rows_skipped, updated.rows_created) == (1, 1, 0)
    leads = leads_by_email(database_url, workspace.id)
    assert leads["old@m.io"]["title"] == "Changed" and "none@m.io" not in leads


def test_rows_of_one_email_are_merged_and_counted_once_each(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    data = b"email,first_name,title\nd@dup.io,Di,\nD@dup.io,,Boss\nd@dup.io,Dee,\n"
    job = run(imports, workspace.metadata, data)
    assert (job.rows_created, job.rows_updated, job.rows_processed) == (1, 2, 3)
    lead = leads_by_email(database_url, workspace.id)["d@dup.io"]
    assert (lead["first_name"], lead["title"]) == ("Dee", "Boss")
    created = db.query(
        database_url,
        "SELECT count(*) FROM events WHERE workspace_id = %s AND type = 'lead.created'",
        workspace.id,
    )
    assert created == [(1,)]


def test_a_retried_upload_with_the_same_request_id_returns_the_same_job(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    data = b"email\nonce@idem.io\n"
    first = upload(imports, workspace.metadata, data, request_id="req-1")
    second = upload(imports, workspace.metadata, data, request_id="req-1")
    assert second.id == first.id
    wait(imports, workspace.metadata, first.id)
    third = upload(imports, workspace.metadata, data, request_id="req-1")
    assert third.id == first.id and third.status == Job.SUCCEEDED
    jobs = db.query(
        database_url, "SELECT count(*) FROM import_jobs WHERE workspace_id = %s", workspace.id
    )
    assert jobs == [(1,)]


def test_imported_leads_join_target_static_segments_and_rule_segments_stay_current(
    imports: Stub,
    workspace: Workspace,
    channel: grpc.Channel,
    database_url: str,
) -> None:
    segments = seg.Segments(channel)
    target = seg.static_segment(segments, workspace, "webinar")
    gold = seg.rule_segment(
        segments, workspace, "gold", seg.all_of(seg.cond("custom.plan", "eq", "gold"))
    )
    data = csv_bytes(
        [HEADER, ["g1@s.io", "", "", "", "", "gold"], ["s1@s.io", "", "", "", "", "silver"]]
    )
    job = run(imports, workspace.metadata, data, segment_ids=[target.id])
    assert job.status == Job.SUCCEEDED, job.error
    assert seg.get(segments, workspace, target.id).member_count == 2
    assert seg.get(segments, workspace, gold.id).member_count == 1
    promote = csv_bytes([["email", "plan"], ["s1@s.io", "gold"], ["g1@s.io", "silver"]])
    run(imports, workspace.metadata, promote)
    members = seg.member_ids(segments, workspace, gold.id)
    leads = db.query(
        database_url,
        "SELECT id FROM leads WHERE email = 's1@s.io' AND workspace_id = %s",
        workspace.id,
    )
    assert members == [leads[0][0]]
    entered = db.query(
        database_url,
        "SELECT count(*) FROM events WHERE workspace_id = %s AND type = 'segment.lead_entered'",
        workspace.id,
    )
    assert entered == [(4,)]  # two into the static list, g1 then s1 into the rule segment


def test_import_events_follow_the_catalogue_and_name_the_import(
    imports: Stub,
    workspace: Workspace,
    channel: grpc.Channel,
    database_url: str,
) -> None:
    segments = seg.Segments(channel)
    target = seg.static_segment(segments, workspace, "list")
    seg.rule_segment(segments, workspace, "gold", seg.all_of(seg.cond("custom.plan", "eq", "gold")))
    first = run(imports, workspace.metadata, csv_bytes([["email", "plan"], ["a@e.io", "gold"]]))
    second = run(
        imports,
        workspace.metadata,
        csv_bytes([["email", "plan"], ["a@e.io", "silver"]]),
        segment_ids=[target.id],
    )
    rows = db.query(
        database_url,
        "SELECT type, payload FROM events WHERE workspace_id = %s AND type LIKE 'lead.%%' "
        "OR workspace_id = %s AND type LIKE 'segment.lead_%%' ORDER BY txid, id",
        workspace.id,
        workspace.id,
    )
    for event_type, payload in rows:
        catalogue.check_payload(catalogue.EventType(event_type), set(payload))
    shown = [(t, p.get("import_id"), p.get("cause"), p.get("segment_id")) for t, p in rows]
    assert shown == [
        ("lead.created", first.id, None, None),
        ("segment.lead_entered", None, "import", shown[1][3]),  # into "gold" (a rule)
        ("lead.updated", second.id, None, None),
        ("segment.lead_exited", None, "import", shown[1][3]),
        ("segment.lead_entered", second.id, "import", target.id),  # rule segments first
    ]


def test_a_rule_segment_cannot_be_a_target(
    imports: Stub, workspace: Workspace, channel: grpc.Channel
) -> None:
    segments = seg.Segments(channel)
    rule = seg.rule_segment(segments, workspace, "r", seg.all_of(seg.cond("score", "gte", 1)))
    with pytest.raises(grpc.RpcError) as caught:
        upload(imports, workspace.metadata, b"email\na@b.io\n", segment_ids=[rule.id])
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as caught:
        upload(imports, workspace.metadata, b"email\na@b.io\n", segment_ids=["seg_nope"])
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_leads_link_to_companies_by_email_domain_and_by_unambiguous_name(
    imports: Stub, workspace: Workspace, channel: grpc.Channel, database_url: str
) -> None:
    companies = company_service_pb2_grpc.CompanyServiceStub(channel)

    def company(**fields: Any) -> company_pb2.Company:
        request = company_service_pb2.CreateCompanyRequest(company=company_pb2.Company(**fields))
        made: company_pb2.Company = companies.CreateCompany(request, metadata=workspace.metadata)
        return made

    acme = company(name="Acme Inc", domain="acme.com")
    globex = company(name="Globex")
    data = csv_bytes(
        [
            ["email", "company"],
            ["ann@acme.com", "whatever"],
            ["bob@gmail.com", "globex"],
            ["cy@gmail.com", "Unknown Co"],
        ]
    )
    job = run(imports, workspace.metadata, data)
    assert job.status == Job.SUCCEEDED, job.error
    leads = leads_by_email(database_url, workspace.id)
    assert (leads["ann@acme.com"]["company_id"], leads["ann@acme.com"]["company"]) == (
        acme.id,
        "Acme Inc",
    )
    assert (leads["bob@gmail.com"]["company_id"], leads["bob@gmail.com"]["company"]) == (
        globex.id,
        "Globex",
    )
    assert (leads["cy@gmail.com"]["company_id"], leads["cy@gmail.com"]["company"]) == (
        None,
        "Unknown Co",
    )


def test_row_errors_are_listed_page_by_page_and_downloadable_as_csv(
    imports: Stub, workspace: Workspace
) -> None:
    rows = [["email", "first_name", "score"]]
    rows += [[f"ok{i}@e.io", "Ok", "1"] for i in range(5)]
    rows += [[f"bad{i}", "=cmd()", "x"] for i in range(3)]
    job = run(imports, workspace.metadata, csv_bytes(rows))
    assert (job.rows_created, job.rows_failed) == (5, 3)
    seen = []
    cursor = ""
    while True:
        page = imports.ListImportErrors(
            ims.ListImportErrorsRequest(id=job.id, limit=2, cursor=cursor),
            metadata=workspace.metadata,
        )
        seen += [(e.row, e.column) for e in page.errors]
        cursor = page.next_cursor
        if not cursor:
            break
    assert seen == [(r, c) for r in (7, 8, 9) for c in ("score", "email")]
    chunks = list(
        imports.DownloadImportErrors(
            ims.DownloadImportErrorsRequest(id=job.id), metadata=workspace.metadata
        )
    )
    assert chunks[0].content_type.startswith("text/csv")
    table = list(csv.reader(io.StringIO(b"".join(c.data for c in chunks).decode())))
    assert table[0] == ["email", "first_name", "score", "import_error"]
    assert [r[:3] for r in table[1:]] == [[f"bad{i}", "'=cmd()", "x"] for i in range(3)]
    assert "not a valid email" in table[1][3] and "whole number" in table[1][3]


def test_json_and_ndjson_imports_with_nested_custom_fields(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    records = [
        {"email": "j1@json.io", "firstName": "Jay", "score": 7, "custom_fields": {"tier": 2}},
        {"email": "not-an-email"},
        "not an object",
    ]
    job = run(imports, workspace.metadata, json.dumps(records).encode(), format=Job.JSON)
    assert (job.rows_created, job.rows_failed) == (1, 2), job.error
    lead = leads_by_email(database_url, workspace.id)["j1@json.io"]
    assert (lead["first_name"], lead["score"], lead["custom"]) == ("Jay", 7, {"tier": 2})
    lines = b'{"email": "n1@nd.io", "title": "CTO"}\n\n{broken\n{"email": "n2@nd.io"}\n'
    job = run(imports, workspace.metadata, lines, format=Job.NDJSON)
    assert (job.rows_created, job.rows_failed, job.rows_total) == (2, 1, 3)
    errors = imports.ListImportErrors(
        ims.ListImportErrorsRequest(id=job.id), metadata=workspace.metadata
    )
    assert errors.errors[0].row == 3 and "not valid JSON" in errors.errors[0].reason


def test_cancel_stops_at_a_batch_boundary_and_keeps_committed_rows(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    rows = [["email"]] + [[f"c{i}@cancel.io"] for i in range(60_000)]
    job = upload(imports, workspace.metadata, csv_bytes(rows))
    for state in imports.WatchImport(
        ims.WatchImportRequest(id=job.id), metadata=workspace.metadata, timeout=60
    ):
        if state.rows_processed > 0:
            break
    cancelled = imports.CancelImport(
        ims.CancelImportRequest(id=job.id), metadata=workspace.metadata
    )
    assert cancelled.cancel_requested
    final = wait(imports, workspace.metadata, job.id)
    assert final.status == Job.CANCELLED and 0 < final.rows_processed < 60_000
    assert final.rows_processed % 1000 == 0  # whole batches only
    count = db.query(
        database_url, "SELECT count(*) FROM leads WHERE workspace_id = %s", workspace.id
    )
    assert count == [(final.rows_created,)]
    again = imports.CancelImport(ims.CancelImportRequest(id=job.id), metadata=workspace.metadata)
    assert again.status == Job.CANCELLED
    done = run(imports, workspace.metadata, b"email\nx@done.io\n")
    with pytest.raises(grpc.RpcError) as caught:
        imports.CancelImport(ims.CancelImportRequest(id=done.id), metadata=workspace.metadata)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_watch_streams_progress_until_the_job_ends(imports: Stub, workspace: Workspace) -> None:
    rows = [["email"]] + [[f"w{i}@watch.io"] for i in range(8000)]
    job = upload(imports, workspace.metadata, csv_bytes(rows))
    states = list(
        imports.WatchImport(
            ims.WatchImportRequest(id=job.id), metadata=workspace.metadata, timeout=60
        )
    )
    processed = [s.rows_processed for s in states]
    assert processed == sorted(processed)
    assert states[-1].status == Job.SUCCEEDED and states[-1].rows_created == 8000
    assert states[-1].rows_total == 8000 and len(states) >= 2


def test_imports_are_listed_newest_first_and_scoped_to_the_workspace(
    imports: Stub, workspace: Workspace, other_workspace: Workspace
) -> None:
    first = upload(imports, workspace.metadata, b"email\nl1@list.io\n")
    second = upload(imports, workspace.metadata, b"email\nl2@list.io\n")
    page = imports.ListImports(ims.ListImportsRequest(limit=1), metadata=workspace.metadata)
    assert [j.id for j in page.imports] == [second.id] and page.next_cursor
    rest = imports.ListImports(
        ims.ListImportsRequest(cursor=page.next_cursor), metadata=workspace.metadata
    )
    assert [j.id for j in rest.imports] == [first.id]
    with pytest.raises(grpc.RpcError) as caught:
        imports.GetImport(ims.GetImportRequest(id=first.id), metadata=other_workspace.metadata)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert not imports.ListImports(
        ims.ListImportsRequest(), metadata=other_workspace.metadata
    ).imports


def test_source_score_and_status_change_only_where_a_row_gives_them(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    first = b"email,source,score,status\ns1@flag.io,fair,5,contacted\ns2@flag.io,web,7,new\n"
    run(imports, workspace.metadata, first, default_source="batch")
    second = b"email,source,score,status\ns1@flag.io,,9,\ns2@flag.io,ads,,qualified\nn@flag.io,,,\n"
    job = run(imports, workspace.metadata, second, default_source="batch")
    assert (job.rows_created, job.rows_updated) == (1, 2)
    leads = leads_by_email(database_url, workspace.id)
    pick = ("source", "score", "status")
    assert tuple(leads["s1@flag.io"][k] for k in pick) == ("fair", 9, "contacted")
    assert tuple(leads["s2@flag.io"][k] for k in pick) == ("ads", 7, "qualified")
    assert tuple(leads["n@flag.io"][k] for k in pick) == ("batch", 0, "new")
