"""Per-request context the interceptor establishes for servicers."""

from __future__ import annotations

from contextvars import ContextVar

from server.auth.service import Principal

current_principal: ContextVar[Principal | None] = ContextVar("current_principal", default=None)
current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")


def principal() -> Principal:
    """Who is calling (workspace and API key id); only reachable in methods the interceptor
    authenticated. Long-lived calls re-check it with `Authenticator.still_valid`."""
    found = current_principal.get()
    if found is None:
        raise RuntimeError("no authenticated principal in this context")
    return found


def workspace_id() -> str:
    """The calling workspace; only reachable in methods the interceptor authenticated."""
    return principal().workspace_id
