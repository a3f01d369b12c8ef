"""What an attempt's result means for its delivery: success, a retry when, or giving up.
Pure functions, so the retry rules are tested without a receiver."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from server.outbound import Response
from server.triggers.model import DeliveryStatus

# Standard Webhooks' schedule: attempts at 0 s, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h,
# 20 h and 24 h after the one before (about three days in all); then the delivery is DEAD.
RETRY_DELAYS: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
JITTER = 0.2  # ±20%, so receivers coming back up are not hit by every retry at once
ATTEMPT_SECONDS = 10.0  # any 2xx within this is success
GONE = "the receiver answered HTTP {code}: the trigger is disabled"


def retry_delays() -> tuple[float, ...]:
    """The schedule; CRM_WEBHOOK_RETRY_DELAYS (seconds, comma-separated) replaces it, for
    tests and demos that cannot wait hours."""
    configured = os.environ.get("CRM_WEBHOOK_RETRY_DELAYS", "").strip()
    if not configured:
        return RETRY_DELAYS
    return tuple(float(part) for part in configured.split(","))


@dataclass(frozen=True)
class Outcome:
    status: DeliveryStatus
    http_status: int = 0
    error: str = ""
    next_attempt_at: datetime | None = None
    disable: str = ""  # why the trigger must be disabled; "" leaves it alone
    retry_after: datetime | None = None  # the receiver asked for quiet until then


def retry_after(response: Response, now: datetime) -> datetime | None:
    """The moment a Retry-After header (seconds or an HTTP date) names, if any."""
    value = (response.header("retry-after") or "").strip()
    if not value:
        return None
    if value.isdigit():
        return now + timedelta(seconds=min(int(value), 86400))
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(moment, now + timedelta(days=1)) if moment.tzinfo else None


def _failed(attempts: int, now: datetime, code: int, error: str, after: datetime | None) -> Outcome:
    delays = retry_delays()
    if attempts > len(delays):
        return Outcome(DeliveryStatus.DEAD, code, f"gave up after {attempts} attempts: {error}")
    delay = delays[attempts - 1] * random.uniform(1 - JITTER, 1 + JITTER)
    due = now + timedelta(seconds=delay)
    if after is not None and after > due:
        due = after
    return Outcome(DeliveryStatus.FAILED, code, error, due, retry_after=after)


def judge(
    attempts: int,
    now: datetime,
    response: Response | None = None,
    *,
    error: str = "",
    refused: bool = False,
    gone_statuses: frozenset[int] = frozenset({410}),
) -> Outcome:
    """The outcome of attempt number `attempts` (1 for the first): `response` when one came,
    else `error` (a transport failure, retried; `refused`: the address guard, never retried)."""
    if refused:
        return Outcome(DeliveryStatus.DEAD, 0, error)
    if response is None:
        return _failed(attempts, now, 0, error, None)
    code = response.status
    if 200 <= code < 300:
        return Outcome(DeliveryStatus.SUCCEEDED, code)
    if code in gone_statuses:
        return Outcome(DeliveryStatus.DEAD, code, f"HTTP {code}", disable=GONE.format(code=code))
    detail = f"HTTP {code}" + (" (redirects are not followed)" if 300 <= code < 400 else "")
    return _failed(attempts, now, code, detail, retry_after(response, now))
