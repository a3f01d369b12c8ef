"""Standard Webhooks signatures for outbound webhook deliveries: the secrets a trigger signs
with, the `v1,<base64 HMAC-SHA256>` signature of one attempt, and the headers it is sent
with. Pure functions: the sender supplies the message id, the attempt's time and the body."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from secrets import token_bytes

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # what new_secret generates
MIN_KEY_BYTES = 24  # the spec's bounds on a key's decoded size
MAX_KEY_BYTES = 64
SIGNATURE_VERSION = "v1"
# Standard base64 characters; the padding is checked separately so it may be left out.
_BASE64 = re.compile(r"[A-Za-z0-9+/]*")


def new_secret() -> str:
    """A fresh `whsec_` secret over 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(SECRET_BYTES)).decode("ascii")


def _key(secret: str) -> bytes | None:
    """The HMAC key a secret stands for, or None when it is not a well-formed secret."""
    if not secret.startswith(SECRET_PREFIX):
        return None
    encoded = secret[len(SECRET_PREFIX) :]
    unpadded = encoded.rstrip("=")
    padding = -len(unpadded) % 4
    # Padding may be absent (some providers drop it) but, when present, must be exact.
    if not _BASE64.fullmatch(unpadded) or encoded[len(unpadded) :] not in ("", "=" * padding):
        return None
    try:
        key = base64.b64decode(unpadded + "=" * padding, validate=True)
    except binascii.Error:  # a length no base64 text can have
        return None
    return key if MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES else None


def is_secret(text: str) -> bool:
    """Whether text is `whsec_` and the base64 of a key of 24 to 64 bytes."""
    return _key(text) is not None


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256>` of `{msg_id}.{timestamp}.{body}` under the secret's key."""
    key = _key(secret)
    if key is None:
        raise ValueError("not a whsec_ secret of 24 to 64 bytes")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one delivery attempt. Every active secret signs, so a receiver keeps
    verifying while it rotates from the old secret to the new one."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets),
    }
