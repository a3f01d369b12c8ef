"""WatchEvents timings: CRM_WATCH_* environment variables, read once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class WatchSettings:
    # A heartbeat goes out when nothing was sent for this long: well inside the gateway's
    # 60 s stream idle timeout, so an idle REST watch is never cut.
    heartbeat_seconds: float = 15.0
    # How often an open watch asks whether its API key is still live (revocation ends the
    # stream within this, plus one poll).
    key_check_seconds: float = 2.0


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    value = float(raw) if raw else default
    if value <= 0:
        raise ValueError(f"{name} must be positive, not {raw!r}")
    return value


@lru_cache(maxsize=1)
def load() -> WatchSettings:
    return WatchSettings(
        heartbeat_seconds=_float("CRM_WATCH_HEARTBEAT_SECONDS", 15.0),
        key_check_seconds=_float("CRM_WATCH_KEY_CHECK_SECONDS", 2.0),
    )
