"""record_activity, get_score and import_status."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import field_mask_pb2
from tnx.crm.v1 import scoring_pb2, scoring_service_pb2, scoring_service_pb2_grpc

from tests.conftest import Workspace
from tests.mcp.helpers import call, fail, over_http, run
from tests.segments.helpers import Leads, add_lead
from tests.support import imports
from tests.support.imports import WorkerProcess


def set_model(channel: grpc.Channel, ws: Workspace) -> None:
    model = scoring_pb2.ScoringModel(thresholds=[scoring_pb2.Threshold(name="MQL", score=15)])
    rule = model.engagement_rules.add(
        id="pricing", activity_type="email_click", points=10, half_life_days=14, max_per_day=3
    )
    rule.conditions.add(property="url", op="contains").value.string_value = "/pricing"
    request = scoring_service_pb2.UpdateScoringModelRequest(
        model=model, update_mask=field_mask_pb2.FieldMask(paths=["engagement_rules", "thresholds"])
    )
    scoring_service_pb2_grpc.ScoringServiceStub(channel).UpdateScoringModel(
        request, metadata=ws.metadata
    )


def test_activities_are_recorded_once_per_key_and_the_score_explains_them(
    mcp_url: str, workspace: Workspace, leads: Leads, channel: grpc.Channel
) -> None:
    set_model(channel, workspace)
    lead = add_lead(leads, workspace, "cto@acme.io")

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any], str]:
        async with over_http(mcp_url, workspace.key) as mcp:
            recorded = [
                await call(
                    mcp,
                    "record_activity",
                    lead_id=lead.id,
                    type="email_click",
                    properties={"url": url},
                    idempotency_key=key,
                )
                for url, key in (("/pricing", "a"), ("/pricing/teams", "b"), ("/pricing", "a"))
            ]
            score = await call(mcp, "get_score", lead_id=lead.id)
            bad = await fail(
                mcp,
                "record_activity",
                lead_id=lead.id,
                type="email_click",
                occurred_at="2099-01-01T00:00:00Z",
            )
        return recorded, score, bad

    recorded, score, bad = run(scenario())
    assert recorded[0]["id"] == recorded[2]["id"] != recorded[1]["id"]
    assert recorded[0]["lead_id"] == lead.id and recorded[0]["properties"] == {"url": "/pricing"}
    assert (score["score"], score["engagement"], score["contributions_total"]) == (20, 20, 2)
    assert {c["activity_id"] for c in score["contributions"]} == {
        recorded[0]["id"],
        recorded[1]["id"],
    }
    assert score["thresholds"] == {"MQL": "ABOVE"}
    assert "INVALID_ARGUMENT" in bad and "- occurred_at: " in bad
    listed = scoring_service_pb2_grpc.ScoringServiceStub(channel).ListActivities(
        scoring_service_pb2.ListActivitiesRequest(lead_id=lead.id), metadata=workspace.metadata
    )
    assert len(listed.activities) == 2


def test_import_status_shows_counters_and_the_first_failed_rows(
    mcp_url: str, workspace: Workspace, channel: grpc.Channel, mcp_worker: WorkerProcess
) -> None:
    rows = [["email", "first_name"], ["ok@x.io", "Ok"], ["not-an-email", "Bad"], ["b@x.io", "B"]]
    stub = imports.Stub(channel)
    job = imports.run(stub, workspace.metadata, imports.csv_bytes(rows))

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], str]:
        async with over_http(mcp_url, workspace.key) as mcp:
            one = await call(mcp, "import_status", import_id=job.id)
            latest = await call(mcp, "import_status")
            missing = await fail(mcp, "import_status", import_id="imp_nope")
        return one, latest, missing

    one, latest, missing = run(scenario())
    status = one["imports"][0]
    assert (status["id"], status["status"]) == (job.id, "SUCCEEDED")
    assert (status["rows_created"], status["rows_failed"], status["rows_processed"]) == (2, 1, 3)
    assert [(e["row"], e["column"]) for e in status["first_row_errors"]] == [(3, "email")]
    assert [item["id"] for item in latest["imports"]] == [job.id]
    assert latest["imports"][0]["first_row_errors"] == []
    assert "NOT_FOUND" in missing
