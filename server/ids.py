"""Opaque, type-prefixed ids (`lead_…`, `ws_…`) whose body sorts by creation time.

The body is a ULID-style 26-character Crockford base32 string: 48 bits of milliseconds then 80
random bits, so ordering by id is (nearly) creation order and keyset pages follow it.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
BODY_LENGTH = 26


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    millis = time.time_ns() // 1_000_000
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_encode(value, BODY_LENGTH)}"


def looks_like(prefix: str, value: str) -> bool:
    head = f"{prefix}_"
    if not value.startswith(head) or len(value) != len(head) + BODY_LENGTH:
        return False
    return all(c in _ALPHABET for c in value[len(head) :])
