"""The delivery loop every worker process runs (server/triggers/tasks.py starts it): fan
out new events, then claim due deliveries and send them, concurrently, until stopped.

Claiming moves a delivery's next_attempt_at a lease ahead and counts the attempt before
anything is sent, in its own transaction; the outcome is written after. A worker killed in
between leaves the delivery to be claimed again when the lease ends: at least once, with
the same webhook-id and body, never skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import DateTime, Integer, Text

from server.db.engine import Database
from server.enrichment import service as enrichment
from server.enrichment.runner import Runner
from server.errors import DomainError
from server.observability import metrics
from server.outbound import OutboundClient, OutboundError, OutboundRefused, Response
from server.triggers import attempts, fanout, signing, slack
from server.triggers.attempts import Outcome
from server.triggers.model import ActionKind, DeliveryStatus
from server.triggers.service import active_secrets

log = logging.getLogger("tnx.triggers")

CONCURRENCY = 64  # requests in flight per worker process
CLAIM_AT_ONCE = CONCURRENCY // 2  # claim when this many slots are free (or none is busy)
TICK_SECONDS = 0.05  # how often new events are fanned out and outcomes recorded
POLL_SECONDS = 0.05  # the pause when there was nothing to do
SLACK_INTERVAL = timedelta(seconds=1)  # Slack allows about one message a second a webhook
SLACK_GONE = frozenset({404, 410})  # channel archived or webhook removed


def lease() -> timedelta:
    """How long a claimed delivery is left to its worker before another may retry it."""
    return timedelta(seconds=float(os.environ.get("CRM_DELIVERY_LEASE_SECONDS", "60")))


@dataclass(frozen=True)
class Claimed:
    id: str
    trigger_id: str
    event_id: str
    body: str
    attempts: int
    action: dict[str, str]
    secrets: list[dict[str, Any]]
    lead_id: str | None
    workspace_id: str
    kind: str


# Due deliveries of one action kind ("webhook", "enrichment"); a trigger told to keep quiet
# (Retry-After) is skipped until then.
_CLAIM_DUE = text(
    """
    WITH due AS (
        SELECT d.id FROM deliveries d
        WHERE d.status IN ('pending', 'failed') AND d.next_attempt_at <= now()
          AND EXISTS (SELECT 1 FROM triggers t WHERE t.id = d.trigger_id AND t.enabled
                      AND t.action_kind = :kind
                      AND (t.send_after IS NULL OR t.send_after <= now()))
        ORDER BY d.next_attempt_at LIMIT :limit FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE deliveries d SET next_attempt_at = now() + :lease, attempts = d.attempts + 1,
        last_attempt_at = now()
    FROM due, triggers t WHERE d.id = due.id AND t.id = d.trigger_id
    RETURNING d.id, d.trigger_id, d.event_id, d.body, d.attempts, t.action, t.secrets,
              d.lead_id, d.workspace_id, t.action_kind AS kind
    """
)
_SLACK_TRIGGERS = text(
    """
    SELECT t.id FROM triggers t
    WHERE t.enabled AND t.action_kind = 'slack' AND (t.send_after IS NULL OR t.send_after <= now())
      AND EXISTS (SELECT 1 FROM deliveries d WHERE d.trigger_id = t.id
                  AND d.status IN ('pending', 'failed') AND d.next_attempt_at <= now())
    FOR UPDATE OF t SKIP LOCKED LIMIT 20
    """
)
_CLAIM_SLACK = text(
    """
    WITH due AS (
        SELECT id FROM deliveries
        WHERE trigger_id = :trigger AND status IN ('pending', 'failed')
          AND next_attempt_at <= now()
        ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED
    ), paced AS (
        UPDATE triggers SET send_after = now() + :interval WHERE id = :trigger
    )
    UPDATE deliveries d SET next_attempt_at = now() + :lease, attempts = d.attempts + 1,
        last_attempt_at = now()
    FROM due, triggers t WHERE d.id = due.id AND t.id = d.trigger_id
    RETURNING d.id, d.trigger_id, d.event_id, d.body, d.attempts, t.action, t.secrets,
              d.lead_id, d.workspace_id, t.action_kind AS kind
    """
)
_RECORD = text(
    """
    UPDATE deliveries d SET status = u.status, last_http_status = u.code,
        last_error = u.error, next_attempt_at = u.next_at
    FROM unnest(:ids, :attempts, :statuses, :codes, :errors, :next_at)
        AS u(id, attempts, status, code, error, next_at)
    WHERE d.id = u.id AND d.attempts = u.attempts
    """
).bindparams(
    bindparam("ids", type_=ARRAY(Text)),
    bindparam("attempts", type_=ARRAY(Integer)),
    bindparam("statuses", type_=ARRAY(Text)),
    bindparam("codes", type_=ARRAY(Integer)),
    bindparam("errors", type_=ARRAY(Text)),
    bindparam("next_at", type_=ARRAY(DateTime(timezone=True))),
)
_DISABLE = text(
    "UPDATE triggers SET enabled = false, disabled_reason = :reason, updated_at = now() "
    "WHERE id = :trigger"
)
_QUIET = text("UPDATE triggers SET send_after = :until WHERE id = :trigger")


class Sender:
    """Attempts run as tasks, at most CONCURRENCY at once; the loop goes on fanning out,
    claiming and recording meanwhile, so one slow receiver holds up only its own attempts."""

    def __init__(self, db: Database, client: OutboundClient) -> None:
        self.db, self.client = db, client
        self.in_flight: set[asyncio.Task[None]] = set()
        self.done: list[tuple[Claimed, Outcome]] = []
        self.fanned_at = self.recorded_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    busy = await self.step()
                except Exception:
                    log.exception("delivery step failed; trying again in a second")
                    busy = False
                    await asyncio.sleep(1)
                if not busy:
                    await self._pause(stop)
        finally:
            # Attempts under way end within their timeout; record them rather than leave
            # them to the lease.
            if self.in_flight:
                await asyncio.wait(self.in_flight, timeout=attempts.ATTEMPT_SECONDS + 1)
            await self.flush()

    async def _pause(self, stop: asyncio.Event) -> None:
        """Until stopped, an attempt ends, or POLL_SECONDS pass."""
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait(
            {stopping, *self.in_flight}, timeout=POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
        stopping.cancel()

    async def step(self) -> bool:
        """Fan out what is new, record finished attempts, start due ones; False when there
        was nothing to do. Each part runs in bulk (a transaction is a few milliseconds,
        an attempt's bookkeeping a few microseconds): outcomes are recorded once a batch
        has finished or a moment has passed, and deliveries claimed once half the slots
        are free."""
        now = time.monotonic()
        fanned = recorded = started = 0
        if now - self.fanned_at >= TICK_SECONDS:
            self.fanned_at = now
            fanned = await self.fan_out()
            started += await self.start_slack()
            started += await self.start(ActionKind.ENRICHMENT, self._enrichment)
        if len(self.done) >= CLAIM_AT_ONCE or (
            self.done and now - self.recorded_at >= TICK_SECONDS
        ):
            self.recorded_at = now
            recorded = await self.flush()
        if CONCURRENCY - len(self.in_flight) >= CLAIM_AT_ONCE or not self.in_flight:
            started += await self.start(ActionKind.WEBHOOK, self._webhook)
        return bool(fanned or recorded or started)

    async def fan_out(self) -> int:
        async with self.db.transaction() as conn:
            return await fanout.fan_out(conn)

    async def flush(self) -> int:
        if not self.done:
            return 0
        done, self.done = self.done, []
        await self._record([item for item, _ in done], [outcome for _, outcome in done])
        return len(done)

    def _spawn(self, attempt: Awaitable[None]) -> None:
        task = asyncio.ensure_future(attempt)
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def _claim(self, statement: Any, **params: Any) -> list[Claimed]:
        async with self.db.transaction() as conn:
            return _claimed(await conn.execute(statement, {"lease": lease(), **params}))

    async def start(self, kind: str, send: Callable[[Claimed], Awaitable[Outcome]]) -> int:
        """Claim due deliveries of one action kind for the free slots and attempt each."""
        room = CONCURRENCY - len(self.in_flight)
        claimed = await self._claim(_CLAIM_DUE, kind=kind, limit=room) if room > 0 else []
        for item in claimed:
            self._spawn(self._attempt(item, send))
        return len(claimed)

    async def _attempt(self, item: Claimed, send: Callable[[Claimed], Awaitable[Outcome]]) -> None:
        outcome = await send(item)
        # Only now look self.done up: flush() swaps in a new list while attempts run.
        self.done.append((item, outcome))

    async def _enrichment(self, item: Claimed) -> Outcome:
        """The run's own errors (a provider down, say) show on the run, not here."""
        if not item.lead_id:
            return Outcome(DeliveryStatus.DEAD, error="the event is not about a lead")
        try:
            async with self.db.transaction() as conn:
                run = await enrichment.queue_run(
                    conn,
                    workspace_id=item.workspace_id,
                    connector_ids=[item.action["connector_id"]],
                    lead_id=item.lead_id,
                )
            await Runner(self.db, self.client).run(run.id)
        except DomainError as refused:  # the connector was deleted or disabled
            return Outcome(DeliveryStatus.DEAD, error=refused.message)
        return Outcome(DeliveryStatus.SUCCEEDED, error="")

    async def _webhook(self, item: Claimed) -> Outcome:
        body = item.body.encode()
        secrets = active_secrets(item.secrets, datetime.now(UTC))
        headers = signing.headers(secrets, item.event_id, int(time.time()), body)
        return await self._post(item.action["url"], headers, body, item.attempts)

    async def _post(
        self,
        url: str,
        headers: dict[str, str],
        body: bytes,
        attempt: int,
        gone: frozenset[int] = frozenset({410}),
    ) -> Outcome:
        try:
            response: Response = await self.client.request(
                "POST", url, headers=headers, body=body, timeout=attempts.ATTEMPT_SECONDS
            )
        except OutboundRefused as refused:
            return attempts.judge(attempt, datetime.now(UTC), error=refused.reason, refused=True)
        except OutboundError as failed:
            return attempts.judge(attempt, datetime.now(UTC), error=failed.reason)
        return attempts.judge(attempt, datetime.now(UTC), response, gone_statuses=gone)

    async def start_slack(self) -> int:
        """Each Slack trigger's due deliveries, claimed together, become one message."""
        async with self.db.transaction() as conn:
            trigger_ids = list((await conn.scalars(_SLACK_TRIGGERS)).all())
            batches = []
            for trigger_id in trigger_ids:
                params = {"trigger": trigger_id, "limit": 500, "interval": SLACK_INTERVAL}
                batches.append(
                    _claimed(await conn.execute(_CLAIM_SLACK, {**params, "lease": lease()}))
                )
        for claimed in batches:
            if claimed:
                self._spawn(self._slack_attempt(claimed))
        return sum(len(c) for c in batches)

    async def _slack_attempt(self, claimed: Sequence[Claimed]) -> None:
        outcome = await self._slack(claimed)
        self.done.extend((item, outcome) for item in claimed)

    async def _slack(self, claimed: Sequence[Claimed]) -> Outcome:
        action = claimed[0].action
        items = [slack_item(c) for c in claimed]
        message = slack.message(
            items,
            template=action.get("template", ""),
            link_template=action.get("link_template", ""),
        )
        body = json.dumps(message).encode()
        headers = {"content-type": "application/json"}
        attempt = min(c.attempts for c in claimed)
        return await self._post(action["webhook_url"], headers, body, attempt, SLACK_GONE)

    async def _record(self, claimed: Sequence[Claimed], outcomes: Sequence[Outcome]) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                _RECORD,
                {
                    "ids": [c.id for c in claimed],
                    "attempts": [c.attempts for c in claimed],
                    "statuses": [str(o.status) for o in outcomes],
                    "codes": [o.http_status for o in outcomes],
                    "errors": [o.error for o in outcomes],
                    "next_at": [o.next_attempt_at for o in outcomes],
                },
            )
            for item, outcome in zip(claimed, outcomes, strict=True):
                metrics.DELIVERIES.labels(item.kind, outcome.status).inc()
                if outcome.disable:
                    await conn.execute(
                        _DISABLE, {"reason": outcome.disable, "trigger": item.trigger_id}
                    )
                if outcome.retry_after:
                    await conn.execute(
                        _QUIET, {"until": outcome.retry_after, "trigger": item.trigger_id}
                    )


def _claimed(rows: Any) -> list[Claimed]:
    return [Claimed(**row._mapping) for row in rows]


def slack_item(claimed: Claimed) -> slack.SlackItem:
    """What a Slack message says about one delivery, from the body a webhook would get."""
    sent = json.loads(claimed.body)
    data: dict[str, Any] = sent["data"]
    lead: dict[str, Any] = data.get("lead") or {}
    name = " ".join(p for p in (lead.get("first_name", ""), lead.get("last_name", "")) if p)
    score = lead.get("score")
    return slack.SlackItem(
        event_type=sent["type"],
        event_id=claimed.event_id,
        occurred_at=datetime.fromisoformat(sent["timestamp"].replace("Z", "+00:00")),
        lead_id=lead.get("id", ""),
        name=name,
        email=lead.get("email", ""),
        company=lead.get("company", ""),
        score=int(score) if score is not None else None,
        segment=data.get("segment_name", "") or "",
        threshold=data.get("threshold", "") if sent["type"] == "lead.threshold_crossed" else "",
        direction=data.get("direction", "") if sent["type"] == "lead.threshold_crossed" else "",
    )
