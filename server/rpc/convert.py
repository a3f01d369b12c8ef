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


def optional_datetime(message: Any, name: str) -> datetime | None:
    """A Timestamp field as an aware datetime, None when unset (or absent from the message)."""
    if name not in message.DESCRIPTOR.fields_by_name or not message.HasField(name):
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
