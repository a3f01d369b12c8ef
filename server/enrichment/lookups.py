"""One connector's answers for a batch of leads: built-ins at once; HTTP_JSON from the
shared cache (one read for the batch), else from the provider, within the connector's rate
limit and monthly budget (taken for many calls at once), each answer cached as soon as its
round of calls returns — so a batch retried after a crash pays nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from server.db.engine import Database
from server.enrichment import connectors as connector_logic
from server.enrichment import queries
from server.enrichment.model import Answer, Connector, ConnectorKind, LeadView, ProviderError
from server.outbound import OutboundClient, OutboundError, OutboundRefused

ATTEMPT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 1024 * 1024  # a bigger answer is cut, and then not valid JSON
MAX_WAIT_SECONDS = 30.0  # the longest one wait for the rate limit or a provider's 429
RATE_LIMITED_TRIES = 3
# Calls taken from the allowance, sent and cached together: also the lookups in flight per
# run, and the most a crash can leave taken but unsent (or paid but not cached).
ROUND = 32
Result = Answer | ProviderError


@dataclass
class Tally:
    provider_calls: int = 0
    cache_hits: int = 0


async def answers(
    db: Database,
    client: OutboundClient,
    slots: asyncio.Semaphore,
    connector: Connector,
    leads: Sequence[LeadView],
    tally: Tally,
) -> list[Result]:
    """An answer — or the ProviderError of a failed lookup — for each lead, in order."""
    if connector.kind != ConnectorKind.HTTP_JSON:
        return [connector_logic.builtin_answer(connector.kind, lead) for lead in leads]
    assert connector.http_json is not None
    keys = [connector_logic.lookup_key(connector.kind, connector.http_json, lead) for lead in leads]
    wanted = {key: lead for key, lead in zip(keys, leads, strict=True) if key is not None}
    async with db.read() as conn:
        hits = await queries.cached(conn, connector_id=connector.id, keys=list(wanted))
    known: dict[str, Result] = {k: Answer(h.found, dict(h.answer)) for k, h in hits.items()}
    tally.cache_hits += sum(1 for key in keys if key in hits)
    missing = [(key, lead) for key, lead in wanted.items() if key not in known]
    known.update(await _ask_all(db, client, slots, connector, missing, tally))
    return [Answer(found=False) if key is None else known[key] for key in keys]


async def _ask_all(
    db: Database,
    client: OutboundClient,
    slots: asyncio.Semaphore,
    connector: Connector,
    missing: list[tuple[str, LeadView]],
    tally: Tally,
) -> dict[str, Result]:
    found: dict[str, Result] = {}
    waited = 0.0
    while missing:
        async with db.transaction() as conn:
            granted, wait = await queries.take_calls(
                conn, connector_id=connector.id, n=min(len(missing), ROUND)
            )
        if granted == 0 and wait < 0:
            spent = _budget_spent(connector)
            found.update((key, spent) for key, _ in missing)
            break
        if granted == 0:
            if waited >= MAX_WAIT_SECONDS * 10:
                late = ProviderError("RATE_LIMITED", "waited too long for the rate limit")
                found.update((key, late) for key, _ in missing)
                break
            await asyncio.sleep(wait)
            waited += wait
            continue
        now_asked, missing = missing[:granted], missing[granted:]
        tally.provider_calls += granted
        results = await asyncio.gather(
            *(_ask(db, client, slots, connector, lead, tally) for _, lead in now_asked)
        )
        found.update((key, result) for (key, _), result in zip(now_asked, results, strict=True))
        await _remember(db, connector, {k: r for (k, _), r in zip(now_asked, results, strict=True)})
    return found


def _budget_spent(connector: Connector) -> ProviderError:
    return ProviderError(
        "BUDGET_EXHAUSTED",
        f"the connector's monthly budget of {connector.monthly_budget} calls is spent",
    )


async def _remember(db: Database, connector: Connector, results: dict[str, Result]) -> None:
    """Answers and misses, not failures (a failed lookup is tried again next time)."""
    expires = datetime.now(UTC) + timedelta(seconds=connector.cache_ttl_seconds)
    rows = [
        {
            "connector_id": connector.id,
            "lookup_key": key,
            "found": result.found,
            "answer": result.values,
            "expires_at": expires,
        }
        for key, result in results.items()
        if isinstance(result, Answer)
    ]
    async with db.transaction() as conn:
        await queries.remember(conn, rows)


async def _ask(
    db: Database,
    client: OutboundClient,
    slots: asyncio.Semaphore,
    connector: Connector,
    lead: LeadView,
    tally: Tally,
) -> Result:
    """One lookup, whose first call was already taken from the allowance; a 429 waits for
    its Retry-After and takes another."""
    for attempt in range(RATE_LIMITED_TRIES):
        if attempt:
            if not await _take_one(db, connector):
                return _budget_spent(connector)
            tally.provider_calls += 1
        try:
            async with slots:
                return await _call(client, connector, lead)
        except ProviderError as error:
            if error.reason == "ADDRESS_REFUSED":  # it never reached the provider
                async with db.transaction() as conn:
                    await queries.give_back_calls(conn, connector_id=connector.id, n=1)
                tally.provider_calls -= 1
            if error.reason != "RATE_LIMITED":
                return error
            await asyncio.sleep(min(error.retry_after or 1.0, MAX_WAIT_SECONDS))
    return ProviderError("RATE_LIMITED", "the provider kept answering 429 Too Many Requests")


async def _take_one(db: Database, connector: Connector) -> bool:
    for _ in range(100):
        async with db.transaction() as conn:
            granted, wait = await queries.take_calls(conn, connector_id=connector.id, n=1)
        if granted:
            return True
        if wait < 0:
            return False
        await asyncio.sleep(wait)
    return False


async def _call(client: OutboundClient, connector: Connector, lead: LeadView) -> Answer:
    assert connector.http_json is not None
    method, url, headers, body = connector_logic.render_request(connector.http_json, lead)
    try:
        response = await client.request(
            method,
            url,
            headers=headers,
            body=body,
            timeout=ATTEMPT_SECONDS,
            max_response_bytes=MAX_RESPONSE_BYTES,
        )
    except OutboundRefused as refused:
        raise ProviderError("ADDRESS_REFUSED", refused.reason) from None
    except OutboundError as failed:
        reason = "PROVIDER_TIMEOUT" if "timed out" in failed.reason else "PROVIDER_ERROR"
        raise ProviderError(reason, failed.reason) from None
    return connector_logic.read_answer(
        connector.http_json,
        connector.field_map,
        response.status,
        response.body,
        retry_after=response.header("retry-after"),
    )
