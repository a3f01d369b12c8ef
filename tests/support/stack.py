"""Real processes for integration tests: PostgreSQL, the gRPC server, the Envoy gateway."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server import gateway
from server.config import REPO_ROOT, load_settings
from tests.support.imports import import_env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def wait_until_serving(address: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"gRPC server at {address} never became SERVING")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def grpc_server(database_url: str, log_path: Path, **extra_env: str) -> Iterator[tuple[str, int]]:
    """`tnx-crm serve` as its own process; yields (address, port)."""
    port = free_port()
    env = {
        **os.environ,
        "CRM_DATABASE_URL": database_url,
        "CRM_GRPC_PORT": str(port),
        # Its unix socket (for a gateway on the same host) lands beside its log.
        "CRM_DATA_DIR": str(log_path.parent),
        "CRM_LOG_LEVEL": "WARNING",
        # Small, so a test can see a rule segment build in the background.
        "CRM_SEGMENT_SYNC_BUILD_LIMIT": "100",
        # The import queue and limits the session's workers share (tests/support/imports.py).
        **import_env(),
        # Every test's requests through Envoy come from 127.0.0.1: no per-IP submission
        # limit here; tests/forms runs a server of its own with small limits to test them.
        "CRM_FORM_IP_RATE_LIMIT_PER_MINUTE": "0",
        **extra_env,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve"],
            env=env,
            stdout=log,
            stderr=log,
            cwd=REPO_ROOT,
        )
        try:
            wait_until_serving(f"127.0.0.1:{port}")
            yield f"127.0.0.1:{port}", port
        finally:
            stop(process)


@contextmanager
def envoy_gateway(grpc_port: int, work_dir: Path, mcp_port: int = 0) -> Iterator[str]:
    """The real Envoy gateway in front of a server; yields its base URL. /api/v1/crm/mcp goes
    to `mcp_port` (where `mcp_http_server` may be started later; until then that route is 503)."""
    http_port = free_port()
    # The server's unix socket when it listens on one in this directory (grpc_server puts it
    # beside its log), else its TCP port.
    socket = work_dir / f"grpc-{grpc_port}.sock"
    upstream = f"unix:{socket}" if socket.exists() else f"127.0.0.1:{grpc_port}"
    env = {
        **os.environ,
        "CRM_GRPC_PORT": str(grpc_port),
        "CRM_HTTP_PORT": str(http_port),
        "CRM_GATEWAY_UPSTREAMS": upstream,
        "CRM_DATA_DIR": str(work_dir),
        "CRM_MCP_PORT": str(mcp_port or free_port()),
    }
    old = dict(os.environ)
    os.environ.update(env)
    try:
        settings = load_settings()
    finally:
        os.environ.clear()
        os.environ.update(old)
    config = gateway.render(settings, work_dir / "envoy.yaml")
    with (work_dir / "envoy.log").open("wb") as log:
        process = subprocess.Popen(gateway.command(config), stdout=log, stderr=log)
        try:
            wait_for_port(http_port, process)
            base = f"http://127.0.0.1:{http_port}"
            wait_until_ready(base)
            yield base
        finally:
            stop(process)


def wait_until_ready(base_url: str, timeout: float = 30.0) -> None:
    """Until the gateway's first health check of its server has passed (/readyz is 200):
    before that, it answers 503 'no healthy upstream'."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the gateway at {base_url} never became ready")
        time.sleep(0.05)


@contextmanager
def mcp_http_server(grpc_address: str, port: int, log_path: Path) -> Iterator[str]:
    """`tnx-crm mcp --http` as its own process on `port`, calling the API at `grpc_address`;
    yields its own URL (the gateway's route to it is the one to test through)."""
    env = {**os.environ, "CRM_GRPC_TARGET": grpc_address, "CRM_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "server.cli", "mcp", "--http", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log, cwd=REPO_ROOT)
        try:
            wait_for_port(port, process)
            yield f"http://127.0.0.1:{port}/api/v1/crm/mcp"
        finally:
            stop(process)
