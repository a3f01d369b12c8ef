"""Every RPC of the public API, and a request for each with one bad value planted in one of
its string fields, found from the descriptors (so a new RPC or field is covered unasked)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import tnx.crm.v1
import tnx.public.v1
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

NUL_TEXT = "bad\x00text"
MAX_DEPTH = 6
# Message types whose strings are not free text, or that carry no strings of their own.
OPAQUE = {"google.protobuf.Any", "google.protobuf.Timestamp", "google.protobuf.Duration"}


@dataclass(frozen=True)
class Rpc:
    method: MethodDescriptor

    @property
    def path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.input_type)

    def __str__(self) -> str:
        return f"{self.method.containing_service.name}.{self.method.name}"

    def call(self, channel: grpc.Channel, payload: bytes, metadata: Any) -> None:
        """Send raw request bytes; read the whole answer (an error raises RpcError)."""
        identity: Callable[[bytes], bytes] = lambda data: data  # noqa: E731
        codecs = {"request_serializer": identity, "response_deserializer": identity}
        streams_in, streams_out = self.method.client_streaming, self.method.server_streaming
        if streams_in and streams_out:
            list(channel.stream_stream(self.path, **codecs)(iter([payload]), metadata=metadata))
        elif streams_in:
            channel.stream_unary(self.path, **codecs)(iter([payload]), metadata=metadata)
        elif streams_out:
            list(channel.unary_stream(self.path, **codecs)(payload, metadata=metadata, timeout=10))
        else:
            channel.unary_unary(self.path, **codecs)(payload, metadata=metadata, timeout=10)


def rpcs() -> list[Rpc]:
    found: list[Rpc] = []
    for package in (tnx.crm.v1, tnx.public.v1):
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.endswith("_service_pb2"):
                continue
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for service in module.DESCRIPTOR.services_by_name.values():
                found.extend(Rpc(method) for method in service.methods)
    return found


@dataclass(frozen=True)
class Planted:
    request: Message
    path: str  # the proto path the server must name


def plantings(rpc: Rpc) -> Iterator[Planted]:
    """A request per string reachable in the request type, holding NUL_TEXT there."""
    for steps, path in _string_paths(rpc.method.input_type, (), "", set()):
        request = rpc.request_class()
        _plant(request, steps)
        yield Planted(request, path)


Step = tuple[FieldDescriptor, str]  # the field, and how its leaf is set


def _string_paths(
    descriptor: Descriptor, steps: tuple[Step, ...], prefix: str, seen: set[str]
) -> Iterator[tuple[tuple[Step, ...], str]]:
    if len(steps) >= MAX_DEPTH or descriptor.full_name in seen:
        return
    seen = seen | {descriptor.full_name}
    for field in descriptor.fields:
        name = f"{prefix}{field.name}"
        kind = field.message_type.full_name if field.message_type else ""
        if field.type == FieldDescriptor.TYPE_STRING:
            yield (*steps, (field, "text")), f"{name}[0]" if field.is_repeated else name
        elif kind == "google.protobuf.Struct":
            yield (*steps, (field, "struct")), f"{name}.x"
        elif kind == "google.protobuf.Value":
            yield (*steps, (field, "value")), name
        elif kind == "google.protobuf.FieldMask":
            yield (*steps, (field, "mask")), f"{name}.paths[0]"
        elif field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            if value.type == FieldDescriptor.TYPE_STRING:
                yield (*steps, (field, "map")), f"{name}.k"
        elif field.message_type is not None and kind not in OPAQUE:
            inner = f"{name}[0]." if field.is_repeated else f"{name}."
            yield from _string_paths(field.message_type, (*steps, (field, "into")), inner, seen)


def _plant(message: Any, steps: tuple[Step, ...]) -> None:
    for field, how in steps[:-1]:
        assert how == "into"
        message = getattr(message, field.name)
        message = message.add() if field.is_repeated else message
    field, how = steps[-1]
    if how == "text" and field.is_repeated:
        getattr(message, field.name).append(NUL_TEXT)
    elif how == "text":
        setattr(message, field.name, NUL_TEXT)
    elif how == "struct":
        getattr(message, field.name)["x"] = NUL_TEXT
    elif how == "value":
        getattr(message, field.name).string_value = NUL_TEXT
    elif how == "mask":
        getattr(message, field.name).paths.append(NUL_TEXT)
    else:
        getattr(message, field.name)["k"] = NUL_TEXT
