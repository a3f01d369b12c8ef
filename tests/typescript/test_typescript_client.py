"""The TypeScript client (clients/typescript) against the live gRPC server: `npm ci` when its
node_modules is missing or older than the lockfile, `tsc`, then its node:test suite with a
fresh workspace's key.

Outside CI a missing node/npm skips with the reason; under CI=true it fails (.ci/run installs
Node when the machine has none)."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Workspace

TS_DIR = Path(__file__).resolve().parents[2] / "clients" / "typescript"
# Every test in clients/typescript/test/live.test.ts: each must run and pass.
EXPECTED_TESTS = {
    "creates a lead with custom fields and reads it back by id",
    "lists leads page by page, following next_cursor to the end",
    "an unknown lead is NOT_FOUND with the reason LEAD_NOT_FOUND",
    "an invalid email is INVALID_ARGUMENT naming lead.email",
    "a second lead with the same email in other case is ALREADY_EXISTS (LEAD_EMAIL_TAKEN)",
    "a wrong API key is UNAUTHENTICATED",
}


@dataclass(frozen=True)
class NodeTools:
    node: str
    npm: str


def node_tools() -> NodeTools:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node and npm:
        return NodeTools(node, npm)
    reason = "node/npm not found; the TypeScript client needs Node 20+ and npm"
    if os.environ.get("CI") == "true":
        pytest.fail(f"TypeScript client test cannot run under CI: {reason}")
    pytest.skip(f"TypeScript client test skipped: {reason}")


def install_dependencies(npm: str) -> None:
    """`npm ci` unless node_modules matches the lockfile (npm ci rewrites its stamp file).

    Other test sessions may share this checkout: the lock on package-lock.json keeps two of
    them from rewriting node_modules at once."""
    lockfile = TS_DIR / "package-lock.json"
    stamp = TS_DIR / "node_modules" / ".package-lock.json"
    with lockfile.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not stamp.exists() or stamp.stat().st_mtime < lockfile.stat().st_mtime:
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=TS_DIR,
                check=True,
                timeout=300,
            )


@pytest.fixture(scope="module")
def compiled_tests() -> Iterator[tuple[NodeTools, Path]]:
    """tsc into a directory of this session's own (under dist/, so Node finds node_modules),
    so that concurrent sessions never read each other's half-written output."""
    tools = node_tools()
    install_dependencies(tools.npm)
    out_dir = TS_DIR / "dist" / f"pytest-{uuid.uuid4().hex[:12]}"
    try:
        build = subprocess.run(
            [tools.npm, "run", "--silent", "build", "--", "--outDir", str(out_dir)],
            cwd=TS_DIR,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert build.returncode == 0, f"tsc failed:\n{build.stdout}\n{build.stderr}"
        yield tools, out_dir / "test" / "live.test.js"
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def test_typescript_client_creates_pages_through_leads_and_reads_error_reasons(
    compiled_tests: tuple[NodeTools, Path], grpc_server: tuple[str, int], workspace: Workspace
) -> None:
    tools, test_file = compiled_tests
    address, _ = grpc_server
    result = subprocess.run(
        [tools.node, "--test", "--test-reporter=tap", str(test_file)],
        cwd=TS_DIR,
        env={**os.environ, "CRM_GRPC_TARGET": address, "CRM_API_KEY": workspace.key},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    passed = set(re.findall(r"^ok \d+ - (.+)$", result.stdout, re.MULTILINE))
    assert passed == EXPECTED_TESTS, output
    assert "# fail 0" in result.stdout, output
