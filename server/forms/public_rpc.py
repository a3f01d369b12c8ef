"""tnx.public.v1.PublicFormService over gRPC: reads who is calling from the metadata the
gateway forwards, then hands the submission to server/forms/submit.py."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

import grpc
from tnx.public.v1 import public_form_service_pb2 as pb
from tnx.public.v1 import public_form_service_pb2_grpc as pb_grpc

from server.forms.submit import Caller, PublicForms, SubmissionRequest
from server.rpc.convert import struct_to_dict

Context = grpc.aio.ServicerContext[Any, Any]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _peer_ip(peer: str) -> str:
    """ "ipv4:127.0.0.1:5000" / "ipv6:[::1]:5000" → the address; "" for anything else."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return ""


def client_ip(peer: str, forwarded_for: list[str], trusted: Iterable[Network]) -> str:
    """The submitting client's address. The gateway (use_remote_address) appends the
    address it saw to x-forwarded-for, so only the last hop is believed, and only when the
    call comes from the gateway: through the server's unix socket (which only the stack's
    user can open), or from an address in CRM_TRUSTED_PROXIES (a gateway on another host).
    Anything before that hop, or sent straight to the TCP port, is whatever the client wrote."""
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    if peer.startswith("unix:"):
        return hops[-1] if hops else peer
    direct = _peer_ip(peer)
    try:
        address = ipaddress.ip_address(direct)
    except ValueError:
        return peer or "unknown"  # not an IP peer: its own name keys its own bucket
    if hops and any(address in network for network in trusted):
        return hops[-1]
    return direct


class PublicFormServicer(pb_grpc.PublicFormServiceServicer):
    def __init__(self, forms: PublicForms, trusted_proxies: Iterable[str]) -> None:
        self.forms = forms
        self.trusted = [ipaddress.ip_network(cidr, strict=False) for cidr in trusted_proxies]

    async def SubmitForm(
        self, request: pb.SubmitFormRequest, context: Context
    ) -> pb.SubmitFormResponse:
        metadata = [(k, v) for k, v in context.invocation_metadata() or () if isinstance(v, str)]
        first = {k: v for k, v in reversed(metadata)}
        caller = Caller(
            client_ip=client_ip(
                context.peer(), [v for k, v in metadata if k == "x-forwarded-for"], self.trusted
            ),
            origin=first.get("origin", ""),
            user_agent=first.get("user-agent", ""),
        )
        accepted = await self.forms.submit(
            SubmissionRequest(
                slug=request.slug,
                token=request.token,
                fields=struct_to_dict(request.fields),
                honeypot=request.honeypot,
                page_url=request.page_url,
            ),
            caller,
        )
        return pb.SubmitFormResponse(
            submission_id=accepted.submission_id,
            success_message=accepted.success_message,
            redirect_url=accepted.redirect_url,
        )
