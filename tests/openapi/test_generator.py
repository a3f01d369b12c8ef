"""The OpenAPI plugin (tools/protoc_gen_openapi.py) on a made-up API that uses every binding
form and field kind it maps: run as protoc runs a plugin, a CodeGeneratorRequest on stdin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import google.api
import grpc_tools  # type: ignore[import-untyped]
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc  # type: ignore[import-untyped]

from server.config import REPO_ROOT

PLUGIN = REPO_ROOT / "tools" / "protoc_gen_openapi.py"
PROTOS = Path(__file__).parent / "protos"
LIBRARY = "example/library/v1/library.proto"


def run_plugin(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    done = subprocess.run(
        [sys.executable, str(PLUGIN)],
        input=request.SerializeToString(),
        capture_output=True,
        check=True,
        timeout=60,
    )
    return plugin_pb2.CodeGeneratorResponse.FromString(done.stdout)


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("library") / "library.binpb"
    includes = [
        f"-I{PROTOS}",
        f"-I{Path(next(iter(google.api.__path__))).parent.parent}",
        f"-I{Path(next(iter(grpc_tools.__path__))) / '_proto'}",
    ]
    flags = ["--include_imports", "--include_source_info", f"--descriptor_set_out={out}"]
    assert protoc.main(["protoc", *includes, *flags, LIBRARY]) == 0
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    response = run_plugin(
        plugin_pb2.CodeGeneratorRequest(file_to_generate=[LIBRARY], proto_file=files)
    )
    assert not response.error
    assert [f.name for f in response.file] == ["openapi.json"]
    document: dict[str, Any] = json.loads(response.file[0].content)
    return document


def shelf_property(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = doc["components"]["schemas"]["Shelf"]["properties"][name]
    return found


def test_messages_are_objects_with_proto_field_names_and_their_comments(
    doc: dict[str, Any],
) -> None:
    shelf = doc["components"]["schemas"]["Shelf"]
    assert shelf["type"] == "object" and shelf["description"] == "A shelf."
    assert list(shelf["properties"])[:3] == ["id", "title", "book_count"]
    assert shelf_property(doc, "title")["description"] == "Its title."


def test_field_behavior_marks_required_read_only_and_write_only(doc: dict[str, Any]) -> None:
    assert doc["components"]["schemas"]["Shelf"]["required"] == ["title"]
    assert shelf_property(doc, "id")["readOnly"] is True
    assert shelf_property(doc, "secret")["writeOnly"] is True


def test_scalars_take_their_proto3_json_forms(doc: dict[str, Any]) -> None:
    assert shelf_property(doc, "book_count") == {
        "type": "string",
        "format": "int64",
        "pattern": "^-?[0-9]+$",
    }
    assert shelf_property(doc, "slots") == {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
    assert shelf_property(doc, "thumbnail")["contentEncoding"] == "base64"
    assert shelf_property(doc, "rating")["type"] == "number"


def test_enums_are_their_value_names(doc: dict[str, Any]) -> None:
    assert shelf_property(doc, "kind") == {"$ref": "#/components/schemas/Shelf.Kind"}
    kind = doc["components"]["schemas"]["Shelf.Kind"]
    assert kind["type"] == "string"
    assert kind["enum"] == ["KIND_UNSPECIFIED", "WOOD", "METAL"]
    assert "`WOOD`: Oak or pine." in kind["description"]


def test_well_known_types_take_their_json_forms(doc: dict[str, Any]) -> None:
    assert shelf_property(doc, "created_at") == {"type": "string", "format": "date-time"}
    assert shelf_property(doc, "labels") == {"type": "object", "additionalProperties": True}
    assert "type" not in shelf_property(doc, "extra")  # google.protobuf.Value: any JSON
    assert shelf_property(doc, "capacity")["type"] == "string"  # Int64Value
    assert shelf_property(doc, "loan_period")["pattern"].endswith("s$")
    assert "google.protobuf" not in json.dumps(doc["components"]["schemas"])


def test_maps_oneofs_and_recursive_messages(doc: dict[str, Any]) -> None:
    assert shelf_property(doc, "counts")["additionalProperties"]["format"] == "int64"
    assert "set at most one of `room`, `floor`" in shelf_property(doc, "room")["description"]
    assert shelf_property(doc, "children") == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Shelf"},
    }


def test_path_patterns_and_additional_bindings(doc: dict[str, Any]) -> None:
    primary = doc["paths"]["/v1/{name}"]["get"]
    (name,) = primary["parameters"]
    assert name["in"] == "path" and name["schema"]["pattern"] == "^shelves/[^/]+$"
    assert primary["operationId"] == "GetShelf"
    assert primary["summary"] == "Gets a shelf."
    assert primary["description"] == "Gets a shelf. Archived shelves too."
    legacy = doc["paths"]["/v1/legacy/shelves/{name}"]["get"]
    assert legacy["operationId"] == "GetShelf_1"


def test_body_field_binding_with_a_nested_path_variable(doc: dict[str, Any]) -> None:
    update = doc["paths"]["/v1/shelves/{id}"]["patch"]
    path, mask = update["parameters"]
    assert (path["name"], path["in"]) == ("id", "path")
    assert "`shelf.id`" in path["description"]
    assert (mask["name"], mask["in"], mask["schema"]["type"]) == ("update_mask", "query", "string")
    body = update["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Shelf"


def test_body_star_leaves_out_path_fields(doc: dict[str, Any]) -> None:
    move = doc["paths"]["/v1/shelves/{id}:move"]["post"]
    assert [p["name"] for p in move["parameters"]] == ["id"]
    schema = move["requestBody"]["content"]["application/json"]["schema"]
    assert list(schema["properties"]) == ["room"] and schema["required"] == ["room"]
    assert move["responses"]["200"]["content"]["application/json"]["schema"] == {"type": "object"}


def test_query_parameters_nest_repeat_and_skip_what_a_query_cannot_carry(
    doc: dict[str, Any],
) -> None:
    parameters = {p["name"]: p for p in doc["paths"]["/v1/shelves"]["get"]["parameters"]}
    assert list(parameters) == ["page.size", "page.token", "kinds", "after", "min_books"]
    kinds = parameters["kinds"]
    assert kinds["schema"]["items"] == {"$ref": "#/components/schemas/Shelf.Kind"}
    assert (kinds["style"], kinds["explode"]) == ("form", True)
    assert parameters["after"]["schema"]["format"] == "date-time"
    assert parameters["min_books"]["required"] is True


def test_streams_and_raw_bodies(doc: dict[str, Any]) -> None:
    listed = doc["paths"]["/v1/shelves"]["get"]["responses"]["200"]
    assert listed["x-stream"] == "json-array"
    assert listed["content"]["application/json"]["schema"]["type"] == "array"
    export = doc["paths"]["/v1/shelves/{id}:export"]["get"]["responses"]["200"]
    assert export["content"] == {"application/octet-stream": {"schema": {"type": "string"}}}
    upload = doc["paths"]["/v1/shelves/{id}/books"]["post"]
    assert [p["name"] for p in upload["parameters"]] == ["id", "format"]
    assert list(upload["requestBody"]["content"]) == ["application/octet-stream"]
    chunks = doc["paths"]["/v1/books:add"]["post"]["requestBody"]["content"]
    assert chunks["application/json"]["schema"]["items"] == {
        "$ref": "#/components/schemas/AddBooksRequest"
    }


def test_errors_auth_and_tags(doc: dict[str, Any]) -> None:
    responses = doc["paths"]["/v1/shelves/{id}:move"]["post"]["responses"]
    assert set(responses) == {"200", "400", "401", "404", "413", "503", "default"}
    assert responses["default"] == {"$ref": "#/components/responses/Error"}
    assert doc["security"] == [{"ApiKey": []}]
    assert doc["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    assert {"name": "Library", "description": "Shelves of books."} in doc["tags"]
    operation_ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert "Compact" not in operation_ids  # no HTTP binding, no operation


def test_a_broken_binding_is_a_plugin_error_not_a_crash() -> None:
    file = descriptor_pb2.FileDescriptorProto(name="x.proto", package="x")
    request = plugin_pb2.CodeGeneratorRequest(file_to_generate=["missing.proto"], proto_file=[file])
    response = run_plugin(request)
    assert "missing.proto" in response.error and not response.file
