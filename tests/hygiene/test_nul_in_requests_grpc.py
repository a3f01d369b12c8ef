"""A NUL character in any string of any request (PostgreSQL stores none) is refused before the
servicer runs: INVALID_ARGUMENT naming the field by its proto path, nothing changed."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import json_format, timestamp_pb2
from tnx.crm.v1 import (
    import_service_pb2,
    lead_pb2,
    lead_service_pb2,
    lead_service_pb2_grpc,
    scoring_pb2,
    scoring_service_pb2,
    scoring_service_pb2_grpc,
    segment_service_pb2,
    segment_service_pb2_grpc,
)

from tests.conftest import Workspace
from tests.hygiene.sweep import Rpc, plantings, rpcs
from tests.support import db
from tests.support.errors import details
from tests.support.imports import Job, Stub, requests, run

RPCS = rpcs()
# Batches whose items get results of their own (a bad item does not stop the others): a NUL
# in an item is that item's error, in an answer that is not itself an error.
PER_ITEM = {"ScoringService.BatchCreateActivities", "ScoringService.StreamActivities"}


def test_the_sweep_reaches_every_service_and_many_strings() -> None:
    services = {rpc.method.containing_service.name for rpc in RPCS}
    assert {"LeadService", "CompanyService", "SegmentService", "PublicFormService"} <= services
    assert len(RPCS) >= 60
    assert sum(1 for rpc in RPCS for _ in plantings(rpc)) >= 150


@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_a_nul_in_any_string_of_the_request_is_invalid_argument_naming_its_path(
    rpc: Rpc, channel: grpc.Channel, workspace: Workspace, database_url: str
) -> None:
    before = db.snapshot(database_url, workspace.id)
    wrong: list[str] = []
    for planted in plantings(rpc):
        per_item = str(rpc) in PER_ITEM and planted.path.startswith("activities[")
        try:
            rpc.call(channel, planted.request.SerializeToString(), workspace.metadata)
        except grpc.RpcError as error:
            code = error.code()  # type: ignore[attr-defined]
            if per_item:
                wrong.append(f"{planted.path}: the whole batch refused ({code.name})")
            elif code != grpc.StatusCode.INVALID_ARGUMENT:
                wrong.append(f"{planted.path}: {code.name} {error.details()}")  # type: ignore[attr-defined]
            elif details(error) != ("NUL_CHARACTER", [planted.path]):
                wrong.append(f"{planted.path}: {details(error)}")
        else:
            if not per_item:
                wrong.append(f"{planted.path}: accepted")
    assert wrong == []
    assert db.snapshot(database_url, workspace.id) == before


def _refused(error: pytest.ExceptionInfo[grpc.RpcError]) -> tuple[str, list[str]]:
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    return details(error.value)


def test_nuls_deep_in_custom_fields_and_in_keys_are_each_named(
    leads: lead_service_pb2_grpc.LeadServiceStub, workspace: Workspace, database_url: str
) -> None:
    lead = lead_pb2.Lead(email="deep@nul.io")
    json_format.ParseDict(
        {"plan": {"tiers": ["ok", "x\x00"]}, "k\x00": 1, "fine": "yes"}, lead.custom_fields
    )
    before = db.snapshot(database_url, workspace.id)
    with pytest.raises(grpc.RpcError) as refused:
        leads.CreateLead(lead_service_pb2.CreateLeadRequest(lead=lead), metadata=workspace.metadata)
    reason, fields = _refused(refused)
    assert reason == "NUL_CHARACTER"
    assert sorted(fields) == ["lead.custom_fields.k\\u0000", "lead.custom_fields.plan.tiers[1]"]
    assert db.snapshot(database_url, workspace.id) == before


def test_a_nul_in_the_fourth_lead_id_names_lead_ids_3(
    channel: grpc.Channel, workspace: Workspace
) -> None:
    segments = segment_service_pb2_grpc.SegmentServiceStub(channel)
    request = segment_service_pb2.AddSegmentMembersRequest(
        id="seg_x", lead_ids=["lead_a", "lead_b", "lead_c", "lead_\x00d"]
    )
    with pytest.raises(grpc.RpcError) as refused:
        segments.AddSegmentMembers(request, metadata=workspace.metadata)
    assert _refused(refused) == ("NUL_CHARACTER", ["lead_ids[3]"])


def test_an_import_header_with_a_nul_is_refused_and_no_job_is_made(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        imports.UploadImport(
            requests(b"email\na@b.io\n", format=Job.CSV, mapping=["Mail\x00=email"]),
            metadata=workspace.metadata,
        )
    assert _refused(refused) == ("NUL_CHARACTER", ["mapping[0]"])
    jobs = "SELECT count(*) FROM import_jobs WHERE workspace_id = %s"
    assert db.query(database_url, jobs, workspace.id) == [(0,)]


def test_nul_bytes_in_an_uploaded_file_are_data_not_a_refused_request(
    imports: Stub, workspace: Workspace
) -> None:
    # bytes fields are exempt: the file's NUL is its row's error, not the request's.
    job = run(imports, workspace.metadata, b"email,first_name\nok@b.io,Ok\nno@b.io,N\x00o\n")
    assert (job.status, job.rows_created, job.rows_failed) == (Job.SUCCEEDED, 1, 1)


def test_a_later_message_of_a_client_stream_is_checked_too(
    imports: Stub, workspace: Workspace, database_url: str
) -> None:
    messages = [
        import_service_pb2.UploadImportRequest(format=Job.CSV),
        import_service_pb2.UploadImportRequest(default_source="late\x00"),
    ]
    with pytest.raises(grpc.RpcError) as refused:
        imports.UploadImport(iter(messages), metadata=workspace.metadata)
    assert _refused(refused) == ("NUL_CHARACTER", ["default_source"])
    jobs = "SELECT count(*) FROM import_jobs WHERE workspace_id = %s"
    assert db.query(database_url, jobs, workspace.id) == [(0,)]


def test_a_nul_in_one_activity_of_a_batch_is_that_items_error_and_the_others_are_recorded(
    channel: grpc.Channel, leads: lead_service_pb2_grpc.LeadServiceStub, workspace: Workspace
) -> None:
    lead = leads.CreateLead(
        lead_service_pb2.CreateLeadRequest(lead=lead_pb2.Lead(email="batch@nul.io")),
        metadata=workspace.metadata,
    )
    scoring = scoring_service_pb2_grpc.ScoringServiceStub(channel)
    good = scoring_pb2.Activity(lead_id=lead.id, type="page_view")
    bad = scoring_pb2.Activity(lead_id=lead.id, type="page_view", source="we\x00b")
    reply = scoring.BatchCreateActivities(
        scoring_service_pb2.BatchCreateActivitiesRequest(activities=[good, bad, good]),
        metadata=workspace.metadata,
    )
    assert [r.HasField("error") for r in reply.results] == [False, True, False]
    assert list(reply.results[1].error.fields) == ["activities[1].source"]


def test_an_activity_timestamp_out_of_range_in_a_batch_names_the_item(
    channel: grpc.Channel, workspace: Workspace
) -> None:
    scoring = scoring_service_pb2_grpc.ScoringServiceStub(channel)
    good = scoring_pb2.Activity(lead_id="lead_x", type="page_view")
    late = scoring_pb2.Activity(
        lead_id="lead_x", type="page_view", occurred_at=timestamp_pb2.Timestamp(seconds=10**12)
    )
    with pytest.raises(grpc.RpcError) as refused:
        scoring.BatchCreateActivities(
            scoring_service_pb2.BatchCreateActivitiesRequest(activities=[good, late]),
            metadata=workspace.metadata,
        )
    assert _refused(refused) == ("TIMESTAMP_OUT_OF_RANGE", ["activities[1].occurred_at"])


def test_a_thousand_bad_strings_are_reported_in_a_bounded_error(
    channel: grpc.Channel, workspace: Workspace
) -> None:
    segments = segment_service_pb2_grpc.SegmentServiceStub(channel)
    request = segment_service_pb2.AddSegmentMembersRequest(
        id="seg_x", lead_ids=[f"lead_{i}\x00" for i in range(1000)]
    )
    with pytest.raises(grpc.RpcError) as refused:
        segments.AddSegmentMembers(request, metadata=workspace.metadata)
    reason, fields = _refused(refused)
    assert reason == "NUL_CHARACTER" and fields[:2] == ["lead_ids[0]", "lead_ids[1]"]
    assert 1 <= len(fields) <= 20
    assert "(and 997 more)" in (refused.value.details() or "")
