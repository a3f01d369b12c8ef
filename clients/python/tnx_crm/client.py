"""The synchronous client: one channel, the API key given once, a default deadline on every
unary call, retries on UNAVAILABLE from the channel's service config, and grpc errors turned
into `ApiError`s. Resource objects (`client.leads`, …) live in `resources/`."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from tnx_crm import resources
from tnx_crm._common import DEFAULT_TIMEOUT, Retry, auth_metadata, channel_options, default_target
from tnx_crm.errors import from_rpc_error

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
T = TypeVar("T")


class Client:
    """`Client(target, api_key=…)`: target defaults to CRM_GRPC_TARGET or
    CRM_GRPC_HOST:CRM_GRPC_PORT (127.0.0.1:50051), the key to CRM_API_KEY. `timeout` is the
    deadline of each unary call in seconds (None: none), which a call's own `timeout=`
    overrides; `retry` the policy for UNAVAILABLE (None: no retries); `credentials` makes
    the channel TLS; `options` are extra gRPC channel options.

    `channel` and `metadata` are public, so any stub can be called with the same
    connection and key: `client.call(SomeStub(client.channel).Method, request)`.
    """

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
        self.channel: grpc.Channel = (
            grpc.secure_channel(self.target, credentials, options=opts)
            if credentials is not None
            else grpc.insecure_channel(self.target, options=opts)
        )
        self.leads = resources.Leads(self)
        self.companies = resources.Companies(self)
        self.lists = resources.Lists(self)
        self.imports = resources.Imports(self)
        self.events = resources.Events(self)
        self.activities = resources.Activities(self)
        self.scoring = resources.Scoring(self)
        self.forms = resources.Forms(self)
        self.triggers = resources.Triggers(self)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _deadline(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    def call(
        self,
        method: grpc.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        *,
        timeout: float | None = None,
    ) -> Resp:
        """One unary call with the key and the default deadline (or `timeout`)."""
        try:
            return method(request, timeout=self._deadline(timeout), metadata=self.metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc

    def call_streaming(
        self,
        method: grpc.StreamUnaryMultiCallable[Req, Resp],
        requests: Iterator[Req],
        *,
        timeout: float | None = None,
    ) -> Resp:
        """A client-streaming call (uploads), with no deadline unless `timeout`."""
        try:
            return method(requests, timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc

    def stream(
        self,
        method: grpc.UnaryStreamMultiCallable[Req, Resp],
        request: Req,
        *,
        timeout: float | None = None,
    ) -> Iterator[Resp]:
        """A server stream, with no deadline unless `timeout`; cancelled when left early."""
        call = method(request, timeout=timeout, metadata=self.metadata)
        try:
            yield from call
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            call.cancel()  # type: ignore[no-untyped-call]  # untyped in grpc-stubs

    def paginate(
        self,
        method: grpc.UnaryUnaryMultiCallable[Req, Any],
        request: Req,
        items: str,
        *,
        cursor_field: str = "cursor",
        timeout: float | None = None,
    ) -> Iterator[Any]:
        """Every item of `items` over all pages, following `next_cursor` until it is empty
        (or a page is empty: the events list's cursor never is)."""
        page_request = type(request)()
        page_request.CopyFrom(request)
        while True:
            page = self.call(method, page_request, timeout=timeout)
            found = getattr(page, items)
            yield from found
            if not page.next_cursor or not found:
                return
            setattr(page_request, cursor_field, page.next_cursor)

    def follow(
        self,
        open_stream: Callable[[], grpc.CallIterator[T]],
        *,
        reconnect_for: float,
        resume_on_end: bool,
    ) -> Iterator[T]:
        """A server stream opened again after UNAVAILABLE (a dropped connection, a restarting
        server), with exponential backoff and full jitter, until it has failed for
        `reconnect_for` seconds in a row. `open_stream` is called for each attempt and
        resumes from wherever the caller has got to. With `resume_on_end` a stream the
        server ends normally is opened again too."""
        failing_since: float | None = None
        delay = 0.1
        while True:
            call = open_stream()
            try:
                for item in call:
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
                call.cancel()  # type: ignore[no-untyped-call]  # untyped in grpc-stubs
            time.sleep(random.uniform(0, delay))
            delay = min(delay * 2, 5.0)
