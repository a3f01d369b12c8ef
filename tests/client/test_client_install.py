"""`pip install ./clients/python` into a fresh venv: the client distribution brings only
grpcio, protobuf and googleapis-common-protos (and what they need), and works on its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import tnx_crm

from server.config import REPO_ROOT
from tests.conftest import Workspace

ALLOWED = {
    "tnx-crm-client",
    "grpcio",
    "protobuf",
    "googleapis-common-protos",
    "typing-extensions",  # grpcio's own dependency
}
VENV_TOOLS = {"pip", "setuptools", "wheel"}

CALL = """
import os, tnx_crm
with tnx_crm.Client() as client:  # target and key from CRM_GRPC_TARGET and CRM_API_KEY
    lead = client.leads.create(email="venv@install.example")
    try:
        client.leads.get("lead_missing")
    except tnx_crm.NotFound as e:
        print(lead.id, e.reason, tnx_crm.__file__)
"""


def _run(*argv: str | Path, env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [str(a) for a in argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_client_installs_alone_in_a_fresh_venv_and_calls_the_server(
    tmp_path: Path, grpc_server: tuple[str, int], workspace: Workspace, client: tnx_crm.Client
) -> None:
    # A copy, so the build's egg-info and build/ never land in the checkout.
    source = tmp_path / "tnx-crm-client"
    shutil.copytree(
        REPO_ROOT / "clients" / "python",
        source,
        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"),
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, env=env, cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", source, env=env, cwd=tmp_path)

    listed = json.loads(_run(python, "-m", "pip", "list", "--format=json", env=env, cwd=tmp_path))
    names = {p["name"].lower().replace("_", "-") for p in listed}
    assert names - VENV_TOOLS == ALLOWED

    call_env = {**env, "CRM_GRPC_TARGET": grpc_server[0], "CRM_API_KEY": workspace.key}
    lead_id, reason, module = _run(python, "-c", CALL, env=call_env, cwd=tmp_path).split()
    assert reason == "LEAD_NOT_FOUND"
    assert Path(module).is_relative_to(venv)  # the installed copy, not the checkout
    assert client.leads.get(lead_id).email == "venv@install.example"
