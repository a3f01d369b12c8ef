"""Opaque, type-prefixed ids (`lead_…`, `ws_…`) whose body sorts by creation time.

The body is a ULID-style 26-character Crockford base32 string: 48 bits of milliseconds then 80
random bits, so ordering by id is (nearly) creation order and keyset pages follow it.
"""

from __future__ import annotations

import base64
import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# base64's base32 alphabet → Crockford's, so base64.b32encode does the per-character work.
_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET)
BODY_LENGTH = 26
_RANDOM_BYTES = 10  # 80 bits: exactly the last 16 characters of the body


def new_ids(prefix: str, count: int) -> list[str]:
    """`count` new ids of one millisecond: the time head once, then 80 random bits each,
    encoded in C rather than a Python loop per character (imports make 10,000 at once)."""
    millis = time.time_ns() // 1_000_000
    head = "".join(_ALPHABET[(millis >> (5 * i)) & 31] for i in reversed(range(10)))
    noise = os.urandom(_RANDOM_BYTES * count)
    return [
        f"{prefix}_{head}"
        + base64.b32encode(noise[i : i + _RANDOM_BYTES]).decode().translate(_CROCKFORD)
        for i in range(0, _RANDOM_BYTES * count, _RANDOM_BYTES)
    ]


def new_id(prefix: str) -> str:
    return new_ids(prefix, 1)[0]


def looks_like(prefix: str, value: str) -> bool:
    head = f"{prefix}_"
    if not value.startswith(head) or len(value) != len(head) + BODY_LENGTH:
        return False
    return all(c in _ALPHABET for c in value[len(head) :])
