"""The Python client (clients/python/tnx_crm) and the CLI's resource commands, against the
session's real server; imports run on a real worker, as in tests/imports."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import tnx_crm

from server.config import REPO_ROOT
from tests.conftest import Workspace
from tests.support import stack
from tests.support.imports import WorkerProcess, import_env


@pytest.fixture
def client(grpc_server: tuple[str, int], workspace: Workspace) -> Iterator[tnx_crm.Client]:
    with tnx_crm.Client(grpc_server[0], api_key=workspace.key) as connected:
        yield connected


@pytest.fixture(scope="package")
def worker(
    database_url: str, work_dir: Path, grpc_server: tuple[str, int]
) -> Iterator[WorkerProcess]:
    """An import worker for this directory's tests only (package scope: it is gone before
    other directories' tests, which may count or kill their own workers)."""
    with WorkerProcess(database_url, work_dir / "client-worker.log") as process:
        yield process


@contextmanager
def server_on_port(database_url: str, port: int, log_path: Path) -> Iterator[str]:
    """`tnx-crm serve` on a given port (tests/support/stack picks a free one each time), so
    a test can stop a server and start another where clients expect it."""
    env = {
        **os.environ,
        "CRM_DATABASE_URL": database_url,
        "CRM_GRPC_PORT": str(port),
        "CRM_LOG_LEVEL": "WARNING",
        **import_env(),
    }
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve"],
            env=env,
            stdout=log,
            stderr=log,
            cwd=REPO_ROOT,
        )
        try:
            stack.wait_until_serving(f"127.0.0.1:{port}")
            yield f"127.0.0.1:{port}"
        finally:
            process.kill()  # a crash, as a client sees it: the connection just drops
            process.wait()


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(grpc_server: tuple[str, int], workspace: Workspace, tmp_path: Path) -> CliRunner:
    return CliRunner(grpc_server[0], workspace.key, tmp_path)


class CliRunner:
    """`python -m server.cli …` (the `tnx-crm` entry point) as a user runs it: the key from
    CRM_API_KEY, the server from --server, in a scratch working directory, with no other
    CRM_ variable set."""

    def __init__(self, address: str, key: str, cwd: Path) -> None:
        self.address, self.key, self.cwd = address, key, cwd

    def __call__(self, *args: str, key: str | None = None, server: bool = True) -> CliResult:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
        env["CRM_API_KEY"] = self.key if key is None else key
        argv = [sys.executable, "-m", "server.cli", *args]
        if server:
            argv += ["--server", self.address]
        done = subprocess.run(
            argv, env=env, cwd=self.cwd, capture_output=True, text=True, timeout=120
        )
        return CliResult(done.returncode, done.stdout, done.stderr)
