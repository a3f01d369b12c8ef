"""Outbound HTTP to customer-configured URLs (webhooks, Slack, enrichment) behind an SSRF
guard: client.OutboundClient sends, guard.check_url checks a URL when it is saved."""

from server.outbound.client import OutboundClient, OutboundError, Response
from server.outbound.guard import (
    AllowList,
    GuardedBackend,
    OutboundRefused,
    check_url,
    refusal,
)

__all__ = [
    "AllowList",
    "GuardedBackend",
    "OutboundClient",
    "OutboundError",
    "OutboundRefused",
    "Response",
    "check_url",
    "refusal",
]
