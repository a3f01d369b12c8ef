"""Enrichment's API side: connectors (CRUD, write-only secrets), runs (queued for the
worker, read with progress) and provenance. Lookups and writes are the worker's
(server/enrichment/runner.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from server import ids
from server.db.engine import AnyRow, Database
from server.enrichment import connectors as connector_logic
from server.enrichment import queries
from server.enrichment.model import (
    Connector,
    ConnectorInput,
    ConnectorKind,
    EnrichedField,
    HttpJson,
    Overwrite,
    Run,
    RunError,
    RunState,
)
from server.errors import FieldViolation, InvalidArgument, NotFound, ResourceExhausted
from server.filtering.compiler import compile_predicate
from server.filtering.expression import parse
from server.outbound import AllowList
from server.pagination import CursorCodec, Keyset, fingerprint, page_size

UPDATABLE = (
    "name",
    "http_json",
    "field_map",
    "overwrite",
    "enabled",
    "rate_limit_per_minute",
    "monthly_budget",
    "cache_ttl_seconds",
)
MAX_CONNECTORS_A_RUN = 10
REASON = "CONNECTOR_INVALID"
Enqueue = Callable[[str], None]


@dataclass(frozen=True)
class ConnectorPage:
    connectors: list[Connector]
    next_cursor: str


def to_connector(row: AnyRow, *, secrets: bool = False) -> Connector:
    """`secrets`: with the stored header values (the worker); else only their names."""
    http_json = None
    if row.kind == ConnectorKind.HTTP_JSON:
        config = dict(row.config)
        headers = dict(row.headers) if secrets else dict.fromkeys(row.headers, "")
        http_json = HttpJson(
            method=config.get("method", "GET"),
            url_template=config.get("url_template", ""),
            headers=headers,
            body_template=config.get("body_template", ""),
            no_match_statuses=tuple(config.get("no_match_statuses", [404])),
            no_match_path=config.get("no_match_path", ""),
        )
    values = row._mapping
    simple = ("id", "workspace_id", "name", "enabled", "rate_limit_per_minute")
    return Connector(
        **{name: values[name] for name in simple},
        kind=ConnectorKind(row.kind),
        http_json=http_json,
        field_map=dict(row.field_map),
        overwrite=Overwrite(row.overwrite),
        monthly_budget=row.monthly_budget,
        calls_this_month=_calls_this_month(row),
        cache_ttl_seconds=row.cache_ttl_seconds,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _calls_this_month(row: AnyRow) -> int:
    """The count is of `budget_month`: none yet in a month with no call (UTC)."""
    month = datetime.now(UTC).date().replace(day=1)
    return int(row.calls_this_month) if row.budget_month == month else 0


def _until_next_month() -> float:
    """Seconds until the budgets' month (UTC) turns and every count starts again."""
    now = datetime.now(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    turn = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return (turn - now).total_seconds()


def _check(data: ConnectorInput, allow: AllowList) -> None:
    problems: list[tuple[str, str]] = []
    name = data.name.strip()
    if not name or len(name) > 200 or "\x00" in name:
        problems.append(("name", "required, at most 200 characters"))
    if data.kind is None:
        problems.append(("kind", "required: HTTP_JSON or a built-in kind"))
    elif data.kind == ConnectorKind.HTTP_JSON:
        if data.http_json is None:
            problems.append(("http_json", "required for HTTP_JSON"))
        else:
            found = connector_logic.check_http_json(data.http_json, allow)
            problems += [(f"http_json.{field}", reason) for field, reason in found]
        problems += connector_logic.check_field_map(data.field_map)  # named `field_map`
    elif data.field_map or data.http_json is not None:
        problems.append(("field_map", "built-in connectors take no http_json or field_map"))
    for field, value, top in (
        ("rate_limit_per_minute", data.rate_limit_per_minute, 1_000_000),
        ("monthly_budget", data.monthly_budget, 2_000_000_000),
        ("cache_ttl_seconds", data.cache_ttl_seconds, 365 * 86400),
    ):
        if not 0 <= value <= top:
            problems.append((field, f"0 to {top}"))
    if problems:
        violations = [FieldViolation(f"connector.{f}", d) for f, d in problems]
        raise InvalidArgument(
            message=f"{violations[0].field}: {violations[0].description}",
            reason=REASON,
            violations=violations,
        )


def _stored(data: ConnectorInput) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if data.http_json is not None:
        h = data.http_json
        config = {
            "method": (h.method or "GET").upper(),
            "url_template": h.url_template,
            "body_template": h.body_template,
            "no_match_statuses": list(h.no_match_statuses or (404,)),
            "no_match_path": h.no_match_path,
        }
    return {
        "name": data.name.strip(),
        "config": config,
        "field_map": data.field_map,
        "overwrite": str(data.overwrite),
        "enabled": data.enabled,
        "rate_limit_per_minute": data.rate_limit_per_minute,
        "monthly_budget": data.monthly_budget,
        "cache_ttl_seconds": data.cache_ttl_seconds or 30 * 86400,
    }


async def create_connector(
    db: Database, allow: AllowList, *, workspace_id: str, data: ConnectorInput
) -> Connector:
    _check(data, allow)
    assert data.kind is not None
    headers = data.http_json.headers if data.http_json else {}
    async with db.transaction() as conn:
        row = await queries.insert_connector(
            conn,
            values={
                "id": ids.new_id("enc"),
                "workspace_id": workspace_id,
                "kind": str(data.kind),
                "headers": headers,
                **_stored(data),
            },
        )
    return to_connector(row)


async def _require(conn: Any, workspace_id: str, connector_id: str, lock: bool = False) -> AnyRow:
    row = await queries.get_connector(
        conn, workspace_id=workspace_id, connector_id=connector_id, lock=lock
    )
    if row is None:
        raise NotFound.resource("connector", connector_id)
    return row


async def get_connector(db: Database, *, workspace_id: str, connector_id: str) -> Connector:
    async with db.read() as conn:
        return to_connector(await _require(conn, workspace_id, connector_id))


async def update_connector(
    db: Database,
    allow: AllowList,
    *,
    workspace_id: str,
    connector_id: str,
    data: ConnectorInput,
    paths: Sequence[str],
) -> Connector:
    unknown = [p for p in paths if p not in UPDATABLE]
    if unknown:
        raise InvalidArgument.on("update_mask", f"cannot update {unknown[0]!r}")
    async with db.transaction() as conn:
        row = await _require(conn, workspace_id, connector_id, lock=True)
        current = to_connector(row, secrets=True)
        merged = ConnectorInput(
            **{name: getattr(data if name in paths else current, name) for name in UPDATABLE},
            kind=current.kind,
        )
        if "http_json" in paths and data.http_json is not None and not data.http_json.headers:
            # Headers are write-only: an update without them keeps the stored ones.
            kept = current.http_json.headers if current.http_json else {}
            merged = replace(merged, http_json=replace(data.http_json, headers=kept))
        _check(merged, allow)
        values = _stored(merged)
        if merged.http_json is not None:
            values["headers"] = merged.http_json.headers
        if {"http_json", "field_map"} & set(paths):
            await queries.forget_answers(conn, connector_id=connector_id)
        row = await queries.update_connector(
            conn, workspace_id=workspace_id, connector_id=connector_id, values=values
        )
    return to_connector(row)


async def delete_connector(db: Database, *, workspace_id: str, connector_id: str) -> None:
    async with db.transaction() as conn:
        if not await queries.delete_connector(
            conn, workspace_id=workspace_id, connector_id=connector_id
        ):
            raise NotFound.resource("connector", connector_id)


async def list_connectors(
    db: Database, codec: CursorCodec, *, workspace_id: str, limit: int, cursor: str
) -> ConnectorPage:
    size = page_size(limit)
    keyset = Keyset(codec, workspace_id, fingerprint("connectors"))
    async with db.read() as conn:
        rows = await queries.list_connectors(
            conn, workspace_id=workspace_id, after_id=keyset.after_id(cursor), limit=size
        )
    rows, next_cursor = keyset.page(rows, size, lambda r: [r.id])
    return ConnectorPage([to_connector(r) for r in rows], next_cursor)


# -- runs ----------------------------------------------------------------------------------


def to_run(row: AnyRow) -> Run:
    return Run(
        id=row.id,
        state=RunState(row.state),
        connector_ids=list(row.connector_ids),
        lead_id=row.lead_id or "",
        filter=row.filter,
        segment_id=row.segment_id,
        total=row.total,
        processed=row.processed,
        changed=row.changed,
        provider_calls=row.provider_calls,
        cache_hits=row.cache_hits,
        errors=[RunError(**e) for e in row.errors],
        error_count=row.error_count,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


async def _connector_ids(conn: Any, workspace_id: str, connector_ids: Sequence[str]) -> list[str]:
    unique = list(dict.fromkeys(i.strip() for i in connector_ids))
    if not unique or len(unique) > MAX_CONNECTORS_A_RUN:
        raise InvalidArgument.on("connector_ids", f"1 to {MAX_CONNECTORS_A_RUN} connectors")
    rows = await queries.get_connectors(conn, workspace_id=workspace_id, connector_ids=unique)
    enabled = {row.id for row in rows if row.enabled}
    for index, connector_id in enumerate(unique):
        if connector_id not in enabled:
            raise NotFound(
                message=f"connector {connector_id!r} not found (or disabled)",
                reason="CONNECTOR_NOT_FOUND",
                violations=[FieldViolation(f"connector_ids[{index}]", "no such enabled connector")],
                metadata={"id": connector_id},
            )
    for row in rows:
        if row.monthly_budget and _calls_this_month(row) >= row.monthly_budget:
            # Every call would go over: refused now rather than as errors on each lead.
            raise ResourceExhausted(
                message=f"connector {row.id!r} has spent its monthly budget of "
                f"{row.monthly_budget} calls",
                reason="BUDGET_EXHAUSTED",
                metadata={"id": row.id},
                retry_after_s=_until_next_month(),
            )
    return unique


async def _require_in_workspace(conn: Any, table: str, workspace_id: str, id_: str) -> None:
    """NOT_FOUND unless the workspace has it (`table` is "leads" or "segments", never input)."""
    sql = text(f"SELECT 1 FROM {table} WHERE workspace_id = :ws AND id = :id")
    if await conn.scalar(sql, {"ws": workspace_id, "id": id_}) is None:
        raise NotFound.resource(table[:-1], id_)


async def queue_run(
    conn: Any,
    *,
    workspace_id: str,
    connector_ids: Sequence[str],
    lead_id: str | None = None,
    filter_text: str = "",
    segment_id: str = "",
) -> Run:
    """A new QUEUED run in the caller's transaction (the caller enqueues it after commit)."""
    chosen = await _connector_ids(conn, workspace_id, connector_ids)
    row = await queries.insert_run(
        conn,
        values={
            "id": ids.new_id("enr"),
            "workspace_id": workspace_id,
            "state": "queued",
            "connector_ids": chosen,
            "lead_id": lead_id,
            "filter": filter_text,
            "segment_id": segment_id,
            "total": 1 if lead_id else 0,
        },
    )
    return to_run(row)


async def enrich_lead(
    db: Database, enqueue: Enqueue, *, workspace_id: str, lead_id: str, connector_ids: Sequence[str]
) -> Run:
    async with db.transaction() as conn:
        await _require_in_workspace(conn, "leads", workspace_id, lead_id)
        run = await queue_run(
            conn, workspace_id=workspace_id, connector_ids=connector_ids, lead_id=lead_id
        )
    enqueue(run.id)
    return run


async def batch_enrich(
    db: Database,
    enqueue: Enqueue,
    *,
    workspace_id: str,
    filter_text: str,
    segment_id: str,
    connector_ids: Sequence[str],
) -> Run:
    filter_text, segment_id = filter_text.strip(), segment_id.strip()
    if bool(filter_text) == bool(segment_id):
        raise InvalidArgument.on("filter", "give a filter or a segment_id, not both")
    if filter_text:
        compile_predicate(parse(filter_text))  # refused here, not on the worker
    async with db.transaction() as conn:
        if segment_id:
            await _require_in_workspace(conn, "segments", workspace_id, segment_id)
        run = await queue_run(
            conn,
            workspace_id=workspace_id,
            connector_ids=connector_ids,
            filter_text=filter_text,
            segment_id=segment_id,
        )
    enqueue(run.id)
    return run


async def get_run(db: Database, *, workspace_id: str, run_id: str) -> Run:
    async with db.read() as conn:
        row = await queries.get_run(conn, workspace_id=workspace_id, run_id=run_id)
    if row is None:
        raise NotFound.resource("enrichment_run", run_id)
    return to_run(row)


async def lead_enrichment(db: Database, *, workspace_id: str, lead_id: str) -> list[EnrichedField]:
    async with db.read() as conn:
        await _require_in_workspace(conn, "leads", workspace_id, lead_id)
        rows = await queries.provenance(conn, lead_ids=[lead_id])
    return [EnrichedField(r.field, r.value, r.connector_id, r.enriched_at) for r in rows]
