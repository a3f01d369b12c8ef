"""The asyncio client: the same shape as `Client`, over a `grpc.aio` channel. Create it inside
the running event loop (`async with AsyncClient() as client:`)."""

# `timeout` is the gRPC deadline sent with the call, not a local asyncio timeout.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from tnx_crm import resources
from tnx_crm._common import DEFAULT_TIMEOUT, Retry, auth_metadata, channel_options, default_target
from tnx_crm.errors import from_rpc_error

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
T = TypeVar("T")


class AsyncClient:
    """`AsyncClient(target, api_key=…)`, defaults as `Client`'s. `channel` (a grpc.aio
    channel) and `metadata` are public: `await client.call(Stub(client.channel).Method, req)`."""

    def __init__(
        self,
        target: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: Retry | None = Retry(),  # noqa: B008 (a frozen dataclass)
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.target = target or default_target()
        self.metadata = auth_metadata(api_key)
        self.timeout = timeout
        opts = channel_options(retry, options)
        self.channel: grpc.aio.Channel = (
            grpc.aio.secure_channel(self.target, credentials, options=opts)
            if credentials is not None
            else grpc.aio.insecure_channel(self.target, options=opts)
        )
        self.leads = resources.AsyncLeads(self)
        self.companies = resources.AsyncCompanies(self)
        self.lists = resources.AsyncLists(self)
        self.imports = resources.AsyncImports(self)
        self.events = resources.AsyncEvents(self)
        self.activities = resources.AsyncActivities(self)
        self.scoring = resources.AsyncScoring(self)
        self.forms = resources.AsyncForms(self)
        self.triggers = resources.AsyncTriggers(self)

    async def close(self) -> None:
        await self.channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def _deadline(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    async def call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        *,
        timeout: float | None = None,
    ) -> Resp:
        """One unary call with the key and the default deadline (or `timeout`)."""
        try:
            return await method(request, timeout=self._deadline(timeout), metadata=self.metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc

    async def call_streaming(
        self,
        method: grpc.aio.StreamUnaryMultiCallable[Req, Resp],
        requests: AsyncIterator[Req],
        *,
        timeout: float | None = None,
    ) -> Resp:
        """A client-streaming call (uploads), with no deadline unless `timeout`."""
        try:
            return await method(requests, timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc

    async def stream(
        self,
        method: grpc.aio.UnaryStreamMultiCallable[Req, Resp],
        request: Req,
        *,
        timeout: float | None = None,
    ) -> AsyncIterator[Resp]:
        """A server stream, with no deadline unless `timeout`; cancelled when left early."""
        call = method(request, timeout=timeout, metadata=self.metadata)
        try:
            async for item in call:
                yield item
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            call.cancel()

    async def paginate(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Req, Any],
        request: Req,
        items: str,
        *,
        cursor_field: str = "cursor",
        timeout: float | None = None,
    ) -> AsyncIterator[Any]:
        """Every item of `items` over all pages (see `Client.paginate`)."""
        page_request = type(request)()
        page_request.CopyFrom(request)
        while True:
            page = await self.call(method, page_request, timeout=timeout)
            found = getattr(page, items)
            for item in found:
                yield item
            if not page.next_cursor or not found:
                return
            setattr(page_request, cursor_field, page.next_cursor)

    async def follow(
        self,
        open_stream: Callable[[], grpc.aio.UnaryStreamCall[Any, T]],
        *,
        reconnect_for: float,
        resume_on_end: bool,
    ) -> AsyncIterator[T]:
        """A server stream opened again after UNAVAILABLE (see `Client.follow`)."""
        failing_since: float | None = None
        delay = 0.1
        while True:
            call = open_stream()
            try:
                async for item in call:
                    failing_since, delay = None, 0.1
                    yield item
                if not resume_on_end:
                    return
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
                if error.code != grpc.StatusCode.UNAVAILABLE:
                    raise error from exc
                now = time.monotonic()
                failing_since = now if failing_since is None else failing_since
                if now - failing_since > reconnect_for:
                    raise error from exc
            finally:
                call.cancel()
            await asyncio.sleep(random.uniform(0, delay))
            delay = min(delay * 2, 5.0)
