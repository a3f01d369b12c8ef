"""Generate the Python stubs (clients/python), the Envoy descriptor set and the OpenAPI
document (gateway/openapi.json) from proto/.

Third-party protos are resolved from installed packages, never from copies in this repo:
google/api and google/rpc from googleapis-common-protos, google/protobuf from grpcio-tools.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import protoc_gen_openapi  # tools/protoc_gen_openapi.py, beside this script
from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

from server import descriptor

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PY_OUT = ROOT / "clients" / "python"
DESCRIPTOR = ROOT / "gateway" / "build" / "descriptor.binpb"
# Committed, served by the gateway at /api/v1/openapi.json; buf.gen.yaml makes the same file.
OPENAPI = ROOT / "gateway" / "openapi.json"
THIRD_PARTY_OUT = ROOT / "build" / "third_party"
THIRD_PARTY_BUF = [
    "google/api/annotations.proto",
    "google/api/http.proto",
    "google/api/httpbody.proto",
]


def own_protos() -> list[str]:
    return descriptor.own_protos(PROTO_DIR)


def run_protoc(args: list[str]) -> None:
    try:
        descriptor.run_protoc(args, PROTO_DIR)
    except RuntimeError as failed:
        sys.exit(str(failed))


def generate_python() -> None:
    generated = PY_OUT / "tnx"
    if generated.exists():
        shutil.rmtree(generated)
    PY_OUT.mkdir(parents=True, exist_ok=True)
    # Typed stubs (.pyi) for messages and services come from mypy-protobuf's plugins, so
    # clients and the server are type-checked against the contract.
    plugins = Path(sys.executable).parent
    run_protoc(
        [
            f"--plugin=protoc-gen-mypy={plugins / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={plugins / 'protoc-gen-mypy_grpc'}",
            f"--python_out={PY_OUT}",
            f"--mypy_out={PY_OUT}",
            f"--grpc_python_out={PY_OUT}",
            f"--mypy_grpc_out={PY_OUT}",
            *own_protos(),
        ]
    )
    for package_dir in [generated, *[p for p in generated.rglob("*") if p.is_dir()]]:
        (package_dir / "__init__.py").touch()
    (generated / "py.typed").touch()


def generate_descriptor() -> None:
    """The same compilation an installed server runs when it has no descriptor set."""
    descriptor.compile_to(DESCRIPTOR, PROTO_DIR)


def generate_openapi() -> None:
    """The OpenAPI plugin buf runs, fed the descriptor set (it carries the source comments)."""
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR.read_bytes()).file
    request = plugin_pb2.CodeGeneratorRequest(file_to_generate=own_protos(), proto_file=files)
    response = protoc_gen_openapi.generate(request)
    if response.error:
        sys.exit(response.error)
    OPENAPI.write_text(response.file[0].content, encoding="utf-8")


def export_third_party() -> None:
    """Lay the google/api protos where buf.yaml's second module expects them (not committed)."""
    for rel in THIRD_PARTY_BUF:
        target = THIRD_PARTY_OUT / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(descriptor.googleapis_root() / rel, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--descriptor-only", action="store_true")
    args = parser.parse_args()
    if not args.descriptor_only:
        generate_python()
    generate_descriptor()
    if not args.descriptor_only:
        generate_openapi()
    export_third_party()


if __name__ == "__main__":
    main()
