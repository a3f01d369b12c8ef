"""Page sizes and opaque, signed keyset cursors.

A cursor carries the position after which the next page starts, bound to the workspace and
to a fingerprint of the query it came from, and HMAC-signed with a secret every server
process shares (stored in the database). A cursor that was forged, altered, issued to
another workspace or for a different query is INVALID_ARGUMENT, never silently reinterpreted.
Keyset does what every list does with them: read the position, cut a page, cursor onward.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

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


Item = TypeVar("Item")


@dataclass(frozen=True)
class Keyset:
    """The cursors of one keyset list: the position a page starts after, and the cursor to
    the page that follows. `field` names the request field the cursor came in."""

    codec: CursorCodec
    workspace_id: str
    query: str
    field: str = "cursor"

    def malformed(self) -> InvalidArgument:
        """The error for a signed position this list can't resume at: the wrong shape, or a
        value out of range (which only the caller can judge)."""
        return InvalidArgument.on(self.field, "malformed cursor", reason="CURSOR_INVALID")

    def position(self, cursor: str, *shape: type) -> list[Any] | None:
        """The position `cursor` carries, one value of each type in `shape`; None when there
        is no cursor (the first page)."""
        if not cursor:
            return None
        position = self.codec.decode(
            cursor, workspace_id=self.workspace_id, query=self.query, field=self.field
        )
        # A signed cursor of this query always has the shape; checking it anyway keeps a
        # change of shape between releases from reaching SQL as the wrong type.
        if len(position) != len(shape) or not all(
            isinstance(value, kind) for value, kind in zip(position, shape, strict=True)
        ):
            raise self.malformed()
        return position

    def after_id(self, cursor: str) -> str | None:
        """The id a page continues from, for lists ordered by id alone (either way)."""
        position = self.position(cursor, str)
        return None if position is None else position[0]

    def page(
        self, rows: Sequence[Item], size: int, key: Callable[[Item], list[Any]]
    ) -> tuple[list[Item], str]:
        """The first `size` of `rows` and the cursor after the last of them, or "" when
        nothing follows. Fetch size + 1 rows: the extra one only says another page exists."""
        found = list(rows[:size])
        if len(rows) <= size:
            return found, ""
        position = key(found[-1])
        return found, self.codec.encode(
            workspace_id=self.workspace_id, query=self.query, position=position
        )
