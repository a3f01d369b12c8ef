"""API messages (tnx.crm.v1) to the tools' output models and tool inputs to messages.

Results are kept small on purpose: a lead's custom fields are cut to a byte budget (the keys
left out are named), a score lists its 50 largest contributions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from tnx.crm.v1 import import_pb2, lead_pb2, scoring_pb2, segment_pb2

from server.mcp import schemas

LIST_CUSTOM_BYTES = 2 * 1024  # per lead in a list of leads
ONE_CUSTOM_BYTES = 16 * 1024  # a lead on its own
MAX_CONTRIBUTIONS = 50
_STATUS_PREFIX = "LEAD_STATUS_"


def plain(value: Any) -> Any:
    """Struct/Value numbers are doubles: a whole one is an int again (12, not 12.0)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def struct(message: struct_pb2.Struct) -> dict[str, Any]:
    result: dict[str, Any] = plain(json_format.MessageToDict(message))
    return result


def when(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, field)
    return stamp.ToDatetime(tzinfo=UTC)


def enum_name(message: Any, field: str) -> Any:
    """An enum field's value name ("RULE"); Any, because the output models check it against
    the Literal of names they allow."""
    descriptor = message.DESCRIPTOR.fields_by_name[field].enum_type
    value = descriptor.values_by_number.get(getattr(message, field))
    return str(value.name) if value is not None else ""


def fit_custom_fields(fields: dict[str, Any], budget: int) -> tuple[dict[str, Any], list[str]]:
    """The custom fields that fit in `budget` bytes of JSON, in key order (a Struct's keys
    have none of their own), and the keys of those that did not."""
    kept: dict[str, Any] = {}
    omitted: list[str] = []
    used = 2
    for key, value in sorted(fields.items()):
        size = len(json.dumps({key: value}, ensure_ascii=False).encode()) - 1
        if used + size <= budget:
            kept[key] = value
            used += size
        else:
            omitted.append(key)
    return kept, omitted


def lead(message: lead_pb2.Lead, custom_budget: int = ONE_CUSTOM_BYTES) -> schemas.Lead:
    status: Any = enum_name(message, "status").removeprefix(_STATUS_PREFIX).lower() or None
    custom, omitted = fit_custom_fields(struct(message.custom_fields), custom_budget)
    return schemas.Lead(
        id=message.id,
        email=message.email,
        first_name=message.first_name,
        last_name=message.last_name,
        title=message.title,
        phone=message.phone,
        company=message.company,
        company_id=message.company_id,
        source=message.source,
        score=message.score,
        status=status,
        custom_fields=custom,
        custom_fields_omitted=omitted,
        segment_ids=list(message.segment_ids),
        last_activity_at=when(message, "last_activity_at"),
        created_at=when(message, "created_at"),
        updated_at=when(message, "updated_at"),
        archived_at=when(message, "archived_at"),
    )


def lead_status(status: str) -> lead_pb2.LeadStatus.ValueType:
    return lead_pb2.LeadStatus.Value(_STATUS_PREFIX + status.upper())


def rules_to_proto(group: schemas.RuleGroup) -> segment_pb2.RuleGroup:
    return json_format.ParseDict(group.model_dump(exclude_none=True), segment_pb2.RuleGroup())


def rules_from_proto(group: segment_pb2.RuleGroup) -> schemas.RuleGroup:
    data = plain(json_format.MessageToDict(group, preserving_proto_field_name=True))
    if data.get("combinator") not in ("AND", "OR"):
        data["combinator"] = "AND"
    return schemas.RuleGroup.model_validate(data)


def segment(message: segment_pb2.Segment) -> schemas.Segment:
    return schemas.Segment(
        id=message.id,
        name=message.name,
        description=message.description,
        membership=enum_name(message, "membership"),
        rules=rules_from_proto(message.rules) if message.HasField("rules") else None,
        member_count=message.member_count,
        state=enum_name(message, "state") or "READY",
        created_at=when(message, "created_at"),
        updated_at=when(message, "updated_at"),
    )


def activity(message: scoring_pb2.Activity) -> schemas.Activity:
    return schemas.Activity(
        id=message.id,
        lead_id=message.lead_id,
        type=message.type,
        occurred_at=when(message, "occurred_at"),
        properties=struct(message.properties),
        source=message.source,
        idempotency_key=message.idempotency_key,
        created_at=when(message, "created_at"),
    )


def score(message: scoring_pb2.LeadScore) -> schemas.LeadScore:
    ranked = sorted(message.contributions, key=lambda c: abs(c.points), reverse=True)
    return schemas.LeadScore(
        lead_id=message.lead_id,
        score=message.score,
        fit=message.fit,
        engagement=message.engagement,
        model_version=message.model_version,
        computed_at=when(message, "computed_at"),
        thresholds={t.name: enum_name(t, "state") for t in message.thresholds},
        contributions=[
            schemas.ScoreContribution(
                kind=enum_name(c, "kind"),
                rule_id=c.rule_id,
                activity_id=c.activity_id,
                points=c.points,
                decayed_from=c.decayed_from,
            )
            for c in ranked[:MAX_CONTRIBUTIONS]
        ],
        contributions_total=len(message.contributions),
    )


def import_status(
    job: import_pb2.ImportJob, errors: list[import_pb2.ImportRowError] | None = None
) -> schemas.ImportStatus:
    return schemas.ImportStatus(
        id=job.id,
        status=enum_name(job, "status"),
        format=enum_name(job, "format"),
        mode=enum_name(job, "mode"),
        size_bytes=job.size_bytes,
        rows_total=job.rows_total,
        rows_processed=job.rows_processed,
        rows_created=job.rows_created,
        rows_updated=job.rows_updated,
        rows_skipped=job.rows_skipped,
        rows_failed=job.rows_failed,
        error=job.error,
        cancel_requested=job.cancel_requested,
        created_at=when(job, "created_at"),
        finished_at=when(job, "finished_at"),
        first_row_errors=[
            schemas.ImportRowError(row=e.row, column=e.column, value=e.value, reason=e.reason)
            for e in errors or []
        ],
    )
