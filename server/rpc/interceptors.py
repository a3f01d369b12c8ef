"""The request pipeline every RPC goes through: request id, authentication (workspace
context), error mapping and one log line. Servicers stay plain translations."""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import code_pb2

from server.auth.service import Authenticator
from server.db import failures
from server.db.failures import Failure
from server.errors import DomainError, InvalidArgument
from server.observability import metrics
from server.rpc import inbound
from server.rpc.context import current_principal, current_request_id
from server.rpc.errors import internal_status, retry_status, to_status

log = logging.getLogger("tnx.rpc")

# Methods anyone may call without an API key: health, reflection and the public form endpoint.
UNAUTHENTICATED_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
    "/tnx.public.v1.PublicFormService/",
)


class _Call:
    """What the pipeline knows about one call before the servicer runs."""

    def __init__(self, details: grpc.HandlerCallDetails, authenticator: Authenticator) -> None:
        self.method: str = details.method  # type: ignore[attr-defined]
        metadata = dict(details.invocation_metadata or ())  # type: ignore[attr-defined]
        self.authorization: str | None = metadata.get("authorization")  # type: ignore[assignment]
        self.request_id = str(metadata.get("x-request-id") or uuid.uuid4().hex)
        self.needs_auth = not self.method.startswith(UNAUTHENTICATED_PREFIXES)
        self.authenticator = authenticator
        self.started = time.perf_counter()
        self.code = "OK"
        self.workspace_id = "-"

    async def begin(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        current_request_id.set(self.request_id)
        context.set_trailing_metadata((("x-request-id", self.request_id),))
        if self.needs_auth:
            principal = await self.authenticator.authenticate(self.authorization)
            current_principal.set(principal)
            self.workspace_id = principal.workspace_id

    async def fail(self, context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
        """Turn an exception into a status; grpc's own abort passes through untouched."""
        if isinstance(exc, DomainError):
            status = to_status(exc)
        elif (failure := failures.classify(exc)) is Failure.UNAVAILABLE:
            log.warning("database unavailable in %s: %s", self.method, type(exc).__name__)
            status = retry_status(
                "DATABASE_UNAVAILABLE", "the database is unavailable; retry", code_pb2.UNAVAILABLE
            )
        elif failure is Failure.CONFLICT:
            status = retry_status(
                "CONCURRENT_WRITE",
                "a concurrent request changed the same records; retry",
                code_pb2.ABORTED,
            )
        else:
            # Where it failed, but not the error's text: a database error's message can quote
            # the values it was given (emails and the like).
            log.error(
                "unhandled error in %s request_id=%s: %s\n%s",
                self.method,
                self.request_id,
                failures.redacted(exc),
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            status = internal_status("INTERNAL", f"internal error (request id {self.request_id})")
        self.code = status.code.name
        # abort() replaces the trailing metadata set in begin(): the request id goes again.
        trailers = (*status.trailing_metadata, ("x-request-id", self.request_id))
        await context.abort(status.code, status.details, trailers)

    def finish(self) -> None:
        elapsed_s = time.perf_counter() - self.started
        metrics.observe_rpc(self.method, self.code, elapsed_s)
        elapsed_ms = elapsed_s * 1000
        log.info(
            "%s %s %.1fms ws=%s request_id=%s",
            self.method,
            self.code,
            elapsed_ms,
            self.workspace_id,
            self.request_id,
        )


Behavior = Callable[..., Any]


@dataclass(frozen=True)
class _Undecodable:
    """A request whose bytes are not its message (bad wire format, bad UTF-8 in a string).
    Envoy's transcoder forwards some JSON it should refuse (a JSON object as a
    map<string, string> value becomes corrupt protobuf); gRPC would answer that with UNKNOWN
    (HTTP 500), so the call answers INVALID_ARGUMENT instead."""

    type_name: str
    why: str


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    # Generated handlers deserialize with `SomeRequest.FromString`, bound to the class.
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    type_name = str(getattr(descriptor, "full_name", "request"))

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:
            if "UTF-8" in str(exc):  # Envoy passes %FF in a path or query on as it is
                return _Undecodable(type_name, "a string is not valid UTF-8")
            why = "a field has a value of the wrong type (e.g. an object where a map holds strings)"
            return _Undecodable(type_name, why)

    return deserialize


def _malformed(request: _Undecodable) -> InvalidArgument:
    return InvalidArgument(
        message=f"the request is not a valid {request.type_name} message: {request.why}",
        reason="REQUEST_MALFORMED",
    )


def _checked_one(request: Any) -> Any:
    """The request once decodable and free of values no servicer can store (inbound)."""
    if isinstance(request, _Undecodable):
        raise _malformed(request)
    inbound.check(request)
    return request


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _checked_one(request)


def _checked(request: Any, streaming: bool) -> Any:
    return _checked_stream(request) if streaming else _checked_one(request)


def _wrap_unary(
    call_factory: Callable[[], _Call], inner: Behavior, streaming: bool = False
) -> Behavior:
    async def behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        call = call_factory()
        try:
            await call.begin(context)
            return await inner(_checked(request, streaming), context)
        except grpc.aio.AbortError:
            call.code = "ABORTED_BY_SERVICER"
            raise
        except Exception as exc:
            await call.fail(context, exc)
        finally:
            call.finish()

    return behavior


def _wrap_streaming(
    call_factory: Callable[[], _Call], inner: Behavior, streaming: bool = False
) -> Behavior:
    async def behavior(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        call = call_factory()
        try:
            await call.begin(context)
            async for item in inner(_checked(request, streaming), context):
                yield item
        except grpc.aio.AbortError:
            call.code = "ABORTED_BY_SERVICER"
            raise
        except Exception as exc:
            await call.fail(context, exc)
        finally:
            call.finish()

    return behavior


class RequestInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler

        def factory() -> _Call:
            return _Call(handler_call_details, self.authenticator)

        codecs = {
            "request_deserializer": _lenient(handler.request_deserializer),
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(factory, handler.unary_unary), **codecs
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(factory, handler.stream_unary, streaming=True), **codecs
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_streaming(factory, handler.unary_stream), **codecs
            )
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            _wrap_streaming(factory, handler.stream_stream, streaming=True), **codecs
        )
