"""Pages of results small enough for a model's context: at most MAX_ITEMS items and about
MAX_RESULT_BYTES of JSON, with a cursor that continues exactly after the last item shown.

The API pages by opaque keyset cursors, which can only continue after a whole page. When the
byte cap cuts a page short, the tool's cursor says "that API page again, after item X (the
n-th)"; otherwise it wraps the API's next_cursor. Continuing after X's id rather than after
n items keeps the place when earlier items of that page drop out in between (an archived
lead); n is the fallback when X itself has gone. The API still checks its own cursor (signed,
bound to the workspace and the query), so a tool cursor reused with other arguments is
refused as the API would refuse it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

from server.mcp.schemas import Identified

MAX_ITEMS = 50
MAX_RESULT_BYTES = 25 * 1024
API_MAX_LIMIT = 1000  # the API clamps larger pages; a skip stays below it
_FORGED = "cursor: not a next_cursor this tool returned; start without one"


Item = TypeVar("Item", bound=Identified)
# (API cursor, page size) -> (items, the API's next_cursor)
Fetch = Callable[[str, int], Awaitable[tuple[Sequence[Item], str]]]


@dataclass(frozen=True)
class Position:
    api_cursor: str = ""
    skip: int = 0  # items of that API page already shown
    after: str = ""  # the id of the last of them


@dataclass(frozen=True)
class Page(Generic[Item]):
    items: list[Item]
    next_cursor: str
    truncated: bool  # cut short by the byte cap although more items follow


def encode(position: Position) -> str:
    data = {"c": position.api_cursor, "s": position.skip, "a": position.after}
    raw = json.dumps(data, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor: str) -> Position:
    if not cursor:
        return Position()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        position = Position(api_cursor=str(data["c"]), skip=int(data["s"]), after=str(data["a"]))
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ToolError(_FORGED) from None
    if not 0 <= position.skip < API_MAX_LIMIT:
        raise ToolError(_FORGED)
    return position


def fit(items: Sequence[BaseModel], budget: int = MAX_RESULT_BYTES) -> int:
    """How many of the items, from the first, fit in `budget` bytes of JSON (at least one)."""
    used = 0
    for count, item in enumerate(items):
        used += len(item.model_dump_json().encode()) + 1
        if used > budget:
            return max(count, 1)
    return len(items)


def _start(found: Sequence[Identified], position: Position) -> int:
    for index, item in enumerate(found):
        if item.id == position.after:
            return index + 1
    return position.skip


async def page(fetch: Fetch[Item], cursor: str, limit: int) -> Page[Item]:
    position = decode(cursor)
    limit = max(1, min(limit, MAX_ITEMS, API_MAX_LIMIT - position.skip))
    found, api_next = await fetch(position.api_cursor, position.skip + limit)
    start = _start(found, position) if position.after else 0
    items = list(found[start : start + limit])
    shown = fit(items)
    if shown < len(items) or start + limit < len(found):
        last = items[shown - 1]
        following = Position(position.api_cursor, start + shown, last.id)
        return Page(items[:shown], encode(following), truncated=shown < len(items))
    return Page(items, encode(Position(api_next)) if api_next else "", truncated=False)
