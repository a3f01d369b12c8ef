"""The container files (issue 16): the Dockerfile passes hadolint and runs as an unprivileged
user, and deploy/compose.yaml runs PostgreSQL, Redis, two servers, two workers, the
scheduler, MCP and the gateway from that image, with health checks the CLI can answer.
(No Docker daemon runs on this machine, so the image itself is not built here.)"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from server.cli import parser
from server.config import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE = REPO_ROOT / "deploy" / "compose.yaml"


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(REPO_ROOT, ".venv", "bin", "hadolint"))
    done = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_is_multi_stage_and_runs_as_a_numbered_unprivileged_user() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) == 2 and " AS build" in stages[0]
    last_stage = lines[lines.index(stages[1]) :]
    users = [line.split()[1] for line in last_stage if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert any(line.startswith("HEALTHCHECK") for line in last_stage)


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_compose_runs_two_servers_two_workers_and_the_rest_from_one_image() -> None:
    services = _compose()["services"]
    commands = {name: service.get("command", [None])[0] for name, service in services.items()}
    assert sorted(n for n, c in commands.items() if c == "serve") == ["server-1", "server-2"]
    assert sorted(n for n, c in commands.items() if c == "worker") == ["worker-1", "worker-2"]
    assert {"postgres", "redis", "scheduler", "mcp", "gateway", "migrate"} <= set(services)
    gateway = services["gateway"]
    upstreams = gateway["environment"]["CRM_GATEWAY_UPSTREAMS"].split(",")
    assert upstreams == ["server-1:50051", "server-2:50051"]
    assert services["server-1"]["environment"]["CRM_BROKER_URL"].startswith("redis://redis")


def test_every_command_and_health_check_in_compose_is_one_the_cli_has() -> None:
    commands = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    known = set(commands.choices)
    for name, service in _compose()["services"].items():
        if service.get("image", "").startswith("tnx-crm"):
            assert service["command"][0] in known, name
        check = service.get("healthcheck", {}).get("test", [])
        if "tnx-crm" in check:
            assert check[check.index("tnx-crm") + 1] in known, name
