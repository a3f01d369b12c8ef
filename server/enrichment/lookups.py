"""One connector's answer for one lead: built-ins at once; HTTP_JSON from the shared cache,
or from the provider within the connector's rate limit and monthly budget."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from server.db.engine import Database
from server.enrichment import connectors as connector_logic
from server.enrichment import queries
from server.enrichment.model import Answer, Connector, ConnectorKind, LeadView, ProviderError
from server.outbound import OutboundClient, OutboundError, OutboundRefused

ATTEMPT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 1024 * 1024  # a bigger answer is cut, and then not valid JSON
MAX_WAIT_SECONDS = 30.0  # the longest a lookup waits for the rate limit or a provider's 429
RATE_LIMITED_TRIES = 3


@dataclass
class Tally:
    provider_calls: int = 0
    cache_hits: int = 0


async def answer(
    db: Database, client: OutboundClient, connector: Connector, lead: LeadView, tally: Tally
) -> Answer:
    """Raises ProviderError when the lookup fails (nothing is written for it)."""
    if connector.kind != ConnectorKind.HTTP_JSON:
        return connector_logic.builtin_answer(connector.kind, lead)
    assert connector.http_json is not None
    key = connector_logic.lookup_key(connector.kind, connector.http_json, lead)
    if key is None:
        return Answer(found=False)  # nothing to look the lead up by
    async with db.read() as conn:
        hit = await queries.cached(conn, connector_id=connector.id, key=key)
    if hit is not None:
        tally.cache_hits += 1
        return Answer(found=hit.found, values=dict(hit.answer))
    found = await _ask(db, client, connector, lead, tally)
    async with db.transaction() as conn:  # at once: a retried batch must not pay again
        await queries.remember(
            conn,
            connector_id=connector.id,
            key=key,
            found=found.found,
            answer=found.values,
            expires_at=datetime.now(UTC) + timedelta(seconds=connector.cache_ttl_seconds),
        )
    return found


async def _ask(
    db: Database, client: OutboundClient, connector: Connector, lead: LeadView, tally: Tally
) -> Answer:
    assert connector.http_json is not None
    for _ in range(RATE_LIMITED_TRIES):
        await _take_call(db, connector)
        tally.provider_calls += 1
        try:
            return await _call(client, connector, lead)
        except ProviderError as error:
            if error.reason == "ADDRESS_REFUSED":  # it never reached the provider
                async with db.transaction() as conn:
                    await queries.give_back_call(conn, connector_id=connector.id)
                tally.provider_calls -= 1
            if error.reason != "RATE_LIMITED":
                raise
            await asyncio.sleep(min(error.retry_after or 1.0, MAX_WAIT_SECONDS))
    raise ProviderError("RATE_LIMITED", "the provider kept answering 429 Too Many Requests")


async def _take_call(db: Database, connector: Connector) -> None:
    waited = 0.0
    while True:
        async with db.transaction() as conn:
            wait = await queries.take_call(conn, connector_id=connector.id)
        if wait == 0:
            return
        if wait < 0:
            raise ProviderError(
                "BUDGET_EXHAUSTED",
                f"the connector's monthly budget of {connector.monthly_budget} calls is spent",
            )
        if waited >= MAX_WAIT_SECONDS * 10:
            raise ProviderError("RATE_LIMITED", "waited too long for the connector's rate limit")
        await asyncio.sleep(wait)
        waited += wait


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
