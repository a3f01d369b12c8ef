"""The API key format: `tnx_` + 32 random base62 chars + a 6-char base62 CRC32 checksum.

The checksum lets secret scanners (and our own auth) tell a real-looking key from a typo
without a database round trip. Only the lookup prefix and a SHA-256 of the whole key are
stored; the key itself is shown once.
"""

from __future__ import annotations

import hashlib
import secrets
import zlib

KEY_PREFIX = "tnx_"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_LENGTH = 32
_CHECKSUM_LENGTH = 6
LOOKUP_LENGTH = len(KEY_PREFIX) + 8  # `tnx_` + 8 chars: stored, indexed, shown in listings
KEY_LENGTH = len(KEY_PREFIX) + _RANDOM_LENGTH + _CHECKSUM_LENGTH


def _base62(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 62)
        chars.append(_BASE62[digit])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), _CHECKSUM_LENGTH)


def generate() -> str:
    body = "".join(secrets.choice(_BASE62) for _ in range(_RANDOM_LENGTH))
    return f"{KEY_PREFIX}{body}{_checksum(body)}"


def is_well_formed(key: str) -> bool:
    if len(key) != KEY_LENGTH or not key.startswith(KEY_PREFIX):
        return False
    body = key[len(KEY_PREFIX) : len(KEY_PREFIX) + _RANDOM_LENGTH]
    checksum = key[len(KEY_PREFIX) + _RANDOM_LENGTH :]
    if any(c not in _BASE62 for c in body):
        return False
    return secrets.compare_digest(checksum, _checksum(body))


def lookup_prefix(key: str) -> str:
    return key[:LOOKUP_LENGTH]


def secret_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
