"""A form submission is an activity like any other: under a scoring model it scores the
lead in the submission's own transaction, and rule segments on the score follow."""

from __future__ import annotations

import grpc
from google.protobuf import json_format
from tnx.crm.v1 import (
    lead_service_pb2,
    lead_service_pb2_grpc,
    scoring_pb2,
    scoring_service_pb2,
    scoring_service_pb2_grpc,
    segment_service_pb2_grpc,
)

from tests.conftest import Workspace
from tests.forms.support import Forms, Public, create_form, embed, submit, valid_values
from tests.segments.helpers import all_of, cond, member_ids, rule_segment

SUBMISSION_POINTS = 40
MODEL = {
    "engagement_rules": [
        {
            "id": "forms",
            "activity_type": "form_submitted",
            "points": SUBMISSION_POINTS,
            "half_life_days": 30,
            "max_per_day": 5,
        }
    ],
    "thresholds": [{"name": "MQL", "score": 30, "hysteresis": 5}],
}


def test_a_submission_under_a_model_scores_the_lead_and_moves_it_into_score_segments(
    channel: grpc.Channel, workspace: Workspace
) -> None:
    scoring = scoring_service_pb2_grpc.ScoringServiceStub(channel)
    scoring.UpdateScoringModel(
        scoring_service_pb2.UpdateScoringModelRequest(
            model=json_format.ParseDict(MODEL, scoring_pb2.ScoringModel())
        ),
        metadata=workspace.metadata,
    )
    segments = segment_service_pb2_grpc.SegmentServiceStub(channel)
    engaged = rule_segment(segments, workspace, "engaged", all_of(cond("score", "gte", 30)))
    forms, public = Forms(channel), Public(channel)
    form = create_form(forms, workspace)
    token = embed(forms, workspace, form.id).token

    reply = submit(public, form.slug, token, valid_values(email="scored@x.io"))

    leads = lead_service_pb2_grpc.LeadServiceStub(channel)
    [lead] = leads.ListLeads(
        lead_service_pb2.ListLeadsRequest(filter='email = "scored@x.io"'),
        metadata=workspace.metadata,
    ).leads
    assert reply.submission_id and lead.score == SUBMISSION_POINTS
    assert member_ids(segments, workspace, engaged.id) == [lead.id]
