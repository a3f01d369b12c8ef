"""`tnx-crm`: run the stack and administer workspaces and API keys."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from server import gateway
from server.auth import service as auth
from server.config import Settings, load_settings
from server.db import migrate
from server.db.engine import Database, make_engine
from server.db.url import database_url
from server.errors import DomainError
from server.imports import cli as imports_cli
from server.observability import logs

T = TypeVar("T")


def _logging(settings: Settings) -> None:
    logs.configure(settings.log_level)


def _with_db(settings: Settings, action: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        db = Database(make_engine(database_url(settings, existing=True), pool_size=1))
        try:
            return await action(db)
        finally:
            await db.close()

    return asyncio.run(run())


# -- stack --------------------------------------------------------------------------


def _wait_for_port(
    host: str, port: int, child: subprocess.Popen[bytes], timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"{child.args!r} exited with {child.returncode} while starting")
        with socket.socket() as probe:
            if probe.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on {host}:{port} after {timeout:.0f}s")


def cmd_up(settings: Settings, _: argparse.Namespace) -> int:
    """Everything on the embedded defaults, in the foreground, until Ctrl-C/SIGTERM."""
    url = database_url(settings, owner=True)
    migrate.upgrade(url)
    env = {**os.environ, "CRM_DATABASE_URL": url}
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        server = subprocess.Popen([sys.executable, "-m", "server.cli", "serve"], env=env)
        children.append(server)
        _wait_for_port(settings.grpc_host, settings.grpc_port, server)
        # Background work runs in workers on the embedded broker (or CRM_BROKER_URL): two,
        # so a long import never holds up the scoring tick; the scheduler sends the tick.
        from server import worker  # Celery loads only for the commands that need it

        worker.declare_queues(settings, url)
        for command in ("worker", "worker", "scheduler"):
            children.append(
                subprocess.Popen([sys.executable, "-m", "server.cli", command], env=env)
            )
        envoy = subprocess.Popen(gateway.command(gateway.render(settings)), env=env)
        children.append(envoy)
        _wait_for_port(settings.http_host, settings.http_port, envoy)
        print(f"tnx-crm is up (data in {settings.data_dir})", flush=True)
        print(f"  PostgreSQL  {url}", flush=True)
        print(f"  gRPC        {settings.grpc_host}:{settings.grpc_port}", flush=True)
        print(f"  REST        http://{settings.http_host}:{settings.http_port}/api/v1", flush=True)
        print(
            "  create a workspace: .venv/bin/tnx-crm workspaces create NAME   (Ctrl-C stops)",
            flush=True,
        )
        while not stopping:
            for child in children:
                if child.poll() is not None:
                    print(f"{child.args!r} exited with {child.returncode}; stopping", flush=True)
                    return 1
            time.sleep(0.2)
        return 0
    finally:
        _stop_children(children)


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in reversed(children):
        if child.poll() is None:
            child.terminate()
    for child in reversed(children):
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def cmd_serve(settings: Settings, _: argparse.Namespace) -> int:
    from server.rpc.server import serve

    _logging(settings)
    migrate.upgrade(database_url(settings))
    asyncio.run(serve(settings))
    return 0


def cmd_worker(settings: Settings, _: argparse.Namespace) -> int:
    from server import worker

    _logging(settings)
    worker.worker_main(settings, database_url(settings))
    return 0


def cmd_scheduler(settings: Settings, _: argparse.Namespace) -> int:
    from server.scoring import tasks

    _logging(settings)
    tasks.scheduler_main(settings, database_url(settings))
    return 0


def cmd_gateway(settings: Settings, _: argparse.Namespace) -> int:
    argv = gateway.command(gateway.render(settings))
    os.execv(argv[0], argv)


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    migrate.upgrade(database_url(settings))
    return 0


# -- administration -----------------------------------------------------------------


def cmd_workspaces_create(settings: Settings, args: argparse.Namespace) -> int:
    migrate.upgrade(database_url(settings, existing=True))
    created = _with_db(settings, lambda db: auth.create_workspace(db, name=args.name))
    print(f"workspace {created.workspace_id} ({args.name}); API key {created.key_id} (shown once):")
    print(created.key)
    return 0


def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    created = _with_db(
        settings, lambda db: auth.create_key(db, workspace_ref=args.workspace, name=args.name)
    )
    print(f"API key {created.key_id} for {created.workspace_id} (shown once):")
    print(created.key)
    return 0


def cmd_keys_list(settings: Settings, args: argparse.Namespace) -> int:
    keys = _with_db(settings, lambda db: auth.list_keys(db, workspace_ref=args.workspace))
    for key in keys:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
        print(f"{key.key_id}  {key.prefix}…  {key.name}  {state}  last used {used}")
    return 0


def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    _with_db(settings, lambda db: auth.revoke_key(db, key_ref=args.key))
    print(f"revoked {args.key}")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="tnx-crm", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "up", help="run PostgreSQL, the gRPC server, workers, the scheduler and the gateway"
    ).set_defaults(run=cmd_up)
    commands.add_parser("serve", help="run the gRPC server").set_defaults(run=cmd_serve)
    commands.add_parser("gateway", help="run the Envoy REST gateway").set_defaults(run=cmd_gateway)
    commands.add_parser(
        "worker", help="run a background worker (imports, scoring rebuilds and decay)"
    ).set_defaults(run=cmd_worker)
    commands.add_parser(
        "scheduler", help="send the periodic jobs (score decay) to the workers"
    ).set_defaults(run=cmd_scheduler)
    imports_cli.add_commands(commands)
    commands.add_parser("migrate", help="apply database migrations").set_defaults(run=cmd_migrate)

    workspaces = commands.add_parser("workspaces").add_subparsers(dest="action", required=True)
    create_ws = workspaces.add_parser(
        "create", help="create a workspace and print its first API key"
    )
    create_ws.add_argument("name")
    create_ws.set_defaults(run=cmd_workspaces_create)

    keys = commands.add_parser("keys").add_subparsers(dest="action", required=True)
    create_key = keys.add_parser("create", help="create another API key for a workspace")
    create_key.add_argument("--workspace", required=True, help="workspace id or name")
    create_key.add_argument("--name", default="")
    create_key.set_defaults(run=cmd_keys_create)
    list_keys = keys.add_parser("list", help="list a workspace's API keys")
    list_keys.add_argument("--workspace", required=True, help="workspace id or name")
    list_keys.set_defaults(run=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke an API key by id or prefix")
    revoke.add_argument("key")
    revoke.set_defaults(run=cmd_keys_revoke)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    settings = load_settings()
    try:
        code = args.run(settings, args)
    except DomainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
