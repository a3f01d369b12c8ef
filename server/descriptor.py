"""The descriptor set the gateway's JSON transcoder reads, compiled from our .proto files.

A checkout has it at gateway/build/descriptor.binpb (`make gen`); an installed server (a
wheel, no checkout) compiles it on first use into its data directory, from the .proto files
it carries (server/assets/proto) and the google ones of googleapis-common-protos and
grpcio-tools, both runtime dependencies. tools/codegen.py uses the same compiler."""

from __future__ import annotations

import tempfile
from pathlib import Path

import google.api
import grpc_tools
from grpc_tools import protoc

ASSETS = Path(__file__).resolve().parent / "assets"
PROTO_DIR = ASSETS / "proto"
# What the gateway needs beyond our own files: google.rpc details so convert_grpc_status can
# render ErrorInfo and BadRequest into the JSON error body.
EXTRAS = ["google/rpc/status.proto", "google/rpc/error_details.proto"]


def googleapis_root() -> Path:
    return Path(next(iter(google.api.__path__))).parent.parent


def protobuf_root() -> Path:
    return Path(next(iter(grpc_tools.__path__))) / "_proto"


def own_protos(proto_dir: Path = PROTO_DIR) -> list[str]:
    return sorted(str(p.relative_to(proto_dir)) for p in proto_dir.rglob("*.proto"))


def run_protoc(args: list[str], proto_dir: Path = PROTO_DIR) -> None:
    includes = [f"-I{proto_dir}", f"-I{googleapis_root()}", f"-I{protobuf_root()}"]
    code = protoc.main(["protoc", *includes, *args])
    if code != 0:
        raise RuntimeError(f"protoc failed ({code}): {' '.join(args)}")


def compile_to(target: Path, proto_dir: Path = PROTO_DIR) -> Path:
    """Write the descriptor set (imports and source comments included) to `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: a gateway starting meanwhile never reads half a file.
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".tmp", delete=False) as part:
        partial = Path(part.name)
    args = ["--include_imports", "--include_source_info", *own_protos(proto_dir), *EXTRAS]
    run_protoc([f"--descriptor_set_out={partial}", *args], proto_dir)
    partial.replace(target)
    return target


def ensure(configured: Path, data_dir: Path) -> Path:
    """The descriptor set to use: the configured (checkout) one when it exists, else one
    compiled into the data directory."""
    if configured.exists():
        return configured
    compiled = data_dir / "gateway" / "descriptor.binpb"
    return compiled if compiled.exists() else compile_to(compiled)
