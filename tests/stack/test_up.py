"""`tnx-crm up` brings the whole stack up on the embedded defaults and takes it down cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

from server.config import REPO_ROOT
from tests.support.stack import free_port


def test_up_serves_rest_with_a_cli_created_key_and_stops_every_child_on_sigterm(
    tmp_path: Path,
) -> None:
    grpc_port, http_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "CRM_DATABASE_URL"}
    env.update(
        CRM_DATA_DIR=str(tmp_path / "data"),
        CRM_GRPC_PORT=str(grpc_port),
        CRM_HTTP_PORT=str(http_port),
        CRM_MCP_PORT=str(free_port()),
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "up"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert up.stdout is not None
        banner = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            banner.append(line)
            if "REST" in line or up.poll() is not None:
                break
        assert any(f"127.0.0.1:{http_port}" in line for line in banner), "".join(banner)
        children = psutil.Process(up.pid).children(recursive=True)

        created = subprocess.run(
            [sys.executable, "-m", "server.cli", "workspaces", "create", "acme"],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        key = created.stdout.strip().splitlines()[-1]
        reply = requests.post(
            f"http://127.0.0.1:{http_port}/api/v1/crm/leads",
            headers={"Authorization": f"Bearer {key}"},
            json={"email": "up@example.com"},
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["email"] == "up@example.com"
        # The MCP server runs too, behind the gateway, and wants a key like the API.
        mcp = requests.post(f"http://127.0.0.1:{http_port}/api/v1/crm/mcp", json={}, timeout=10)
        assert mcp.status_code == 401, mcp.text

        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=30) == 0
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == []
        assert _postgres_serving(tmp_path / "data") == [], (
            "the embedded PostgreSQL was left running"
        )
    finally:
        if up.poll() is None:
            up.kill()


def _postgres_serving(data_dir: Path) -> list[int]:
    return [
        proc.pid
        for proc in psutil.process_iter(["name", "cmdline"])
        if proc.info["name"] == "postgres" and str(data_dir) in " ".join(proc.info["cmdline"] or [])
    ]
