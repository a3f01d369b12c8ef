"""What the REST gateway (gateway/envoy.yaml.tmpl) and the server add to the protos.

The protos say which HTTP routes exist and what their JSON looks like; these facts say the
rest: which routes need no API key, which stream newline-delimited JSON, the content types of
raw (`google.api.HttpBody`) bodies, the error statuses and their body, and the routes Envoy
answers itself. tests/openapi checks the route facts against the rendered Envoy config.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

# Routes under this prefix take no API key (gateway: the CORS-enabled public route; server:
# the interceptor exempts tnx.public.v1.PublicFormService).
PUBLIC_PREFIX = "/api/v1/public/"

# Server streams whose route sets the transcoder's `stream_newline_delimited`: one JSON
# message a line. Other server streams are one growing JSON array.
NDJSON_STREAM_PATHS = frozenset({"/api/v1/crm/events:watch"})

# Content types of raw bodies (google.api.HttpBody), by RPC.
RAW_REQUEST_TYPES = {
    ".tnx.crm.v1.ImportService.UploadImport": [
        "text/csv",
        "application/json",
        "application/x-ndjson",
    ],
}
RAW_RESPONSE_TYPES = {
    ".tnx.crm.v1.SegmentService.ExportSegment": ["text/csv"],
    ".tnx.crm.v1.ImportService.DownloadImportErrors": ["text/csv"],
}
RAW_FALLBACK_TYPES = ["application/octet-stream"]

# Error statuses only some RPCs produce (the domain errors they raise).
CONFLICT_RPCS = frozenset(  # ALREADY_EXISTS: a unique email, domain or slug is taken
    {
        ".tnx.crm.v1.LeadService.CreateLead",
        ".tnx.crm.v1.LeadService.UpdateLead",
        ".tnx.crm.v1.CompanyService.CreateCompany",
        ".tnx.crm.v1.CompanyService.UpdateCompany",
        ".tnx.crm.v1.FormService.CreateForm",
    }
)
RATE_LIMITED_RPCS = frozenset(  # RESOURCE_EXHAUSTED: a budget or rate limit is spent
    {
        ".tnx.crm.v1.EnrichmentService.EnrichLead",
        ".tnx.crm.v1.EnrichmentService.BatchEnrich",
        ".tnx.public.v1.PublicFormService.SubmitForm",
    }
)
FORBIDDEN_RPCS = frozenset({".tnx.public.v1.PublicFormService.SubmitForm"})

SPEC_PATH = "/api/v1/openapi.json"
MCP_PATH = "/api/v1/crm/mcp"
SECURITY_SCHEME = "ApiKey"

INFO: Schema = {
    "title": "tnx CRM REST API",
    "version": "v1",
    "description": (
        "Leads, companies, segments, imports, forms, scoring, triggers, enrichment and "
        "events over REST: Envoy's gRPC-JSON transcoder in front of the `tnx.crm.v1` gRPC "
        "services, so every operation is an RPC (its `operationId`) with the same meaning.\n\n"
        "- **Auth**: `Authorization: Bearer tnx_…` (a workspace's API key) on every route but "
        "the public form submission and this document.\n"
        "- **JSON**: proto field names (snake_case) on output; either snake_case or "
        "lowerCamelCase on input. Every scalar, list and map field is always present in "
        "replies; message fields and `optional` scalars only when set. 64-bit integers are "
        "strings, enums are their names, timestamps RFC 3339 strings.\n"
        "- **Unknown fields**: ignored in a JSON body, refused (400) in the query string.\n"
        "- **Errors**: a JSON `google.rpc.Status` (`code`, `message`, `details` with an "
        "`ErrorInfo` whose `reason` says what happened and, for bad input, a `BadRequest` "
        "naming the fields). Errors the gateway answers itself (unknown route, malformed "
        "JSON, body too large, server unreachable) carry `code` and `message` only.\n"
        "- **Pagination**: `limit` (default 50, at most 1000) and an opaque `cursor`; "
        "`next_cursor` is empty at the end."
    ),
}


def _status_schemas() -> dict[str, Schema]:
    any_detail = {
        "type": "object",
        "required": ["@type"],
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    }
    return {
        "Status": {
            "type": "object",
            "description": "A `google.rpc.Status`: the error body of every failed call.",
            "required": ["code", "message"],
            "properties": {
                "code": {
                    "type": "integer",
                    "format": "int32",
                    "description": "The gRPC status code (`google.rpc.Code`), e.g. 3 "
                    "INVALID_ARGUMENT, 5 NOT_FOUND, 16 UNAUTHENTICATED.",
                },
                "message": {"type": "string"},
                "details": {
                    "type": "array",
                    "items": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/ErrorInfo"},
                            {"$ref": "#/components/schemas/BadRequest"},
                            {"$ref": "#/components/schemas/RetryInfo"},
                            any_detail,
                        ]
                    },
                },
            },
        },
        "ErrorInfo": _detail(
            "ErrorInfo",
            "Why the call failed: `reason` (UPPER_SNAKE, e.g. `LEAD_EMAIL_TAKEN`) in "
            "`domain` `crm.tnx`, with details in `metadata`.",
            {
                "reason": {"type": "string"},
                "domain": {"type": "string"},
                "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        ),
        "BadRequest": _detail(
            "BadRequest",
            "The invalid fields of the request.",
            {
                "field_violations": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "field": {"type": "string"},
                            "description": {"type": "string"},
                            "reason": {"type": "string"},
                        },
                    },
                }
            },
        ),
        "RetryInfo": _detail(
            "RetryInfo",
            "How long to wait before retrying (also sent as a `retry-after` header).",
            {"retry_delay": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"}},
        ),
    }


def _detail(name: str, description: str, properties: dict[str, Schema]) -> Schema:
    return {
        "type": "object",
        "description": f"`google.rpc.{name}`. {description}",
        "required": ["@type"],
        "properties": {
            "@type": {"const": f"type.googleapis.com/google.rpc.{name}"},
            **properties,
        },
    }


ERROR_RESPONSES = {
    "400": (
        "BadRequest",
        "Invalid input (INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE),"
        " malformed JSON or an unknown query parameter.",
    ),
    "401": ("Unauthenticated", "No API key, or a revoked or unknown one (UNAUTHENTICATED)."),
    "403": ("PermissionDenied", "Refused (PERMISSION_DENIED)."),
    "404": ("NotFound", "No such resource in this workspace (NOT_FOUND), or no such route."),
    "409": ("Conflict", "Already exists (ALREADY_EXISTS), or a concurrent write (ABORTED): retry."),
    "413": ("PayloadTooLarge", "The body is over the gateway's limit."),
    "429": ("TooManyRequests", "A rate limit or budget is spent (RESOURCE_EXHAUSTED)."),
    "503": ("Unavailable", "The server or its database is unavailable (UNAVAILABLE): retry."),
    "default": ("Error", "Any other error."),
}


def components() -> Schema:
    """The shared pieces: error schemas and responses, and the API-key scheme."""
    error_body = {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}
    responses = {
        name: {"description": description, "content": error_body}
        for name, description in ERROR_RESPONSES.values()
    }
    retry_after = {
        "description": "Seconds to wait before retrying, when the server suggests it.",
        "schema": {"type": "string"},
    }
    responses["Unavailable"]["headers"] = {"retry-after": retry_after}
    responses["Conflict"]["headers"] = {"retry-after": retry_after}
    return {
        "schemas": _status_schemas(),
        "responses": responses,
        "securitySchemes": {
            SECURITY_SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "tnx_ API key",
                "description": "A workspace's API key (`tnx_` + 38 characters), from "
                "`tnx-crm workspaces create` or `tnx-crm keys create`.",
            }
        },
    }


def error_responses(rpc: str, *, public: bool, has_body: bool) -> dict[str, Schema]:
    codes = ["400", "404"]
    if not public:
        codes.append("401")
    if rpc in FORBIDDEN_RPCS:
        codes.append("403")
    if rpc in CONFLICT_RPCS:
        codes.append("409")
    if has_body:
        codes.append("413")
    if rpc in RATE_LIMITED_RPCS:
        codes.append("429")
    codes = [*sorted(codes), "503", "default"]
    return {code: {"$ref": f"#/components/responses/{ERROR_RESPONSES[code][0]}"} for code in codes}


def gateway_paths() -> dict[str, Schema]:
    """Routes Envoy answers itself, without the gRPC server."""
    return {
        SPEC_PATH: {
            "get": {
                "operationId": "GetOpenApiDocument",
                "tags": ["Gateway"],
                "summary": "This document.",
                "description": "OpenAPI 3.1 for this API, served by the gateway from "
                "`gateway/openapi.json`. No API key needed.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        }
    }


def mcp_paths() -> dict[str, Schema]:
    """The MCP server's route: the gateway proxies it, untranscoded, to `tnx-crm mcp --http`."""
    message = {
        "type": "object",
        "required": ["jsonrpc", "method"],
        "properties": {
            "jsonrpc": {"const": "2.0"},
            "id": {"type": ["string", "integer"]},
            "method": {"type": "string"},
            "params": {"type": "object"},
        },
    }
    any_object = {"application/json": {"schema": {"type": "object"}}}
    return {
        MCP_PATH: {
            "post": {
                "operationId": "CallMcp",
                "tags": ["MCP"],
                "summary": "The Model Context Protocol: streamable HTTP, stateless, JSON replies.",
                "description": "One JSON-RPC 2.0 message of MCP (`initialize`, `tools/list`, "
                "`tools/call`, …) with `Accept: application/json, text/event-stream`. The tools "
                "call this API with the caller's key, so they see that key's workspace.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": message}},
                },
                "responses": {
                    "200": {"description": "The JSON-RPC reply.", "content": any_object},
                    "202": {"description": "A notification or response: accepted, no body."},
                    "401": {"$ref": "#/components/responses/Unauthenticated"},
                    "503": {"$ref": "#/components/responses/Unavailable"},
                    "default": {
                        "description": "Errors of the MCP transport (e.g. 406 without that "
                        "Accept header), as JSON-RPC error objects.",
                        "content": any_object,
                    },
                },
            }
        }
    }


