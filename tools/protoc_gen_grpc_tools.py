"""A protoc plugin that lets `buf generate` produce exactly what tools/codegen.py produces.

grpcio-tools ships no `protoc-gen-grpc_python` binary: its gRPC generator lives inside the
`grpc_tools.protoc` module. buf, on the other hand, talks to generators through the plugin
protocol (a CodeGeneratorRequest on stdin, a CodeGeneratorResponse on stdout). This plugin
bridges the two: it writes the already-compiled descriptors buf hands it to a temporary
FileDescriptorSet, runs `grpc_tools.protoc --descriptor_set_in=...` with the generators named
in the plugin parameter (comma-separated, default `python,pyi,grpc_python`), and returns the
files. A name that is not built into grpc_tools.protoc (e.g. `mypy`, `mypy_grpc` from
mypy-protobuf) runs the `protoc-gen-NAME` installed next to this Python, as codegen.py does.
Package `__init__.py` files and `py.typed` are added the way tools/codegen.py adds them.

One normalisation keeps the output byte-identical to protoc reading the .proto sources: buf
fills in every field's `json_name`, while protoc records it only when the source sets it, and
the descriptor embedded in `*_pb2.py` reflects that. So a `json_name` equal to the default
(lowerCamelCase of the field name) is cleared here; one that differs was written in the source
and is kept. (An explicit `json_name` equal to the default is indistinguishable and dropped,
which changes nothing at run time: the default is the same value.)

tools/codegen.py stays the canonical generator (`make gen`); CI checks that `buf generate`
through this plugin gives byte-identical output, so buf.gen.yaml cannot silently rot.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path, PurePosixPath

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc

DEFAULT_GENERATORS = ("python", "pyi", "grpc_python")
BUILTIN_GENERATORS = frozenset(DEFAULT_GENERATORS)


def package_markers(generated: list[str]) -> dict[str, str]:
    """`__init__.py` in every directory holding generated code, `py.typed` in each top package."""
    markers: dict[str, str] = {}
    for name in generated:
        parents = list(PurePosixPath(name).parents)[:-1]  # drop "."
        for directory in parents:
            markers[str(directory / "__init__.py")] = ""
        if parents:
            markers[str(parents[-1] / "py.typed")] = ""
    return markers


def default_json_name(field_name: str) -> str:
    """protoc's ToJsonName: drop underscores and upper-case the letter after each."""
    out: list[str] = []
    upper_next = False
    for char in field_name:
        if char == "_":
            upper_next = True
        elif upper_next:
            out.append(char.upper())
            upper_next = False
        else:
            out.append(char)
    return "".join(out)


def clear_default_json_names(message: descriptor_pb2.DescriptorProto) -> None:
    for field in [*message.field, *message.extension]:
        if field.json_name == default_json_name(field.name):
            field.ClearField("json_name")
    for nested in message.nested_type:
        clear_default_json_names(nested)


def as_protoc_would_see_it(
    file: descriptor_pb2.FileDescriptorProto,
) -> descriptor_pb2.FileDescriptorProto:
    normalised = descriptor_pb2.FileDescriptorProto()
    normalised.CopyFrom(file)
    for message in normalised.message_type:
        clear_default_json_names(message)
    for extension in normalised.extension:
        if extension.json_name == default_json_name(extension.name):
            extension.ClearField("json_name")
    return normalised


def generate(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    response = plugin_pb2.CodeGeneratorResponse()
    response.supported_features = plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL

    generators = [g for g in request.parameter.split(",") if g] or list(DEFAULT_GENERATORS)
    plugin_args: list[str] = []
    for generator in sorted(set(generators) - BUILTIN_GENERATORS):
        executable = Path(sys.executable).parent / f"protoc-gen-{generator}"
        if not executable.exists():
            response.error = (
                f"generator {generator!r} is neither built into grpc_tools.protoc "
                f"({', '.join(sorted(BUILTIN_GENERATORS))}) nor installed at {executable}"
            )
            return response
        plugin_args.append(f"--plugin=protoc-gen-{generator}={executable}")

    with tempfile.TemporaryDirectory(prefix="protoc-gen-grpc-tools-") as tmp:
        tmp_path = Path(tmp)
        descriptor_set = descriptor_pb2.FileDescriptorSet(
            file=[as_protoc_would_see_it(f) for f in request.proto_file]
        )
        set_path = tmp_path / "input.binpb"
        set_path.write_bytes(descriptor_set.SerializeToString())
        out = tmp_path / "out"
        out.mkdir()
        args = [
            "protoc",
            f"--descriptor_set_in={set_path}",
            *plugin_args,
            *(f"--{generator}_out={out}" for generator in generators),
            *request.file_to_generate,
        ]
        code = protoc.main(args)
        if code != 0:
            response.error = f"grpc_tools.protoc exited {code}: {' '.join(args[1:])}"
            return response

        generated = sorted(
            str(p.relative_to(out).as_posix()) for p in out.rglob("*") if p.is_file()
        )
        contents = {name: (out / name).read_text(encoding="utf-8") for name in generated}

    for name, content in {**package_markers(generated), **contents}.items():
        response.file.add(name=name, content=content)
    return response


def main() -> None:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    sys.stdout.buffer.write(generate(request).SerializeToString())


if __name__ == "__main__":
    main()
