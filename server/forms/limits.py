"""Submission rate limits: token buckets per client IP and per form, kept in PostgreSQL
(`rate_buckets`) so that every server process draws on the same buckets — N servers allow
the limit, not N times it.

A bucket holds up to `per_minute` tokens and refills at `per_minute` a minute; a submission
takes one. Both buckets of a submission are taken in one autocommit statement before the
submission's own transaction, so refused and invalid submissions count too (a flood of bad
requests is limited like a flood of good ones).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import Float, Text

from server.db.engine import Database
from server.errors import ResourceExhausted

log = logging.getLogger(__name__)

# A bucket idle this long is full again: forgetting it changes nothing.
FULL_AFTER_S = 60
FORGET_EVERY_S = 60.0

# EXCLUDED.tokens + 1 is the bucket's capacity (a new bucket starts full, less this take).
_REFILLED = (
    "least(EXCLUDED.tokens + 1,"
    " b.tokens + extract(epoch FROM now() - b.at) * (EXCLUDED.tokens + 1) / 60.0)"
)
_TAKE = text(
    f"""
    INSERT INTO rate_buckets AS b (key, tokens, at, allowed)
    SELECT key, capacity - 1, now(), true
    FROM unnest(:keys, :capacities) AS k(key, capacity)
    ORDER BY key  -- every writer locks buckets in the same order
    ON CONFLICT (key) DO UPDATE SET
        tokens = CASE WHEN {_REFILLED} >= 1 THEN {_REFILLED} - 1 ELSE {_REFILLED} END,
        allowed = {_REFILLED} >= 1,
        at = now()
    RETURNING key, allowed, tokens
    """
).bindparams(bindparam("keys", type_=ARRAY(Text)), bindparam("capacities", type_=ARRAY(Float)))
_FORGET = text(f"DELETE FROM rate_buckets WHERE at < now() - interval '{FULL_AFTER_S} seconds'")


@dataclass(frozen=True)
class SubmissionLimits:
    """Submissions a minute per client IP and per form; 0 turns one off."""

    per_ip: int
    per_form: int

    async def take(self, db: Database, *, client_ip: str, form_slug: str) -> None:
        """Spend a token of the client's bucket and of the form's (by slug: known before the
        form is read), or raise ResourceExhausted with the seconds until one is back."""
        wanted = {
            key: capacity
            for key, capacity in [
                (f"ip:{client_ip}", self.per_ip),
                (f"form:{form_slug}", self.per_form),
            ]
            if capacity > 0
        }
        if not wanted:
            return
        async with db.read() as conn:
            rows = (
                await conn.execute(
                    _TAKE, {"keys": list(wanted), "capacities": [float(c) for c in wanted.values()]}
                )
            ).all()
        for row in sorted(rows, key=lambda r: not r.key.startswith("ip:")):  # the client first
            if not row.allowed:
                per_second = wanted[row.key] / 60.0
                _refuse((1.0 - row.tokens) / per_second, row.key.startswith("ip:"))


def _refuse(wait_s: float, by_client: bool) -> None:
    seconds = max(1, int(wait_s + 0.999))
    scope = "client_ip" if by_client else "form"
    who = "from this client" if by_client else "to this form"
    raise ResourceExhausted(
        message=f"too many submissions {who}; retry in {seconds}s",
        reason="FORM_RATE_LIMITED",
        metadata={"scope": scope, "retry_after_seconds": str(seconds)},
        retry_after_s=seconds,  # RetryInfo, and Retry-After over REST
    )


async def forget_idle_every(db: Database, seconds: float = FORGET_EVERY_S) -> None:
    """Runs until cancelled: drop buckets that have refilled, so a flood of distinct
    addresses cannot grow the table without bound."""
    while True:
        await asyncio.sleep(seconds)
        try:
            async with db.read() as conn:
                await conn.execute(_FORGET)
        except Exception:  # the database may be away; the next round tries again
            log.warning("forgetting idle rate-limit buckets failed", exc_info=True)
