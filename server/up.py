"""`tnx-crm up`: the whole stack on one machine, supervised. PostgreSQL (embedded, or
CRM_DATABASE_URL) runs beside it; N gRPC servers on consecutive ports, M workers, the
scheduler, the MCP server and the Envoy gateway are children that restart when they exit
(server/supervisor.py). The gateway balances over the servers and health-checks them, so a
server that stops or restarts is taken out of rotation instead of answering with errors."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import signal
import sys
import time
from typing import Any

from server import gateway
from server.config import Settings
from server.db import migrate
from server.db.url import database_url
from server.supervisor import Child, Supervisor


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "server.cli", *args]


def _server_settings(settings: Settings, index: int) -> Settings:
    return dataclasses.replace(settings, grpc_port=settings.grpc_port + index)


def _upstream(settings: Settings) -> str:
    socket = settings.grpc_socket
    return f"unix:{socket}" if socket is not None else f"{settings.grpc_host}:{settings.grpc_port}"


def _api_target(servers: list[Settings]) -> str:
    """Where the MCP server calls the API: every server, when gRPC can list them (IPv4)."""
    addresses = [f"{s.grpc_host}:{s.grpc_port}" for s in servers]
    try:
        ipaddress.IPv4Address(servers[0].grpc_host)
    except ValueError:
        return addresses[0]
    return "ipv4:" + ",".join(addresses) if len(addresses) > 1 else addresses[0]


def _numbered_port(env: dict[str, str], name: str, index: int) -> dict[str, str]:
    """CRM_METRICS_PORT and the like, when set, are the first of consecutive ports."""
    base = env.get(name, "").strip()
    return {name: str(int(base) + index)} if base else {}


def children(settings: Settings, url: str, *, servers: int, workers: int) -> list[Child]:
    env = {**os.environ, "CRM_DATABASE_URL": url}
    each = [_server_settings(settings, i) for i in range(servers)]
    stack = [
        Child(
            f"server-{i + 1}",
            _command("serve"),
            {
                **env,
                "CRM_GRPC_PORT": str(s.grpc_port),
                **_numbered_port(env, "CRM_METRICS_PORT", i),
            },
            port=(s.grpc_host, s.grpc_port),
        )
        for i, s in enumerate(each)
    ]
    stack += [
        Child(
            f"worker-{j + 1}",
            _command("worker"),
            {**env, **_numbered_port(env, "CRM_WORKER_METRICS_PORT", j)},
        )
        for j in range(workers)
    ]
    stack.append(Child("scheduler", _command("scheduler"), env))
    stack.append(
        Child(
            "mcp",
            _command("mcp", "--http"),
            {**env, "CRM_GRPC_TARGET": _api_target(each)},
            port=(settings.mcp_host, settings.mcp_port),
        )
    )
    upstreams = tuple(_upstream(s) for s in each)
    config = gateway.render(dataclasses.replace(settings, gateway_upstreams=upstreams))
    listens = (settings.http_host, settings.http_port)
    stack.append(Child("gateway", gateway.command(config), env, port=listens))
    return stack


def run(settings: Settings, *, servers: int, workers: int) -> int:
    """Everything, in the foreground, until Ctrl-C/SIGTERM; children that exit restart."""
    url = database_url(settings, owner=True)
    migrate.upgrade(url)
    # Background work runs in workers on the embedded broker (or CRM_BROKER_URL); the
    # scheduler sends the decay tick. Celery loads only for the commands that need it.
    from server import worker

    worker.declare_queues(settings, url)
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    supervisor = Supervisor(
        children(settings, url, servers=servers, workers=workers),
        say=lambda line: print(line, flush=True),
    )
    try:
        supervisor.start_all()
        _banner(settings, url, servers)
        while not stopping:
            supervisor.poll()
            time.sleep(0.2)
        return 0
    finally:
        supervisor.stop_all()


def _banner(settings: Settings, url: str, servers: int) -> None:
    last = settings.grpc_port + servers - 1
    ports = f"{settings.grpc_port}" if servers == 1 else f"{settings.grpc_port}-{last}"
    base = f"http://{settings.http_host}:{settings.http_port}"
    for line in [
        f"tnx-crm is up (data in {settings.data_dir})",
        f"  PostgreSQL  {url}",
        f"  gRPC        {settings.grpc_host}:{ports}",
        f"  REST        {base}/api/v1",
        f"  MCP         {base}/api/v1/crm/mcp  (stdio: tnx-crm mcp)",
        "  create a workspace: .venv/bin/tnx-crm workspaces create NAME   (Ctrl-C stops)",
    ]:
        print(line, flush=True)
