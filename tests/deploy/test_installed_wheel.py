"""Deployable without a git checkout (issue 16): the server's wheel carries the gateway
template, the OpenAPI document and the .proto files the gateway's descriptor set is compiled
from, so `pip install` then `tnx-crm up` works from any directory.

The wheel is installed without dependencies into a fresh virtualenv that borrows this
project's installed ones (a .pth line), which keeps the test to seconds; the code that runs
is the wheel's, checked by where `server` is imported from."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import requests

from server.config import REPO_ROOT
from tests.support.stack import free_port


def _run(*argv: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_wheel_runs_the_whole_stack_outside_a_checkout(tmp_path: Path) -> None:
    wheels, venv, elsewhere = tmp_path / "wheels", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", wheels, REPO_ROOT, cwd=tmp_path)  # fmt: skip
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    where_site = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = _run(python, "-c", where_site, cwd=tmp_path)
    Path(site.strip(), "borrowed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    wheel = next(wheels.glob("tnx_crm-*.whl"))
    _run(python, "-m", "pip", "install", "-q", "--no-deps", wheel, cwd=tmp_path)
    where = _run(python, "-c", "import server; print(server.__file__)", cwd=elsewhere)
    assert where.startswith(str(venv)), where

    http_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update(
        CRM_DATA_DIR=str(tmp_path / "data"),
        CRM_GRPC_PORT=str(free_port()),
        CRM_HTTP_PORT=str(http_port),
        CRM_MCP_PORT=str(free_port()),
        CRM_LOG_LEVEL="WARNING",
    )
    log = (tmp_path / "up.log").open("w")
    up = subprocess.Popen(
        [venv / "bin" / "tnx-crm", "up", "--workers", "1"],
        cwd=elsewhere,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 120
        while True:
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            try:
                if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the installed stack never became ready"
            time.sleep(0.2)
        key = _create_key(venv, elsewhere, env)
        created = requests.post(
            f"{base}/api/v1/crm/leads",
            json={"email": "wheel@example.com"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert created.status_code == 200, created.text
        spec = requests.get(f"{base}/api/v1/openapi.json", timeout=10)
        assert spec.status_code == 200 and spec.json()["openapi"].startswith("3.1")
        assert (tmp_path / "data" / "gateway" / "descriptor.binpb").exists()
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()
        log.close()


def _create_key(venv: Path, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [venv / "bin" / "tnx-crm", "workspaces", "create", "wheel"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1]
