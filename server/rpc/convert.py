"""Small proto conversions every servicer needs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, timestamp_pb2


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def has_field(message: Any, name: str) -> bool:
    """The message type has this field and it is set (for optional and message fields)."""
    return name in message.DESCRIPTOR.fields_by_name and bool(message.HasField(name))


def optional_datetime(message: Any, name: str) -> datetime | None:
    """A Timestamp field as an aware datetime, None when unset (or absent from the message)."""
    if not has_field(message, name):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, name)
    return stamp.ToDatetime(tzinfo=UTC)


def plain_json(value: Any) -> Any:
    """google.protobuf.Value/Struct carry every number as a double; a whole number is an
    int again here, so 12 stays 12 (not 12.0) in storage, filters and exports."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: plain_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_json(item) for item in value]
    return value


def struct_to_dict(message: Any) -> dict[str, Any]:
    result: dict[str, Any] = plain_json(json_format.MessageToDict(message))
    return result


def update_paths(resource: Any, mask: Any) -> tuple[list[str], bool]:
    """The paths an Update call changes and whether the client named them: the mask's paths,
    or (AIP-134) every field of the resource given a value, except its id."""
    if mask.paths:
        return list(mask.paths), True
    return [field.name for field, _ in resource.ListFields() if field.name != "id"], False
