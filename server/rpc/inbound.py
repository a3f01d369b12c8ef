"""What every decoded request message must be before a servicer sees it: no NUL character in
any text (PostgreSQL stores none, so each place that stores text would fail on its own), no
Timestamp outside its range and no number in a Struct that JSON cannot hold. One walk over
the message, nested messages, repeated and map fields and Struct values included, so no
servicer has to remember; bytes fields (uploads) may hold anything.

A refusal is INVALID_ARGUMENT with a field violation per bad value, named by its proto path
(`lead.custom_fields.x`, `lead_ids[3]`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from server.errors import FieldViolation, InvalidArgument
from server.fields import NUL_MESSAGE
from server.rpc.convert import TIMESTAMP_RANGE, timestamp_in_range

NUL_DESCRIPTION = f"{NUL_MESSAGE} (U+0000)"
NOT_FINITE = "must be a finite number (JSON has no NaN or Infinity)"
MAX_VIOLATIONS = 20  # enough to act on; a request of 10,000 bad strings needs no 10,000 lines

# Repeated fields whose items the servicer checks one by one, each bad item getting its own
# result while the others are recorded (the API's contract for these batches): only what it
# cannot see is refused here, a Timestamp out of range (it reaches the servicer as no date).
PER_ITEM = {
    ("tnx.crm.v1.BatchCreateActivitiesRequest", "activities"),
    ("tnx.crm.v1.StreamActivitiesRequest", "activities"),
}


def check(request: Any) -> None:
    """Raise InvalidArgument for the bad values in the request (a protobuf message)."""
    if not isinstance(request, Message):
        return
    walk = _Walk()
    walk.on_message(request, "", strict=True)
    if walk.found:
        found, more = walk.found, walk.total - 3
        raise InvalidArgument(
            message="; ".join(f"{bad.field}: {bad.description}" for bad in found[:3])
            + (f" (and {more} more)" if more > 0 else ""),
            reason=found[0].reason,
            violations=[FieldViolation(bad.field, bad.description) for bad in found],
        )


@dataclass(frozen=True)
class _Bad:
    field: str
    description: str
    reason: str


def _path(prefix: str, name: str) -> str:
    # A NUL in a map or Struct key is shown as its JSON escape, so the path stays readable.
    name = name.replace("\x00", "\\u0000")
    return f"{prefix}.{name}" if prefix else name


@dataclass
class _Walk:
    """One walk over a request; `strict` is False inside PER_ITEM fields."""

    found: list[_Bad] = field(default_factory=list)
    total: int = 0

    def bad(self, path: str, description: str, reason: str) -> None:
        self.total += 1
        if len(self.found) < MAX_VIOLATIONS:
            self.found.append(_Bad(path, description, reason))

    def on_text(self, value: str, path: str, strict: bool) -> None:
        if strict and "\x00" in value:
            self.bad(path, NUL_DESCRIPTION, "NUL_CHARACTER")

    def on_message(self, message: Message, path: str, strict: bool) -> None:
        kind = message.DESCRIPTOR.full_name
        if kind == "google.protobuf.Timestamp":
            if not timestamp_in_range(message):  # type: ignore[arg-type]
                self.bad(path, TIMESTAMP_RANGE, "TIMESTAMP_OUT_OF_RANGE")
        elif kind == "google.protobuf.Value":
            self.on_json(message, path, strict)
        elif kind == "google.protobuf.Struct":
            for key, value in message.fields.items():  # type: ignore[attr-defined]
                self.on_text(key, _path(path, key), strict)
                self.on_json(value, _path(path, key), strict)
        elif kind == "google.protobuf.ListValue":
            for index, value in enumerate(message.values):  # type: ignore[attr-defined]
                self.on_json(value, f"{path}[{index}]", strict)
        else:
            for descriptor, value in message.ListFields():
                inner = strict and (kind, descriptor.name) not in PER_ITEM
                self.on_field(descriptor, value, _path(path, descriptor.name), inner)

    def on_field(self, descriptor: FieldDescriptor, value: Any, path: str, strict: bool) -> None:
        entry = descriptor.message_type
        if entry is not None and entry.GetOptions().map_entry:
            value_field = entry.fields_by_name["value"]
            for key, item in value.items():
                if isinstance(key, str):
                    self.on_text(key, _path(path, key), strict)
                self.on_single(value_field, item, _path(path, str(key)), strict)
        elif descriptor.is_repeated:
            for index, item in enumerate(value):
                self.on_single(descriptor, item, f"{path}[{index}]", strict)
        else:
            self.on_single(descriptor, value, path, strict)

    def on_single(self, descriptor: FieldDescriptor, value: Any, path: str, strict: bool) -> None:
        if descriptor.type == FieldDescriptor.TYPE_STRING:
            self.on_text(value, path, strict)
        elif descriptor.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
            self.on_message(value, path, strict)

    def on_json(self, value: Any, path: str, strict: bool) -> None:
        which = value.WhichOneof("kind")
        if which == "string_value":
            self.on_text(value.string_value, path, strict)
        elif which == "number_value" and strict and not math.isfinite(value.number_value):
            self.bad(path, NOT_FINITE, "NUMBER_NOT_FINITE")
        elif which == "struct_value":
            self.on_message(value.struct_value, path, strict)
        elif which == "list_value":
            self.on_message(value.list_value, path, strict)
