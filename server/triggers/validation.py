"""What a trigger may be: checked before anything is written, each error naming its field."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from server.errors import InvalidArgument
from server.events.catalogue import EventType
from server.filtering.ast import Node
from server.filtering.compiler import compile_predicate
from server.filtering.expression import parse
from server.outbound import AllowList, OutboundRefused, check_url
from server.triggers import slack
from server.triggers.model import Action, ActionKind, Condition, ThresholdCondition, TriggerInput

MAX_NAME = 200
MAX_EVENT_TYPES = 50
MAX_THRESHOLD_NAME = 64
REASON = "TRIGGER_INVALID"

# Which condition applies to which event types (the proto's TriggerCondition comments).
_LEAD_EVENTS = {t for t in EventType if t.startswith(("lead.", "segment.lead_"))}
SEGMENT_TYPES = _LEAD_EVENTS | {EventType.FORM_SUBMITTED}
THRESHOLD_TYPES = {EventType.LEAD_THRESHOLD_CROSSED}
FORM_TYPES = {
    EventType.FORM_SUBMITTED,
    EventType.LEAD_CREATED,
    EventType.LEAD_UPDATED,
    EventType.FORM_UPDATED,
    EventType.FORM_DELETED,
}
FILTER_TYPES = SEGMENT_TYPES


def _bad(field: str, description: str) -> InvalidArgument:
    return InvalidArgument.on(field, description, reason=REASON)


def _text(value: str, field: str, limit: int) -> str:
    value = value.strip()
    if "\x00" in value:
        raise _bad(field, "must not contain NUL bytes")
    if len(value) > limit:
        raise _bad(field, f"at most {limit} characters")
    return value


def name(value: str) -> str:
    found = _text(value, "trigger.name", MAX_NAME)
    if not found:
        raise _bad("trigger.name", "required")
    return found


def event_types(values: tuple[str, ...]) -> tuple[str, ...]:
    unique = tuple(dict.fromkeys(v.strip() for v in values))
    if not unique:
        raise _bad("trigger.event_types", "name at least one event type")
    if len(unique) > MAX_EVENT_TYPES:
        raise _bad("trigger.event_types", f"at most {MAX_EVENT_TYPES} event types")
    known = {str(t) for t in EventType}
    for index, value in enumerate(unique):
        if value not in known:
            raise _bad(f"trigger.event_types[{index}]", f"{value[:80]!r} is not a catalogued type")
    return unique


async def condition(
    conn: AsyncConnection, workspace_id: str, found: Condition, types: tuple[str, ...]
) -> Condition:
    def applies(field: str, to: set[EventType]) -> None:
        if not to.intersection(types):
            names = ", ".join(sorted(to))
            raise _bad(f"trigger.condition.{field}", f"applies only to events of types {names}")

    segment_id = _text(found.segment_id, "trigger.condition.segment_id", 100)
    if segment_id:
        applies("segment_id", SEGMENT_TYPES)
        await _exists(conn, "segments", workspace_id, segment_id, "trigger.condition.segment_id")
    form_id = _text(found.form_id, "trigger.condition.form_id", 100)
    if form_id:
        applies("form_id", FORM_TYPES)
        await _exists(conn, "forms", workspace_id, form_id, "trigger.condition.form_id")
    threshold = found.threshold
    if threshold is not None:
        applies("threshold", THRESHOLD_TYPES)
        threshold = await _threshold(conn, workspace_id, threshold)
    expression = _text(found.filter, "trigger.condition.filter", 4000)
    if expression:
        applies("filter", FILTER_TYPES)
        compile_predicate(_parsed(expression), label="trigger.condition.filter")
    return Condition(segment_id, threshold, form_id, expression)


def _parsed(expression: str) -> Node | None:
    try:
        return parse(expression)
    except InvalidArgument as error:
        description = error.violations[0].description if error.violations else error.message
        raise _bad("trigger.condition.filter", description) from None


async def _exists(
    conn: AsyncConnection, table: str, workspace_id: str, id_: str, field: str
) -> None:
    # `table` is "segments", "forms" or "connectors", never input.
    sql = text(f"SELECT 1 FROM {table} WHERE workspace_id = :ws AND id = :id")
    if (await conn.execute(sql, {"ws": workspace_id, "id": id_})).first() is None:
        raise _bad(field, f"no such {table[:-1]} {id_[:100]!r} in this workspace")


_THRESHOLDS = text(
    "SELECT t->>'name' FROM scoring_models, jsonb_array_elements(model->'thresholds') t "
    "WHERE workspace_id = :ws"
)


async def _threshold(
    conn: AsyncConnection, workspace_id: str, found: ThresholdCondition
) -> ThresholdCondition:
    field = "trigger.condition.threshold"
    threshold_name = _text(found.name, f"{field}.name", MAX_THRESHOLD_NAME)
    names = set((await conn.scalars(_THRESHOLDS, {"ws": workspace_id})).all())
    if threshold_name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise _bad(f"{field}.name", f"not a threshold of the scoring model (it has: {known})")
    if found.direction not in ("", "up", "down"):
        raise _bad(f"{field}.direction", "up, down, or unspecified for either")
    return replace(found, name=threshold_name)


async def action(
    conn: AsyncConnection, workspace_id: str, found: Action | None, allow: AllowList
) -> Action:
    if found is None:
        raise _bad("trigger.action", "required: webhook, slack or enrichment")
    settings = dict(found.settings)
    if found.kind == ActionKind.ENRICHMENT:
        connector_id = _text(settings.get("connector_id", ""), "trigger.action.enrichment", 100)
        field = "trigger.action.enrichment.connector_id"
        await _exists(conn, "connectors", workspace_id, connector_id, field)
        return Action(found.kind, {"connector_id": connector_id})
    if found.kind == ActionKind.WEBHOOK:
        settings = {"url": _url(settings.get("url", ""), "trigger.action.webhook.url", allow)}
    else:
        settings = _slack(settings, allow)
    return Action(found.kind, settings)


def _url(value: str, field: str, allow: AllowList) -> str:
    if not value.strip():
        raise _bad(field, "required")
    try:
        return check_url(value.strip(), allow)
    except OutboundRefused as refused:
        raise _bad(field, refused.reason) from None


def _slack(settings: dict[str, str], allow: AllowList) -> dict[str, str]:
    prefix = "trigger.action.slack"
    url = _url(settings.get("webhook_url", ""), f"{prefix}.webhook_url", allow)
    template = settings.get("template", "")
    link_template = settings.get("link_template", "").strip()
    if problem := slack.check_template(template):
        raise _bad(f"{prefix}.template", problem)
    if problem := slack.check_link_template(link_template):
        raise _bad(f"{prefix}.link_template", problem)
    return {"webhook_url": url, "template": template, "link_template": link_template}


async def trigger(
    conn: AsyncConnection, workspace_id: str, data: TriggerInput, allow: AllowList
) -> TriggerInput:
    """The whole trigger, cleaned; raises on the first bad field."""
    types = event_types(data.event_types)
    return TriggerInput(
        name=name(data.name),
        enabled=data.enabled,
        event_types=types,
        condition=await condition(conn, workspace_id, data.condition, types),
        action=await action(conn, workspace_id, data.action, allow),
    )
