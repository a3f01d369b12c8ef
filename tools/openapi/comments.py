"""Proto comments (SourceCodeInfo) by the full name of what they document."""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf import descriptor_pb2

# Field numbers inside descriptor.proto: the steps of a SourceCodeInfo location path.
FILE_MESSAGE, FILE_ENUM, FILE_SERVICE = 4, 5, 6
MESSAGE_FIELD, MESSAGE_NESTED, MESSAGE_ENUM = 2, 3, 4
ENUM_VALUE = 2
SERVICE_METHOD = 2


def _clean(text: str) -> str:
    """protoc keeps the space after `//` on each line; drop it and the blank edges."""
    lines = [line[1:] if line.startswith(" ") else line for line in text.splitlines()]
    return "\n".join(lines).strip()


def _walk_message(
    message: descriptor_pb2.DescriptorProto, name: str, path: tuple[int, ...]
) -> Iterator[tuple[tuple[int, ...], str]]:
    yield path, name
    for i, field in enumerate(message.field):
        yield (*path, MESSAGE_FIELD, i), f"{name}.{field.name}"
    for i, nested in enumerate(message.nested_type):
        yield from _walk_message(nested, f"{name}.{nested.name}", (*path, MESSAGE_NESTED, i))
    for i, enum in enumerate(message.enum_type):
        yield from _walk_enum(enum, f"{name}.{enum.name}", (*path, MESSAGE_ENUM, i))


def _walk_enum(
    enum: descriptor_pb2.EnumDescriptorProto, name: str, path: tuple[int, ...]
) -> Iterator[tuple[tuple[int, ...], str]]:
    yield path, name
    for i, value in enumerate(enum.value):
        yield (*path, ENUM_VALUE, i), f"{name}.{value.name}"


def _walk_file(file: descriptor_pb2.FileDescriptorProto) -> Iterator[tuple[tuple[int, ...], str]]:
    prefix = f".{file.package}" if file.package else ""
    for i, message in enumerate(file.message_type):
        yield from _walk_message(message, f"{prefix}.{message.name}", (FILE_MESSAGE, i))
    for i, enum in enumerate(file.enum_type):
        yield from _walk_enum(enum, f"{prefix}.{enum.name}", (FILE_ENUM, i))
    for i, service in enumerate(file.service):
        name = f"{prefix}.{service.name}"
        yield (FILE_SERVICE, i), name
        for j, method in enumerate(service.method):
            yield (FILE_SERVICE, i, SERVICE_METHOD, j), f"{name}.{method.name}"


def collect(files: list[descriptor_pb2.FileDescriptorProto]) -> dict[str, str]:
    """`.pkg.Message`, `.pkg.Message.field`, `.pkg.Service.Method`, … -> its comment."""
    comments: dict[str, str] = {}
    for file in files:
        by_path = {tuple(location.path): location for location in file.source_code_info.location}
        for path, name in _walk_file(file):
            location = by_path.get(path)
            if location is None:
                continue
            parts = [_clean(location.leading_comments), _clean(location.trailing_comments)]
            text = "\n\n".join(part for part in parts if part)
            if text:
                comments[name] = text
    return comments
