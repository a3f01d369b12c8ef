"""Proto messages and enums as JSON Schema, the way Envoy's transcoder writes and reads them.

The gateway prints JSON with `preserve_proto_field_names` (snake_case names),
`always_print_primitive_fields` (scalars, repeated fields and maps are always present; message
fields and proto3 `optional` scalars only when set) and enums as names. The proto3 JSON
mapping does the rest: 64-bit integers are decimal strings, bytes are base64, Timestamp is an
RFC 3339 string, Struct/Value are free JSON, FieldMask is one comma-separated string.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2

Schema = dict[str, Any]
Field = descriptor_pb2.FieldDescriptorProto

INT32_RANGE = {"minimum": -(2**31), "maximum": 2**31 - 1}
UINT32_RANGE = {"minimum": 0, "maximum": 2**32 - 1}

SCALARS: dict[int, Schema] = {
    Field.TYPE_STRING: {"type": "string"},
    Field.TYPE_BOOL: {"type": "boolean"},
    Field.TYPE_DOUBLE: {"type": "number", "format": "double"},
    Field.TYPE_FLOAT: {"type": "number", "format": "float"},
    Field.TYPE_INT32: {"type": "integer", "format": "int32", **INT32_RANGE},
    Field.TYPE_SINT32: {"type": "integer", "format": "int32", **INT32_RANGE},
    Field.TYPE_SFIXED32: {"type": "integer", "format": "int32", **INT32_RANGE},
    Field.TYPE_UINT32: {"type": "integer", **UINT32_RANGE},
    Field.TYPE_FIXED32: {"type": "integer", **UINT32_RANGE},
    # 64-bit integers do not fit a JSON number exactly: proto3 JSON writes them as strings.
    Field.TYPE_INT64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
    Field.TYPE_SINT64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
    Field.TYPE_SFIXED64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
    Field.TYPE_UINT64: {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"},
    Field.TYPE_FIXED64: {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"},
    Field.TYPE_BYTES: {"type": "string", "format": "byte", "contentEncoding": "base64"},
}

_INT64_STRING = SCALARS[Field.TYPE_INT64]

# Well-known types have their own JSON forms; they are written inline, never as components.
WELL_KNOWN: dict[str, Schema] = {
    ".google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    ".google.protobuf.Duration": {
        "type": "string",
        "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$",
        "description": "A duration in seconds with an `s` suffix, e.g. `1.5s`.",
    },
    ".google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    ".google.protobuf.Value": {"description": "Any JSON value."},
    ".google.protobuf.ListValue": {"type": "array", "items": {}},
    ".google.protobuf.NullValue": {"type": "null"},
    ".google.protobuf.FieldMask": {
        "type": "string",
        "description": "Field paths separated by commas, e.g. `title,custom_fields.industry`.",
    },
    ".google.protobuf.Empty": {"type": "object"},
    ".google.protobuf.Any": {
        "type": "object",
        "required": ["@type"],
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
    ".google.protobuf.DoubleValue": SCALARS[Field.TYPE_DOUBLE],
    ".google.protobuf.FloatValue": SCALARS[Field.TYPE_FLOAT],
    ".google.protobuf.Int64Value": _INT64_STRING,
    ".google.protobuf.UInt64Value": SCALARS[Field.TYPE_UINT64],
    ".google.protobuf.Int32Value": SCALARS[Field.TYPE_INT32],
    ".google.protobuf.UInt32Value": SCALARS[Field.TYPE_UINT32],
    ".google.protobuf.BoolValue": SCALARS[Field.TYPE_BOOL],
    ".google.protobuf.StringValue": SCALARS[Field.TYPE_STRING],
    ".google.protobuf.BytesValue": SCALARS[Field.TYPE_BYTES],
}

HTTP_BODY = ".google.api.HttpBody"


class Types:
    """Every message and enum the request describes, by full name (`.tnx.crm.v1.Lead`)."""

    def __init__(self, files: list[descriptor_pb2.FileDescriptorProto]) -> None:
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        short: dict[str, str] = {}
        for file in files:
            prefix = f".{file.package}" if file.package else ""
            for message in file.message_type:
                self._add_message(message, prefix, f"{prefix}.{message.name}", short)
            for enum in file.enum_type:
                full = f"{prefix}.{enum.name}"
                self.enums[full] = enum
                short[full] = full.removeprefix(prefix + ".")
        # Components are named without the package (`Lead`, `Segment.Membership`) unless two
        # packages define the same name.
        counts = Counter(short.values())
        self.component_names = {
            full: name if counts[name] == 1 else full.lstrip(".") for full, name in short.items()
        }

    def _add_message(
        self, message: descriptor_pb2.DescriptorProto, prefix: str, full: str, short: dict[str, str]
    ) -> None:
        self.messages[full] = message
        short[full] = full.removeprefix(prefix + ".")
        for nested in message.nested_type:
            self._add_message(nested, prefix, f"{full}.{nested.name}", short)
        for enum in message.enum_type:
            self.enums[f"{full}.{enum.name}"] = enum
            short[f"{full}.{enum.name}"] = f"{full}.{enum.name}".removeprefix(prefix + ".")

    def is_map(self, field: Field) -> bool:
        message = self.messages.get(field.type_name)
        return message is not None and message.options.map_entry

    def field(self, message_name: str, field_name: str) -> Field:
        for field in self.messages[message_name].field:
            if field.name == field_name:
                return field
        raise KeyError(f"{message_name} has no field {field_name!r}")


def behaviors(field: Field) -> set[int]:
    return set(field.options.Extensions[field_behavior_pb2.field_behavior])


class Schemas:
    """Builds `components.schemas` on demand: only the types some operation reaches."""

    def __init__(self, types: Types, comments: dict[str, str]) -> None:
        self.types = types
        self.comments = comments
        self.components: dict[str, Schema] = {}

    def ref(self, type_name: str) -> Schema:
        """A reference to a message or enum (well-known types are written out inline)."""
        if type_name in WELL_KNOWN:
            return dict(WELL_KNOWN[type_name])
        name = self.types.component_names[type_name]
        if name not in self.components:
            self.components[name] = {}  # reserved first: messages may refer to themselves
            if type_name in self.types.enums:
                self.components[name] = self.enum_schema(type_name)
            else:
                self.components[name] = self.message_schema(type_name)
        return {"$ref": f"#/components/schemas/{name}"}

    def enum_schema(self, type_name: str) -> Schema:
        enum = self.types.enums[type_name]
        notes = [
            f"- `{value.name}`: {self.comments[f'{type_name}.{value.name}']}"
            for value in enum.value
            if f"{type_name}.{value.name}" in self.comments
        ]
        text = "\n\n".join(part for part in [self.comments.get(type_name, ""), *notes] if part)
        schema: Schema = {"type": "string", "enum": [value.name for value in enum.value]}
        if text:
            schema["description"] = text.replace("\n\n- ", "\n- ")
        return schema

    def message_schema(self, type_name: str, omit: frozenset[str] = frozenset()) -> Schema:
        """The message as a JSON object; `omit` drops top-level fields (bound in the path)."""
        message = self.types.messages[type_name]
        properties: dict[str, Schema] = {}
        required: list[str] = []
        for field in message.field:
            if field.name in omit:
                continue
            properties[field.name] = self.field_schema(type_name, field)
            if field_behavior_pb2.REQUIRED in behaviors(field):
                required.append(field.name)
        schema: Schema = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        if type_name in self.comments:
            schema["description"] = self.comments[type_name]
        return schema

    def value_schema(self, field: Field) -> Schema:
        """One value of the field: the schema of a single element when it is repeated."""
        if field.type in (Field.TYPE_MESSAGE, Field.TYPE_ENUM):
            return self.ref(field.type_name)
        return dict(SCALARS[field.type])

    def field_schema(self, message_name: str, field: Field) -> Schema:
        if self.types.is_map(field):
            entry = self.types.messages[field.type_name]
            schema: Schema = {
                "type": "object",
                "additionalProperties": self.value_schema(entry.field[1]),
            }
        elif field.label == Field.LABEL_REPEATED:
            schema = {"type": "array", "items": self.value_schema(field)}
        else:
            schema = self.value_schema(field)
        text = self._field_description(message_name, field)
        if text:
            schema["description"] = text
        found = behaviors(field)
        if field_behavior_pb2.OUTPUT_ONLY in found:
            schema["readOnly"] = True
        if field_behavior_pb2.INPUT_ONLY in found:
            schema["writeOnly"] = True
        return schema

    def _field_description(self, message_name: str, field: Field) -> str:
        parts = [self.comments.get(f"{message_name}.{field.name}", "")]
        message = self.types.messages[message_name]
        if field.HasField("oneof_index") and not field.proto3_optional:
            oneof = message.oneof_decl[field.oneof_index].name
            members = [
                f"`{f.name}`"
                for f in message.field
                if f.HasField("oneof_index") and f.oneof_index == field.oneof_index
            ]
            parts.append(f"One of `{oneof}`: set at most one of {', '.join(members)}.")
        if field_behavior_pb2.IMMUTABLE in behaviors(field):
            parts.append("Immutable: set on create only.")
        return "\n\n".join(part for part in parts if part)
