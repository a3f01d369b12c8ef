"""`tnx-crm`: run the stack and administer workspaces and API keys."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tnx_crm import cli as client_cli

from server import gateway, healthcheck
from server.auth import service as auth
from server.config import Settings, load_settings
from server.db import migrate
from server.db.engine import Database, make_engine
from server.db.url import database_url
from server.errors import DomainError
from server.mcp import cli as mcp_cli
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


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from server import up

    return up.run(settings, servers=args.servers, workers=args.workers)


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


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="tnx-crm", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "up",
        help="run PostgreSQL, gRPC servers, workers, the scheduler, MCP and the gateway;"
        " restart any that exits",
    )
    up.add_argument("--servers", type=_positive, default=1, help="gRPC servers (default 1)")
    up.add_argument("--workers", type=_positive, default=2, help="workers (default 2)")
    up.set_defaults(run=cmd_up)
    healthcheck.add_command(commands)
    commands.add_parser("serve", help="run the gRPC server").set_defaults(run=cmd_serve)
    commands.add_parser("gateway", help="run the Envoy REST gateway").set_defaults(run=cmd_gateway)
    commands.add_parser(
        "worker", help="run a background worker (imports, scoring rebuilds and decay)"
    ).set_defaults(run=cmd_worker)
    commands.add_parser(
        "scheduler", help="send the periodic jobs (score decay) to the workers"
    ).set_defaults(run=cmd_scheduler)
    # leads, lists and imports: the Python client's commands (clients/python/tnx_crm/cli).
    client_cli.add_commands(commands)
    mcp_cli.add_commands(commands)
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
