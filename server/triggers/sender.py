"""The delivery loop every worker process runs (server/triggers/tasks.py starts it): fan
out new events, then claim due deliveries and send them, concurrently, until stopped.

Claiming moves a delivery's next_attempt_at a lease ahead and counts the attempt before
anything is sent, in its own transaction; the outcome is written after. A worker killed in
between leaves the delivery to be claimed again when the lease ends: at least once, with
the same webhook-id and body, never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import DateTime, Integer, Text

from server.db.engine import Database
from server.outbound import OutboundClient, OutboundError, OutboundRefused, Response
from server.triggers import attempts, fanout, signing, slack
from server.triggers.attempts import Outcome
from server.triggers.service import active_secrets

log = logging.getLogger("tnx.triggers")

BATCH = 200  # deliveries claimed at once
CONCURRENCY = 64  # requests in flight per worker process
POLL_SECONDS = 0.1  # the pause when there was nothing to do
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


_CLAIM_WEBHOOKS = text(
    """
    WITH due AS (
        SELECT d.id FROM deliveries d
        WHERE d.status IN ('pending', 'failed') AND d.next_attempt_at <= now()
          AND EXISTS (SELECT 1 FROM triggers t WHERE t.id = d.trigger_id AND t.enabled
                      AND t.action_kind = 'webhook'
                      AND (t.send_after IS NULL OR t.send_after <= now()))
        ORDER BY d.next_attempt_at LIMIT :limit FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE deliveries d SET next_attempt_at = now() + :lease, attempts = d.attempts + 1,
        last_attempt_at = now()
    FROM due, triggers t WHERE d.id = due.id AND t.id = d.trigger_id
    RETURNING d.id, d.trigger_id, d.event_id, d.body, d.attempts, t.action, t.secrets
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
    RETURNING d.id, d.trigger_id, d.event_id, d.body, d.attempts, t.action, t.secrets
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
    def __init__(self, db: Database, client: OutboundClient) -> None:
        self.db, self.client = db, client
        self.slots = asyncio.Semaphore(CONCURRENCY)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                busy = await self.step()
            except Exception:
                log.exception("delivery step failed; trying again in a second")
                busy = False
                await asyncio.sleep(1)
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_SECONDS)

    async def step(self) -> bool:
        """Fan out what is new, then send what is due; False when there was nothing."""
        fanned = await self.fan_out()
        sent = await self.send_webhooks()
        sent += await self.send_slack()
        return bool(fanned or sent)

    async def fan_out(self) -> int:
        async with self.db.transaction() as conn:
            return await fanout.fan_out(conn)

    async def _claim(self, statement: Any, **params: Any) -> list[Claimed]:
        async with self.db.transaction() as conn:
            return _claimed(await conn.execute(statement, {"lease": lease(), **params}))

    async def send_webhooks(self) -> int:
        claimed = await self._claim(_CLAIM_WEBHOOKS, limit=BATCH)
        if claimed:
            outcomes = await asyncio.gather(*(self._webhook(c) for c in claimed))
            await self._record(claimed, list(outcomes))
        return len(claimed)

    async def _webhook(self, item: Claimed) -> Outcome:
        body = item.body.encode()
        async with self.slots:
            now = datetime.now(UTC)
            secrets = active_secrets(item.secrets, now)
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

    async def send_slack(self) -> int:
        async with self.db.transaction() as conn:
            trigger_ids = list((await conn.scalars(_SLACK_TRIGGERS)).all())
            claimed_by_trigger = []
            for trigger_id in trigger_ids:
                rows = await conn.execute(
                    _CLAIM_SLACK,
                    {
                        "trigger": trigger_id,
                        "limit": 500,
                        "lease": lease(),
                        "interval": SLACK_INTERVAL,
                    },
                )
                claimed_by_trigger.append(
                    [
                        Claimed(
                            r.id, r.trigger_id, r.event_id, r.body, r.attempts, r.action, r.secrets
                        )
                        for r in rows
                    ]
                )
        for claimed in claimed_by_trigger:
            if claimed:
                outcome = await self._slack(claimed)
                await self._record(claimed, [outcome] * len(claimed))
        return sum(len(c) for c in claimed_by_trigger)

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
                if outcome.disable:
                    await conn.execute(
                        _DISABLE, {"reason": outcome.disable, "trigger": item.trigger_id}
                    )
                if outcome.retry_after:
                    await conn.execute(
                        _QUIET, {"until": outcome.retry_after, "trigger": item.trigger_id}
                    )


def _claimed(rows: Any) -> list[Claimed]:
    return [
        Claimed(r.id, r.trigger_id, r.event_id, r.body, r.attempts, r.action, r.secrets)
        for r in rows
    ]


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
