"""Per-request context the interceptor establishes for servicers."""

from __future__ import annotations

from contextvars import ContextVar

from server.auth.service import Principal

current_principal: ContextVar[Principal | None] = ContextVar("current_principal", default=None)
current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")


def workspace_id() -> str:
    """The calling workspace; only reachable in methods the interceptor authenticated."""
    principal = current_principal.get()
    if principal is None:
        raise RuntimeError("no authenticated principal in this context")
    return principal.workspace_id
