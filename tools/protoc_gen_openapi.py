"""A protoc plugin: OpenAPI 3.1 for the REST gateway, from the protos' `google.api.http` rules.

It reads a CodeGeneratorRequest on stdin and writes a CodeGeneratorResponse with one file,
`openapi.json` (or the name given as the plugin parameter), describing what Envoy's gRPC-JSON
transcoder actually sends and accepts with the options in gateway/envoy.yaml.tmpl; the rules
are in tools/openapi/. tools/codegen.py runs it in-process to write gateway/openapi.json
(committed; the gateway serves it at /api/v1/openapi.json) and buf.gen.yaml runs it as a local
plugin; CI checks that both give the committed file.

The request must carry source info (comments become descriptions): protoc's
`--include_source_info` for descriptor sets; buf and protoc always send it to plugins.
"""

from __future__ import annotations

import sys

from google.protobuf.compiler import plugin_pb2
from openapi.document import build, render

DEFAULT_OUTPUT = "openapi.json"


def generate(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    response = plugin_pb2.CodeGeneratorResponse()
    response.supported_features = plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    try:
        document = build(request)
    except (KeyError, ValueError) as exc:
        response.error = f"protoc-gen-openapi: {exc}"
        return response
    response.file.add(name=request.parameter or DEFAULT_OUTPUT, content=render(document))
    return response


def main() -> None:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    sys.stdout.buffer.write(generate(request).SerializeToString())


if __name__ == "__main__":
    main()
