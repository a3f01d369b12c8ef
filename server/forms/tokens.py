"""Embed tokens: which form, for which origin, until when, HMAC-signed with a secret every
server process shares. A token proves the snippet was issued by an API-key holder for that
form and origin; the page's Origin header must match it on submission."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

SECRET_NAME = "form_token"
# Domain separation: the same secret never signs anything else by accident.
_CONTEXT = b"tnx.form-token.v1\x00"
MAX_TOKEN_CHARS = 2048


class TokenInvalid(Exception):
    """Not a token this deployment signed (malformed, forged or altered)."""


@dataclass(frozen=True)
class Claims:
    slug: str
    origin: str
    expires_at: int  # Unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, body: bytes) -> bytes:
    return hmac.new(secret, _CONTEXT + body, hashlib.sha256).digest()


def issue(secret: bytes, claims: Claims) -> str:
    body = json.dumps(
        {"s": claims.slug, "o": claims.origin, "e": claims.expires_at}, separators=(",", ":")
    ).encode()
    return f"{_b64(body)}.{_b64(_mac(secret, body))}"


def verify(secret: bytes, token: str) -> Claims:
    """The claims of a token whose signature checks out (compared in constant time).
    Expiry and the slug/origin binding are the caller's to check against the request."""
    if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise TokenInvalid
    body_part, mac_part = token.split(".")
    try:
        body, mac = _unb64(body_part), _unb64(mac_part)
    except (ValueError, binascii.Error):
        raise TokenInvalid from None
    if not hmac.compare_digest(mac, _mac(secret, body)):
        raise TokenInvalid
    try:
        data = json.loads(body)
        claims = Claims(slug=data["s"], origin=data["o"], expires_at=data["e"])
    except (ValueError, KeyError, TypeError):
        raise TokenInvalid from None
    if not isinstance(claims.slug, str) or not isinstance(claims.origin, str):
        raise TokenInvalid
    if not isinstance(claims.expires_at, int):
        raise TokenInvalid
    return claims
