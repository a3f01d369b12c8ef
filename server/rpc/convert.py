"""Small proto conversions every servicer needs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, timestamp_pb2

from server.errors import InvalidArgument

# google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
MIN_SECONDS = -62_135_596_800
MAX_SECONDS = 253_402_300_799
TIMESTAMP_RANGE = (
    "out of range: a timestamp is from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z, "
    "with nanos from 0 to 999999999"
)


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def has_field(message: Any, name: str) -> bool:
    """The message type has this field and it is set (for optional and message fields)."""
    return name in message.DESCRIPTOR.fields_by_name and bool(message.HasField(name))


def timestamp_in_range(stamp: timestamp_pb2.Timestamp) -> bool:
    return MIN_SECONDS <= stamp.seconds <= MAX_SECONDS and 0 <= stamp.nanos <= 999_999_999


def to_datetime(stamp: timestamp_pb2.Timestamp, field_name: str) -> datetime:
    """An aware datetime; a Timestamp outside its range is INVALID_ARGUMENT naming the field
    (protobuf itself raises a bare ValueError, which would be an internal error)."""
    if not timestamp_in_range(stamp):
        raise InvalidArgument.on(field_name, TIMESTAMP_RANGE, reason="TIMESTAMP_OUT_OF_RANGE")
    return stamp.ToDatetime(tzinfo=UTC)


def optional_datetime(message: Any, name: str) -> datetime | None:
    """A Timestamp field as an aware datetime, None when unset (or absent from the message)."""
    if not has_field(message, name):
        return None
    return to_datetime(getattr(message, name), name)


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
