"""`google.api.http` bindings as OpenAPI operations, with Envoy's transcoding rules.

A binding's path variables bind request fields (`{id}`, `{lead.id}`, `{name=shelves/*}`);
`body: "*"` puts every other field in the JSON body, `body: "field"` only that one; whatever
is bound by neither is a query parameter (nested fields by dotted name, repeated fields by
repeating the parameter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2

from . import gateway
from .schema import HTTP_BODY, WELL_KNOWN, Field, Schema, Schemas, behaviors

VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)(?:=([^}]*))?\}")
# Well-known types that are one scalar in JSON, so the transcoder takes them in a query string.
QUERY_WELL_KNOWN = {
    name
    for name, schema in WELL_KNOWN.items()
    if schema.get("type") in ("string", "number", "integer", "boolean")
}


@dataclass
class Binding:
    """One HTTP route of an RPC."""

    rpc: str  # `.tnx.crm.v1.LeadService.GetLead`
    service: str  # `LeadService`
    method: descriptor_pb2.MethodDescriptorProto
    verb: str
    template: str
    body: str
    operation_id: str


@dataclass
class PathVariable:
    field_path: str
    pattern: str | None  # None: one segment (`*`)
    name: str = ""


@dataclass
class Route:
    path: str  # OpenAPI form: `/api/v1/crm/leads/{id}:archive`
    variables: list[PathVariable] = field(default_factory=list)


def bindings_of(
    rpc: str, service: str, method: descriptor_pb2.MethodDescriptorProto, operation_id: str
) -> list[Binding]:
    if not method.options.HasExtension(annotations_pb2.http):
        return []
    rule: http_pb2.HttpRule = method.options.Extensions[annotations_pb2.http]
    found = []
    for index, each in enumerate([rule, *rule.additional_bindings]):
        kind = each.WhichOneof("pattern")
        if kind is None:
            continue
        if kind == "custom":
            verb, template = each.custom.kind.lower(), each.custom.path
        else:
            verb, template = kind, getattr(each, kind)
        op_id = operation_id if index == 0 else f"{operation_id}_{index}"
        found.append(Binding(rpc, service, method, verb, template, each.body, op_id))
    return found


def _segment_regex(pattern: str) -> str:
    parts = []
    for segment in pattern.split("/"):
        parts.append({"*": "[^/]+", "**": ".+"}.get(segment, re.escape(segment)))
    return "^" + "/".join(parts) + "$"


class RouteNames:
    """OpenAPI path parameter names. A name never reaches the wire, so it is chosen to keep
    templates distinct: OpenAPI forbids two paths that differ only in parameter names
    (`/leads/{id}` and `/leads/{lead.id}`), so the first binding of a shape names it."""

    def __init__(self) -> None:
        self.by_shape: dict[str, list[str]] = {}

    def route(self, template: str) -> Route:
        variables = [PathVariable(m.group(1), m.group(2)) for m in VARIABLE.finditer(template)]
        leaves = [v.field_path.rsplit(".", 1)[-1] for v in variables]
        for variable, leaf in zip(variables, leaves, strict=True):
            variable.name = (
                leaf if leaves.count(leaf) == 1 else variable.field_path.replace(".", "_")
            )
        shape = VARIABLE.sub("{}", template)
        names = self.by_shape.setdefault(shape, [v.name for v in variables])
        for variable, name in zip(variables, names, strict=True):
            variable.name = name
        iterator = iter(variables)
        path = VARIABLE.sub(lambda _: "{" + next(iterator).name + "}", template)
        return Route(path, variables)


class Operations:
    def __init__(self, schemas: Schemas) -> None:
        self.schemas = schemas
        self.types = schemas.types
        self.names = RouteNames()

    def operation(self, binding: Binding) -> tuple[str, Schema]:
        route = self.names.route(binding.template)
        method = binding.method
        public = route.path.startswith(gateway.PUBLIC_PREFIX)
        op: Schema = {"operationId": binding.operation_id, "tags": [binding.service]}
        text = self.schemas.comments.get(binding.rpc, "")
        if text:
            op["summary"] = _first_sentence(text)
            op["description"] = text
        if public:
            op["security"] = []
        parameters = [
            self._path_parameter(method.input_type, v, binding.body) for v in route.variables
        ]
        bound = {v.field_path for v in route.variables}
        if binding.body != "*":
            parameters += self._query_parameters(method.input_type, bound, binding.body)
        if parameters:
            op["parameters"] = parameters
        body = self._request_body(binding, bound)
        if body is not None:
            op["requestBody"] = body
        op["responses"] = {
            "200": self._success(binding, route.path),
            **gateway.error_responses(binding.rpc, public=public, has_body=body is not None),
        }
        return route.path, op

    # -- parameters ------------------------------------------------------------------------

    def _resolve(self, message: str, field_path: str) -> tuple[str, Field]:
        """The message holding the last field of a dotted path, and that field."""
        *parents, last = field_path.split(".")
        for name in parents:
            message = self.types.field(message, name).type_name
        return message, self.types.field(message, last)

    def _path_parameter(self, message: str, variable: PathVariable, body: str) -> Schema:
        holder, target = self._resolve(message, variable.field_path)
        schema = self.schemas.value_schema(target)
        if "." in variable.field_path:
            notes = [f"The request's `{variable.field_path}`."]
        else:
            notes = [self.schemas.comments.get(f"{holder}.{target.name}", "")]
        top, _, rest = variable.field_path.partition(".")
        in_body = variable.field_path if body == "*" else rest if body == top else ""
        if in_body:
            notes.append(
                f"Leave `{in_body}` out of the body: a value there takes precedence (the "
                "transcoder merges the body over the path)."
            )
        if variable.pattern and variable.pattern != "*":
            schema = {**schema, "pattern": _segment_regex(variable.pattern)}
            notes.append(f"Matches `{variable.pattern}`: its `/` are part of the value.")
        parameter: Schema = {"name": variable.name, "in": "path", "required": True}
        text = " ".join(note for note in notes if note)
        if text:
            parameter["description"] = text
        parameter["schema"] = schema
        return parameter

    def _query_parameters(
        self, message: str, bound: set[str], body: str, prefix: str = "", seen: tuple[str, ...] = ()
    ) -> list[Schema]:
        parameters: list[Schema] = []
        for item in self.types.messages[message].field:
            name = prefix + item.name
            if name in bound or (not prefix and item.name == body) or self.types.is_map(item):
                continue
            repeated = item.label == Field.LABEL_REPEATED
            if item.type == Field.TYPE_MESSAGE and item.type_name not in QUERY_WELL_KNOWN:
                # Only plain messages nest; a message cannot be repeated in a query string.
                plain = item.type_name not in WELL_KNOWN and item.type_name != HTTP_BODY
                if plain and not repeated and item.type_name not in seen:
                    parameters += self._query_parameters(
                        item.type_name, bound, body, f"{name}.", (*seen, message)
                    )
                continue
            value = self.schemas.value_schema(item)
            parameter: Schema = {"name": name, "in": "query"}
            if field_behavior_pb2.REQUIRED in behaviors(item):
                parameter["required"] = True
            if repeated:
                parameter.update(
                    schema={"type": "array", "items": value}, style="form", explode=True
                )
            else:
                parameter["schema"] = value
            text = self.schemas.comments.get(f"{message}.{item.name}")
            if text:
                parameter["description"] = text
            parameters.append(parameter)
        return parameters

    # -- bodies ----------------------------------------------------------------------------

    def _request_body(self, binding: Binding, bound: set[str]) -> Schema | None:
        method = binding.method
        if not binding.body:
            return None
        whole = binding.body == "*"
        field = None if whole else self.types.field(method.input_type, binding.body)
        if (method.input_type if field is None else field.type_name) == HTTP_BODY:
            types = gateway.RAW_REQUEST_TYPES.get(binding.rpc, gateway.RAW_FALLBACK_TYPES)
            text = "The raw body, streamed to the server as it arrives."
            return {"required": True, "description": text, "content": _raw(types)}
        if field is not None:
            schema = self.schemas.field_schema(method.input_type, field)
        elif top_bound := frozenset(path for path in bound if "." not in path):
            schema = self.schemas.message_schema(method.input_type, omit=top_bound)
        else:
            schema = self.schemas.ref(method.input_type)
        # With `body: "*"` an empty body is an empty message.
        body: Schema = {"required": not whole, "content": {}}
        if method.client_streaming:
            schema = {"type": "array", "items": schema}
            body["description"] = "A client stream: a JSON array of messages, each sent on."
        body["content"]["application/json"] = {"schema": schema}
        return body

    def _success(self, binding: Binding, path: str) -> Schema:
        method = binding.method
        if method.output_type == HTTP_BODY:
            types = gateway.RAW_RESPONSE_TYPES.get(binding.rpc, gateway.RAW_FALLBACK_TYPES)
            text = "The raw body" + (", streamed." if method.server_streaming else ".")
            return {"description": text, "content": _raw(types)}
        schema = self.schemas.ref(method.output_type)
        name = method.output_type.rsplit(".", 1)[-1]
        if not method.server_streaming:
            return {"description": f"The {name}.", "content": _json(schema)}
        if path in gateway.NDJSON_STREAM_PATHS:
            text = (
                f"A stream of {name} messages as newline-delimited JSON: one {name} object a "
                "line, each sent as it is ready. The gateway labels it `application/json`; "
                "the schema is that of one line."
            )
            return {"description": text, "content": _json(schema), "x-stream": "ndjson"}
        text = f"A stream of {name} messages: one JSON array whose elements arrive as sent."
        array = {"type": "array", "items": schema}
        return {"description": text, "content": _json(array), "x-stream": "json-array"}


def _json(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _raw(types: list[str]) -> Schema:
    return {t: {"schema": {} if t == "application/json" else {"type": "string"}} for t in types}


def _first_sentence(text: str) -> str:
    paragraph = text.split("\n\n", 1)[0].replace("\n", " ")
    sentence = re.split(r"(?<=[.!?])\s", paragraph, maxsplit=1)[0]
    return sentence
