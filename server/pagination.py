"""Page sizes and opaque, signed keyset cursors.

A cursor carries the position after which the next page starts, bound to the workspace and
to a fingerprint of the query it came from, and HMAC-signed with a secret every server
process shares (stored in the database). A cursor that was forged, altered, issued to
another workspace or for a different query is INVALID_ARGUMENT, never silently reinterpreted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from server.errors import InvalidArgument

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


def page_size(limit: int, *, field: str = "limit") -> int:
    if limit < 0:
        raise InvalidArgument.on(field, "must not be negative", reason="LIMIT_NEGATIVE")
    if limit == 0:
        return DEFAULT_LIMIT
    return min(limit, MAX_LIMIT)


def fingerprint(*parts: object) -> str:
    """A short stable digest of the query parameters a cursor belongs to."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CursorCodec:
    secret: bytes

    def encode(self, *, workspace_id: str, query: str, position: list[Any]) -> str:
        body = json.dumps({"w": workspace_id, "q": query, "p": position}, separators=(",", ":"))
        raw = body.encode()
        mac = hmac.new(self.secret, raw, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + raw).decode().rstrip("=")

    def decode(
        self, cursor: str, *, workspace_id: str, query: str, field: str = "cursor"
    ) -> list[Any]:
        invalid = InvalidArgument.on(
            field, "not a cursor this query issued", reason="CURSOR_INVALID"
        )
        try:
            blob = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (ValueError, TypeError):
            raise invalid from None
        mac, raw = blob[:16], blob[16:]
        expected = hmac.new(self.secret, raw, hashlib.sha256).digest()[:16]
        if len(mac) != 16 or not hmac.compare_digest(mac, expected):
            raise invalid
        data = json.loads(raw)
        if data.get("w") != workspace_id or data.get("q") != query:
            raise invalid
        position = data.get("p")
        if not isinstance(position, list):
            raise invalid
        return position
