"""API errors as tool errors: the model reads the status, the reason and every field at fault,
and can correct its call. (An ordinary exception would reach the model as a bare "Error
executing tool"; a protocol error would not reach it at all.)"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import tnx_crm
from mcp.server.mcpserver.exceptions import ToolError

T = TypeVar("T")

# The API names request-body fields with their message's name first (`lead.email`); the tools
# take those fields as their own parameters (`email`).
_BODY_PREFIXES = ("lead.", "segment.", "activity.")


def tool_field(path: str) -> str:
    for prefix in _BODY_PREFIXES:
        if path.startswith(prefix):
            return path.removeprefix(prefix)
    return path


def describe(error: tnx_crm.ApiError) -> str:
    head = error.code.name + (f" {error.reason}" if error.reason else "")
    lines = [f"{head}: {error.message}"]
    lines += [f"- {tool_field(field)}: {why}" for field, why in error.field_violations]
    return "\n".join(lines)


class ApiToolError(ToolError):
    """A call the API refused, as a tool error; `error` is the API's own."""

    def __init__(self, error: tnx_crm.ApiError) -> None:
        super().__init__(describe(error))
        self.error = error


async def api(call: Awaitable[T]) -> T:
    """Await one API call; an ApiError becomes an ApiToolError."""
    try:
        return await call
    except tnx_crm.ApiError as exc:
        raise ApiToolError(exc) from exc
