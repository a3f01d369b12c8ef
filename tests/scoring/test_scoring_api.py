"""The scoring model and explained scores as clients use them, over gRPC and through Envoy."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
import requests
from google.protobuf import field_mask_pb2, json_format
from tnx.crm.v1 import (
    lead_pb2,
    lead_service_pb2,
    scoring_pb2,
    scoring_service_pb2,
)

from tests.conftest import Workspace
from tests.imports.conftest import worker  # noqa: F401 (the worker fixture, reused)
from tests.scoring.conftest import Leads, Scoring, new_lead
from tests.support import db
from tests.support.errors import details
from tests.support.imports import Stub, WorkerProcess, csv_bytes, run, wait_until
from tests.support.rest import RestClient

CTO_RULE: dict[str, Any] = {
    "id": "cto",
    "rules": {"rules": [{"condition": {"field": "title", "op": "eq", "value": "CTO"}}]},
    "points": 30,
}
MODEL: dict[str, Any] = {
    "fit_rules": [CTO_RULE],
    "engagement_rules": [
        {
            "id": "pricing_clicks",
            "activity_type": "email_click",
            "conditions": [{"property": "url", "op": "contains", "value": "/pricing"}],
            "points": 10,
            "half_life_days": 14,
            "max_per_day": 3,
        }
    ],
    "fit_cap": 40,
    "thresholds": [{"name": "MQL", "score": 50, "hysteresis": 5}],
}


def set_model(scoring: Scoring, ws: Workspace, model: dict[str, Any]) -> scoring_pb2.ScoringModel:
    message = json_format.ParseDict(model, scoring_pb2.ScoringModel())
    reply: scoring_pb2.ScoringModel = scoring.UpdateScoringModel(
        scoring_service_pb2.UpdateScoringModelRequest(model=message), metadata=ws.metadata
    )
    return reply


def click(scoring: Scoring, ws: Workspace, lead_id: str, url: str) -> None:
    activity = scoring_pb2.Activity(type="email_click")
    activity.properties.update({"url": url})
    scoring.CreateActivity(
        scoring_service_pb2.CreateActivityRequest(lead_id=lead_id, activity=activity),
        metadata=ws.metadata,
    )


def test_each_model_change_publishes_a_version_and_names_its_rules(
    scoring: Scoring, workspace: Workspace
) -> None:
    empty = scoring.GetScoringModel(
        scoring_service_pb2.GetScoringModelRequest(), metadata=workspace.metadata
    )
    assert empty.version == 0 and not empty.fit_rules
    first = set_model(scoring, workspace, {**MODEL, "fit_rules": [{**CTO_RULE, "id": ""}]})
    assert (first.version, first.state) == (1, scoring_pb2.ScoringModel.READY)
    assert [r.id for r in first.fit_rules] == ["fit_1"]
    second = scoring.UpdateScoringModel(
        scoring_service_pb2.UpdateScoringModelRequest(
            model=scoring_pb2.ScoringModel(fit_cap=25),
            update_mask=field_mask_pb2.FieldMask(paths=["fit_cap"]),
        ),
        metadata=workspace.metadata,
    )
    assert (second.version, second.fit_cap, len(second.engagement_rules)) == (2, 25, 1)


def test_a_lead_score_explains_every_point_and_crosses_its_threshold(
    scoring: Scoring, leads: Leads, workspace: Workspace, http: requests.Session, gateway_url: str
) -> None:
    set_model(scoring, workspace, MODEL)
    lead = leads.CreateLead(
        lead_service_pb2.CreateLeadRequest(lead=lead_pb2.Lead(email="cto@x.io", title="CTO")),
        metadata=workspace.metadata,
    )
    assert lead.score == 30  # the fit rule, in the create's own transaction
    for url in ("/pricing", "/pricing/teams", "/blog"):
        click(scoring, workspace, lead.id, url)
    body = RestClient(http, gateway_url, workspace).ok("GET", f"/api/v1/crm/leads/{lead.id}/score")
    assert (body["score"], body["fit"], body["engagement"]) == (50, 30, 20)
    assert sum(c["points"] for c in body["contributions"]) == 50
    assert {c["kind"] for c in body["contributions"]} == {"FIT", "ENGAGEMENT"}
    assert body["thresholds"] == [{"name": "MQL", "state": "ABOVE"}]
    got = leads.GetLead(lead_service_pb2.GetLeadRequest(id=lead.id), metadata=workspace.metadata)
    assert got.score == 50


def test_a_bad_model_is_400_naming_the_node_and_changes_nothing(
    scoring: Scoring, workspace: Workspace, http: requests.Session, gateway_url: str
) -> None:
    set_model(scoring, workspace, MODEL)
    rest = RestClient(http, gateway_url, workspace)
    bad = {
        "engagement_rules": [{"activity_type": "email_click", "points": 5, "half_life_days": -1}],
        "thresholds": [{"name": "SQL", "score": 80}, {"name": "MQL", "score": 50}],
    }
    reply = rest.call("PATCH", "/api/v1/crm/scoring/model", json=bad)
    assert reply.status_code == 400, reply.text
    fields = {v["field"] for d in reply.json()["details"] for v in d.get("field_violations", [])}
    assert {"model.engagement_rules[0].half_life_days", "model.thresholds[1].score"} <= fields
    unchanged = rest.ok("GET", "/api/v1/crm/scoring/model")
    assert unchanged["version"] == "1" and unchanged["thresholds"][0]["name"] == "MQL"


def test_under_a_model_a_written_score_is_refused(
    scoring: Scoring, leads: Leads, workspace: Workspace
) -> None:
    lead = new_lead(leads, workspace, "manual@x.io")
    manual = leads.UpdateLead(
        lead_service_pb2.UpdateLeadRequest(
            lead=lead_pb2.Lead(id=lead.id, score=70),
            update_mask=field_mask_pb2.FieldMask(paths=["score"]),
        ),
        metadata=workspace.metadata,
    )
    assert manual.score == 70  # no model yet: clients write scores
    set_model(scoring, workspace, MODEL)
    with pytest.raises(grpc.RpcError) as refused:
        leads.UpdateLead(
            lead_service_pb2.UpdateLeadRequest(
                lead=lead_pb2.Lead(id=lead.id, score=90),
                update_mask=field_mask_pb2.FieldMask(paths=["score"]),
            ),
            metadata=workspace.metadata,
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(refused.value) == ("SCORE_COMPUTED", ["lead.score"])
    rescored = leads.GetLead(
        lead_service_pb2.GetLeadRequest(id=lead.id), metadata=workspace.metadata
    )
    assert rescored.score == 0  # the model's score replaced the manual 70


def test_the_score_of_an_unknown_or_another_workspaces_lead_is_404(
    leads: Leads,
    workspace: Workspace,
    other_workspace: Workspace,
    http: requests.Session,
    gateway_url: str,
) -> None:
    lead = new_lead(leads, workspace, "mine@x.io")
    stranger = RestClient(http, gateway_url, other_workspace)
    assert stranger.call("GET", f"/api/v1/crm/leads/{lead.id}/score").status_code == 404
    assert stranger.call("GET", "/api/v1/crm/leads/lead_nope/score").status_code == 404


def test_a_model_change_in_a_large_workspace_is_rebuilt_by_the_worker(
    scoring: Scoring,
    channel: grpc.Channel,
    workspace: Workspace,
    database_url: str,
    worker: WorkerProcess,  # noqa: F811
) -> None:
    rows = [["email", "title"]] + [[f"w{i}@x.io", "CTO"] for i in range(1_050)]
    job = run(Stub(channel), workspace.metadata, csv_bytes(rows))
    assert job.rows_created == 1_050
    published = set_model(scoring, workspace, MODEL)
    assert published.state == scoring_pb2.ScoringModel.BUILDING
    started = time.monotonic()

    def ready() -> bool:
        model = scoring.GetScoringModel(
            scoring_service_pb2.GetScoringModelRequest(), metadata=workspace.metadata
        )
        return bool(model.state == scoring_pb2.ScoringModel.READY)

    wait_until(ready, timeout=60)
    scores = db.query(
        database_url,
        "SELECT score, count(*) FROM leads WHERE workspace_id = %s GROUP BY score",
        workspace.id,
    )
    assert scores == [(30, 1_050)], f"after {time.monotonic() - started:.1f} s"
