"""The committed gateway/openapi.json: valid OpenAPI 3.1, what the plugin makes of today's
protos, and in step with the gateway's routes and JSON options (the rendered Envoy config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from openapi_spec_validator import OpenAPIV31SpecValidator

from server import gateway
from server.config import REPO_ROOT, load_settings
from tests.openapi.conftest import SPEC_PATH
from tests.openapi.test_generator import run_plugin

TRANSCODER = "envoy.filters.http.grpc_json_transcoder"


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, verb, op) for path, item in spec["paths"].items() for verb, op in item.items()]


@pytest.fixture(scope="module")
def envoy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    rendered = gateway.render(load_settings(), tmp_path_factory.mktemp("envoy") / "envoy.yaml")
    config: dict[str, Any] = yaml.safe_load(rendered.read_text())
    return config


def routes(envoy: dict[str, Any]) -> list[dict[str, Any]]:
    manager = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    found: list[dict[str, Any]] = manager["typed_config"]["route_config"]["virtual_hosts"][0][
        "routes"
    ]
    return found


def test_committed_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"] == "3.1.0"
    OpenAPIV31SpecValidator(spec).validate()


def test_committed_document_is_what_the_plugin_makes_of_the_protos() -> None:
    descriptor = load_settings().descriptor_path
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor.read_bytes()).file
    proto_dir = REPO_ROOT / "proto"
    own = sorted(str(p.relative_to(proto_dir)) for p in proto_dir.rglob("*.proto"))
    response = run_plugin(plugin_pb2.CodeGeneratorRequest(file_to_generate=own, proto_file=files))
    assert not response.error
    committed = SPEC_PATH.read_text(encoding="utf-8")
    assert response.file[0].content == committed, "gateway/openapi.json is stale: run `make gen`"


def test_every_operation_has_a_unique_id_a_tag_and_an_error_response(
    spec: dict[str, Any],
) -> None:
    ids = [op["operationId"] for _, _, op in operations(spec)]
    assert len(ids) == len(set(ids))
    for path, verb, op in operations(spec):
        assert op["tags"], (verb, path)
        assert "200" in op["responses"], (verb, path)
        if op["tags"] not in (["Gateway"], ["MCP"]):  # transcoded: errors are a Status
            assert op["responses"]["default"] == {"$ref": "#/components/responses/Error"}


def test_only_public_routes_and_the_document_itself_need_no_key(
    spec: dict[str, Any], envoy: dict[str, Any]
) -> None:
    (public,) = [
        r
        for r in routes(envoy)
        if "envoy.filters.http.cors" in r.get("typed_per_filter_config", {})
    ]
    prefix = public["match"]["prefix"]
    keyless = {(path, verb) for path, verb, op in operations(spec) if op.get("security") == []}
    expected = {(path, verb) for path, verb, _ in operations(spec) if path.startswith(prefix)}
    assert keyless == expected | {("/api/v1/openapi.json", "get")}
    assert ("/api/v1/public/forms/{slug}/submissions", "post") in keyless


def test_newline_delimited_streams_are_the_routes_envoy_frames_that_way(
    spec: dict[str, Any], envoy: dict[str, Any]
) -> None:
    ndjson = {
        r["match"]["path"]
        for r in routes(envoy)
        if r.get("typed_per_filter_config", {})
        .get(TRANSCODER, {})
        .get("print_options", {})
        .get("stream_newline_delimited")
    }
    documented = {
        path
        for path, _, op in operations(spec)
        if op["responses"]["200"].get("x-stream") == "ndjson"
    }
    assert ndjson == documented == {"/api/v1/crm/events:watch"}


def test_json_options_are_the_ones_the_schemas_describe(envoy: dict[str, Any]) -> None:
    manager = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    filters = manager["typed_config"]["http_filters"]
    configs = [f["typed_config"] for f in filters if f["name"] == TRANSCODER] + [
        r["typed_per_filter_config"][TRANSCODER]
        for r in routes(envoy)
        if "print_options" in r.get("typed_per_filter_config", {}).get(TRANSCODER, {})
    ]
    assert len(configs) == 2
    for config in configs:
        options = config["print_options"]
        assert options["preserve_proto_field_names"] is True  # snake_case names
        assert options["always_print_primitive_fields"] is True
        assert options["always_print_enums_as_ints"] is False  # enums are names
        assert config["request_validation_options"]["reject_unknown_query_parameters"] is True


def test_the_gateway_serves_the_committed_file(envoy: dict[str, Any]) -> None:
    (route,) = [r for r in routes(envoy) if r["match"].get("path") == "/api/v1/openapi.json"]
    # server/assets links to gateway/ in a checkout (a wheel carries a copy).
    assert Path(route["direct_response"]["body"]["filename"]).resolve() == SPEC_PATH.resolve()
    manager = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    limit = manager["typed_config"]["route_config"]["max_direct_response_body_size_bytes"]
    assert SPEC_PATH.stat().st_size < limit
