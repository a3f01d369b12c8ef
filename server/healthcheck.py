"""`tnx-crm health`: exit 0 when a process of the stack is healthy, 1 when not — for container
health checks and scripts. By default it asks this host's gRPC server (grpc.health.v1, which
says NOT_SERVING while the database is unreachable); `--http URL` asks an HTTP endpoint
instead (a worker's /livez, the gateway's /healthz or /readyz)."""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.config import Settings

TIMEOUT_S = 3.0


def grpc_serving(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:
            return 200 <= int(reply.status) < 300
    except (urllib.error.URLError, OSError):
        return False


def cmd_health(settings: Settings, args: argparse.Namespace) -> int:
    if args.http:
        healthy, what = http_ok(args.http), args.http
    else:
        host = "127.0.0.1" if settings.grpc_host in ("0.0.0.0", "::") else settings.grpc_host
        what = args.grpc or f"{host}:{settings.grpc_port}"
        healthy = grpc_serving(what)
    print(f"{what}: {'healthy' if healthy else 'unhealthy'}", file=sys.stderr)
    return 0 if healthy else 1


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    health = commands.add_parser("health", help="exit 0 if a server (or an HTTP check) is healthy")
    health.add_argument("--grpc", default="", help="gRPC address (default: this host's server)")
    health.add_argument("--http", default="", help="an HTTP URL that answers 2xx when healthy")
    health.set_defaults(run=cmd_health)
