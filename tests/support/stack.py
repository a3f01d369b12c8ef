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
def envoy_gateway(grpc_port: int, work_dir: Path) -> Iterator[str]:
    """The real Envoy gateway in front of a server; yields its base URL."""
    http_port, admin_port = free_port(), free_port()
    env = {
        **os.environ,
        "CRM_GRPC_PORT": str(grpc_port),
        "CRM_HTTP_PORT": str(http_port),
        "CRM_ENVOY_ADMIN_PORT": str(admin_port),
        "CRM_DATA_DIR": str(work_dir),
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
            yield f"http://127.0.0.1:{http_port}"
        finally:
            stop(process)
