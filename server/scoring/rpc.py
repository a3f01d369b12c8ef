"""ScoringService over gRPC: proto ↔ domain translation only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from tnx.crm.v1 import scoring_pb2, scoring_service_pb2, scoring_service_pb2_grpc

from server.db.engine import Database
from server.errors import DomainError
from server.pagination import CursorCodec
from server.rpc.context import workspace_id
from server.rpc.convert import (
    optional_datetime,
    plain_json,
    struct_to_dict,
    timestamp,
    update_paths,
)
from server.rpc.errors import to_status
from server.scoring import activities, ingest, service
from server.scoring.enums import ContributionKind, ModelState
from server.scoring.model import (
    EngagementRule,
    FitRule,
    LeadScore,
    PropertyCondition,
    Rules,
    ScoringModel,
    Threshold,
)
from server.segments.rpc import rules_from_proto, rules_to_proto

Context = grpc.aio.ServicerContext[Any, Any]
Model = scoring_pb2.ScoringModel

_STATE_TO_PROTO = {ModelState.BUILDING: Model.BUILDING, ModelState.READY: Model.READY}
# Fields of ScoringModel a client cannot set: never part of an implied update mask.
_READ_ONLY = {"version", "state", "updated_at"}


# -- activities --------------------------------------------------------------------------


def activity_from_proto(message: scoring_pb2.Activity) -> activities.ActivityInput:
    return activities.ActivityInput(
        type=message.type,
        properties=struct_to_dict(message.properties),
        occurred_at=optional_datetime(message, "occurred_at"),
        source=message.source,
        idempotency_key=message.idempotency_key,
        lead_id=message.lead_id,
        email=message.email,
    )


def activity_to_proto(activity: activities.Activity) -> scoring_pb2.Activity:
    properties = struct_pb2.Struct()
    properties.update(activity.properties)
    return scoring_pb2.Activity(
        id=activity.id,
        lead_id=activity.lead_id,
        type=activity.type,
        occurred_at=timestamp(activity.occurred_at),
        properties=properties,
        source=activity.source,
        idempotency_key=activity.idempotency_key,
        created_at=timestamp(activity.created_at),
    )


def _error(error: DomainError) -> scoring_service_pb2.ActivityError:
    return scoring_service_pb2.ActivityError(
        code=to_status(error).code.name,  # the code the error would have as a call's error
        reason=error.reason,
        message=error.message,
        fields=[violation.field for violation in error.violations],
    )


def result_to_proto(outcome: activities.Outcome) -> scoring_service_pb2.ActivityResult:
    result = scoring_service_pb2.ActivityResult(index=outcome.index, duplicate=outcome.duplicate)
    if outcome.activity is not None:
        result.activity.CopyFrom(activity_to_proto(outcome.activity))
    if outcome.error is not None:
        result.error.CopyFrom(_error(outcome.error))
    return result


# -- the model and scores ----------------------------------------------------------------


def rules_from_model(message: scoring_pb2.ScoringModel) -> Rules:
    return Rules(
        fit_rules=tuple(
            FitRule(id=rule.id, rules=rules_from_proto(rule.rules), points=rule.points)
            for rule in message.fit_rules
        ),
        engagement_rules=tuple(
            EngagementRule(
                id=rule.id,
                activity_type=rule.activity_type,
                points=rule.points,
                conditions=tuple(_condition_from_proto(c) for c in rule.conditions),
                half_life_days=rule.half_life_days,
                max_per_day=rule.max_per_day,
            )
            for rule in message.engagement_rules
        ),
        fit_cap=message.fit_cap,
        engagement_cap=message.engagement_cap,
        thresholds=tuple(
            Threshold(name=t.name, score=t.score, hysteresis=t.hysteresis)
            for t in message.thresholds
        ),
    )


def _condition_from_proto(message: scoring_pb2.PropertyCondition) -> PropertyCondition:
    value = json_format.MessageToDict(message.value) if message.HasField("value") else None
    return PropertyCondition(property=message.property, op=message.op, value=plain_json(value))


def _condition_to_proto(condition: PropertyCondition) -> scoring_pb2.PropertyCondition:
    message = scoring_pb2.PropertyCondition(property=condition.property, op=condition.op)
    if condition.value is not None:
        json_format.ParseDict(condition.value, message.value)
    return message


def model_to_proto(model: ScoringModel) -> scoring_pb2.ScoringModel:
    rules = model.rules
    return scoring_pb2.ScoringModel(
        version=model.version,
        state=_STATE_TO_PROTO[model.state],
        fit_rules=[
            scoring_pb2.FitRule(id=r.id, rules=rules_to_proto(r.rules), points=r.points)
            for r in rules.fit_rules
        ],
        engagement_rules=[
            scoring_pb2.EngagementRule(
                id=r.id,
                activity_type=r.activity_type,
                conditions=[_condition_to_proto(c) for c in r.conditions],
                points=r.points,
                half_life_days=r.half_life_days,
                max_per_day=r.max_per_day,
            )
            for r in rules.engagement_rules
        ],
        fit_cap=rules.fit_cap,
        engagement_cap=rules.engagement_cap,
        thresholds=[
            scoring_pb2.Threshold(name=t.name, score=t.score, hysteresis=t.hysteresis)
            for t in rules.thresholds
        ],
        updated_at=timestamp(model.updated_at),
    )


def score_to_proto(score: LeadScore) -> scoring_pb2.LeadScore:
    state = scoring_pb2.ThresholdState
    return scoring_pb2.LeadScore(
        lead_id=score.lead_id,
        score=score.score,
        fit=score.fit,
        engagement=score.engagement,
        model_version=score.model_version,
        computed_at=timestamp(score.computed_at),
        contributions=[
            scoring_pb2.ScoreContribution(
                kind=_kind(c.kind),
                rule_id=c.rule_id,
                activity_id=c.activity_id,
                points=c.points,
                decayed_from=c.decayed_from,
            )
            for c in score.contributions
        ],
        thresholds=[
            state(name=name, state=state.ABOVE if above else state.BELOW)
            for name, above in score.thresholds
        ],
    )


def _kind(kind: ContributionKind) -> scoring_pb2.ScoreContribution.Kind.ValueType:
    # ContributionKind's values are the proto enum's names.
    return scoring_pb2.ScoreContribution.Kind.Value(kind.value)


# -- the servicer ------------------------------------------------------------------------


class ScoringServicer(scoring_service_pb2_grpc.ScoringServiceServicer):
    def __init__(self, db: Database, cursors: CursorCodec, rebuild: service.Rebuild) -> None:
        self.db, self.cursors, self.rebuild = db, cursors, rebuild

    async def CreateActivity(
        self, request: scoring_service_pb2.CreateActivityRequest, context: Context
    ) -> scoring_pb2.Activity:
        activity = await activities.create_activity(
            self.db,
            workspace_id=workspace_id(),
            lead_id=request.lead_id,
            # The path names the lead: the activity's own lead_id and email are ignored.
            data=activity_from_proto(request.activity),
        )
        return activity_to_proto(activity)

    async def BatchCreateActivities(
        self, request: scoring_service_pb2.BatchCreateActivitiesRequest, context: Context
    ) -> scoring_service_pb2.BatchCreateActivitiesResponse:
        outcomes = await activities.create_batch(
            self.db,
            workspace_id=workspace_id(),
            activities=[activity_from_proto(item) for item in request.activities],
        )
        return scoring_service_pb2.BatchCreateActivitiesResponse(
            results=[result_to_proto(outcome) for outcome in outcomes]
        )

    async def StreamActivities(  # type: ignore[override]
        self,
        request_iterator: AsyncIterator[scoring_service_pb2.StreamActivitiesRequest],
        context: Context,
    ) -> scoring_service_pb2.StreamActivitiesResponse:
        async def messages() -> AsyncIterator[list[activities.ActivityInput] | bytes]:
            async for message in request_iterator:
                if message.activities:
                    yield [activity_from_proto(item) for item in message.activities]
                if message.ndjson:
                    yield message.ndjson

        tally = await ingest.record_stream(
            self.db, workspace_id=workspace_id(), messages=messages()
        )
        return scoring_service_pb2.StreamActivitiesResponse(
            recorded=tally.recorded,
            duplicates=tally.duplicates,
            failed=tally.failed,
            errors=[result_to_proto(outcome) for outcome in tally.errors],
        )

    async def ListActivities(
        self, request: scoring_service_pb2.ListActivitiesRequest, context: Context
    ) -> scoring_service_pb2.ListActivitiesResponse:
        page = await activities.timeline(
            self.db,
            self.cursors,
            workspace_id=workspace_id(),
            lead_id=request.lead_id,
            types=list(request.types),
            after=optional_datetime(request, "after"),
            limit=request.limit,
            cursor=request.cursor,
        )
        return scoring_service_pb2.ListActivitiesResponse(
            activities=[activity_to_proto(activity) for activity in page.activities],
            next_cursor=page.next_cursor,
        )

    async def GetScoringModel(
        self, request: scoring_service_pb2.GetScoringModelRequest, context: Context
    ) -> scoring_pb2.ScoringModel:
        return model_to_proto(await service.get_model(self.db, workspace_id=workspace_id()))

    async def UpdateScoringModel(
        self, request: scoring_service_pb2.UpdateScoringModelRequest, context: Context
    ) -> scoring_pb2.ScoringModel:
        paths, named = update_paths(request.model, request.update_mask)
        if not named:  # the parts given a value, less the output-only fields
            paths = [path for path in paths if path not in _READ_ONLY]
        model = await service.update_model(
            self.db,
            self.rebuild,
            workspace_id=workspace_id(),
            data=rules_from_model(request.model),
            paths=paths,
        )
        return model_to_proto(model)

    async def GetLeadScore(
        self, request: scoring_service_pb2.GetLeadScoreRequest, context: Context
    ) -> scoring_pb2.LeadScore:
        workspace = workspace_id()
        score = await service.lead_score(self.db, workspace_id=workspace, lead_id=request.lead_id)
        return score_to_proto(score)