def public_preflight() -> Schema:
    """The CORS preflight Envoy answers on public routes, for any origin."""
    allow = {"schema": {"type": "string"}}
    return {
        "operationId": "PreflightPublicRoute",
        "tags": ["Gateway"],
        "summary": "CORS preflight, answered by the gateway for any origin.",
        "description": "Whether an origin may submit to a form is the server's decision, "
        "per form: the preflight allows every origin.",
        "security": [],
        "parameters": [
            {
                "name": "Origin",
                "in": "header",
                "required": True,
                "schema": {"type": "string", "minLength": 1},
            },
            {
                "name": "Access-Control-Request-Method",
                "in": "header",
                "required": True,
                "schema": {"type": "string", "enum": ["POST"]},
            },
        ],
        "responses": {
            "200": {
                "description": "Allowed: POST from any origin, with a `content-type` header.",
                "headers": {
                    "access-control-allow-origin": allow,
                    "access-control-allow-methods": allow,
                    "access-control-allow-headers": allow,
                    "access-control-max-age": allow,
                },
            },
            "400": {
                "$ref": "#/components/responses/BadRequest",
                "description": "A malformed request, e.g. a header name with an underscore.",
            },
            "404": {
                "$ref": "#/components/responses/NotFound",
                "description": "Not a preflight (no `Origin` or no "
                "`Access-Control-Request-Method`): no route takes OPTIONS.",
            },
        },
    }
