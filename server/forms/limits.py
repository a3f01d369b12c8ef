"""Submission rate limits: token buckets per client IP and per form, held in the server
process (each process enforces its own; several processes allow that many times more)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from server.errors import ResourceExhausted

# Past this many tracked keys, idle buckets are dropped so a flood of distinct IPs cannot
# grow memory without bound.
MAX_KEYS = 100_000


class TokenBucket:
    """`per_minute` requests a minute, in bursts of up to `per_minute`; 0 means unlimited."""

    def __init__(
        self,
        per_minute: int,
        *,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def take(self, key: str) -> float | None:
        """Spend one token: None when allowed, else the seconds until one is available."""
        if not self.enabled:
            return None
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self._prune(now)
        self._buckets[key] = (tokens - 1.0, now)
        return None

    def _prune(self, now: float) -> None:
        full_after = self.capacity / self.rate
        idle = [k for k, (_, at) in self._buckets.items() if now - at >= full_after]
        for key in idle:  # a bucket idle this long is full again: forgetting it changes nothing
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            # Still too many active keys: forget the oldest half (they get a fresh bucket).
            ordered = sorted(self._buckets.items(), key=lambda item: item[1][1])
            for key, _ in ordered[: len(ordered) // 2]:
                del self._buckets[key]


@dataclass
class SubmissionLimits:
    per_ip: TokenBucket
    per_form: TokenBucket

    @classmethod
    def per_minute(cls, *, per_ip: int, per_form: int) -> SubmissionLimits:
        return cls(per_ip=TokenBucket(per_ip), per_form=TokenBucket(per_form))

    def check_ip(self, client_ip: str) -> None:
        _raise_if_limited(self.per_ip.take(client_ip), scope="client_ip")

    def check_form(self, form_id: str) -> None:
        _raise_if_limited(self.per_form.take(form_id), scope="form")


def _raise_if_limited(wait: float | None, *, scope: str) -> None:
    if wait is None:
        return
    seconds = max(1, int(wait + 0.999))
    who = "from this client" if scope == "client_ip" else "to this form"
    raise ResourceExhausted(
        message=f"too many submissions {who}; retry in {seconds}s",
        reason="FORM_RATE_LIMITED",
        metadata={"scope": scope, "retry_after_seconds": str(seconds)},
        retry_after_s=seconds,  # RetryInfo, and Retry-After over REST
    )
