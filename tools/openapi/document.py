"""The whole OpenAPI 3.1 document for the services of a CodeGeneratorRequest."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from google.protobuf.compiler import plugin_pb2

from . import gateway
from .comments import collect
from .paths import Operations, bindings_of
from .schema import Schemas, Types

OPENAPI_VERBS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def build(request: plugin_pb2.CodeGeneratorRequest) -> dict[str, Any]:
    files = list(request.proto_file)
    comments = collect(files)
    schemas = Schemas(Types(files), comments)
    operations = Operations(schemas)
    by_name = {file.name: file for file in files}
    # Sorted, so protoc (tools/codegen.py) and buf, which may order files differently, write
    # the same document.
    services = [
        (by_name[name].package, service)
        for name in sorted(request.file_to_generate)
        for service in by_name[name].service
    ]
    rpc_names = Counter(method.name for _, service in services for method in service.method)

    paths: dict[str, dict[str, Any]] = {}
    tags: list[dict[str, str]] = []
    for package, service in services:
        full_service = f".{package}.{service.name}"
        tags.append({"name": service.name, "description": comments.get(full_service, "")})
        for method in service.method:
            unique = rpc_names[method.name] == 1
            operation_id = method.name if unique else f"{service.name}_{method.name}"
            rpc = f"{full_service}.{method.name}"
            for binding in bindings_of(rpc, service.name, method, operation_id):
                if binding.verb not in OPENAPI_VERBS:
                    raise ValueError(f"{rpc}: OpenAPI has no HTTP method {binding.verb!r}")
                path, operation = operations.operation(binding)
                item = paths.setdefault(path, {})
                if binding.verb in item:
                    raise ValueError(f"{rpc}: {binding.verb.upper()} {path} is bound twice")
                item[binding.verb] = operation

    for path, item in paths.items():
        if path.startswith(gateway.PUBLIC_PREFIX):
            preflight = gateway.public_preflight()
            first = next(iter(item.values()))
            preflight["operationId"] = f"Preflight{first['operationId']}"
            in_path = [p for p in first.get("parameters", []) if p["in"] == "path"]
            preflight["parameters"] = [*in_path, *preflight["parameters"]]
            item["options"] = preflight
    paths.update(gateway.mcp_paths())
    paths.update(gateway.gateway_paths())
    tags.append({"name": "MCP", "description": "Tools for AI agents (not transcoded)."})
    tags.append({"name": "Gateway", "description": "Answered by the gateway itself."})

    shared = gateway.components()
    clash = set(shared["schemas"]) & set(schemas.components)
    if clash:
        raise ValueError(f"proto types named like the error schemas: {sorted(clash)}")
    shared["schemas"] = dict(sorted({**shared["schemas"], **schemas.components}.items()))
    return {
        "openapi": "3.1.0",
        "info": gateway.INFO,
        # Relative: the document is served by the gateway it describes.
        "servers": [{"url": "/"}],
        "security": [{gateway.SECURITY_SCHEME: []}],
        "tags": tags,
        "paths": paths,
        "components": shared,
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
