"""API keys: shown once, stored as a hash, checked on every call, revocable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tnx.crm.v1 import lead_service_pb2, lead_service_pb2_grpc

from server.auth import keys
from tests.conftest import Workspace
from tests.support import db
from tests.support.errors import details

Stub = lead_service_pb2_grpc.LeadServiceStub


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRM_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def list_with(stub: Stub, authorization: str | None) -> grpc.RpcError:
    metadata = () if authorization is None else (("authorization", authorization),)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListLeads(lead_service_pb2.ListLeadsRequest(), metadata=metadata)
    return caught.value


def test_workspaces_create_prints_a_working_key_alone_on_the_last_line(
    leads: Stub, database_url: str
) -> None:
    result = cli(database_url, "workspaces", "create", "Initech")
    key = result.stdout.strip().splitlines()[-1]
    assert keys.is_well_formed(key)
    reply = leads.ListLeads(
        lead_service_pb2.ListLeadsRequest(), metadata=(("authorization", f"Bearer {key}"),)
    )
    assert list(reply.leads) == []


def test_key_is_stored_only_as_prefix_and_hash(workspace: Workspace, database_url: str) -> None:
    rows = db.query(
        database_url,
        "SELECT prefix, secret_hash FROM api_keys WHERE workspace_id = %s",
        workspace.id,
    )
    assert rows == [(workspace.key[: keys.LOOKUP_LENGTH], keys.secret_hash(workspace.key))]
    dump = db.query(
        database_url,
        "SELECT row_to_json(k)::text FROM api_keys k WHERE workspace_id = %s",
        workspace.id,
    )
    assert workspace.key not in dump[0][0]


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "API_KEY_MISSING"),
        ("", "API_KEY_MISSING"),
        ("Basic dXNlcjpwYXNz", "API_KEY_MALFORMED"),
        ("Bearer tnx_short", "API_KEY_MALFORMED"),
        ("Bearer " + keys.generate()[:-1] + "x", "API_KEY_MALFORMED"),  # checksum broken
        ("Bearer " + keys.generate(), "API_KEY_INVALID"),  # well-formed, never issued
    ],
)
def test_missing_malformed_or_unknown_key_is_unauthenticated(
    leads: Stub, authorization: str | None, reason: str
) -> None:
    error = list_with(leads, authorization)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details(error)[0] == reason


def test_revoked_key_stops_working_and_others_keep_working(
    leads: Stub, workspace: Workspace, database_url: str
) -> None:
    second = cli(database_url, "keys", "create", "--workspace", workspace.id, "--name", "ci").stdout
    second_key = second.strip().splitlines()[-1]
    key_id = db.query(
        database_url,
        "SELECT id FROM api_keys WHERE prefix = %s",
        workspace.key[: keys.LOOKUP_LENGTH],
    )
    listing = cli(database_url, "keys", "list", "--workspace", workspace.id).stdout
    assert "active" in listing and "revoked" not in listing
    cli(database_url, "keys", "revoke", key_id[0][0])
    error = list_with(leads, f"Bearer {workspace.key}")
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    ok = leads.ListLeads(
        lead_service_pb2.ListLeadsRequest(), metadata=(("authorization", f"Bearer {second_key}"),)
    )
    assert list(ok.leads) == []
    assert "revoked" in cli(database_url, "keys", "list", "--workspace", workspace.id).stdout


def test_use_of_a_key_is_recorded_as_last_used(
    leads: Stub, workspace: Workspace, database_url: str
) -> None:
    leads.ListLeads(lead_service_pb2.ListLeadsRequest(), metadata=workspace.metadata)
    used = db.query(
        database_url, "SELECT last_used_at FROM api_keys WHERE workspace_id = %s", workspace.id
    )
    assert used[0][0] is not None


def test_health_answers_without_a_key(channel: grpc.Channel) -> None:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="tnx.crm.v1.LeadService")
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_lead_service(channel: grpc.Channel) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = [s.name for r in responses for s in r.list_services_response.service]
    assert "tnx.crm.v1.LeadService" in names


def test_workspaces_create_outside_the_stacks_directory_refuses_instead_of_starting_a_new_database(
    tmp_path: Path,
) -> None:
    """Issue 16, fault 11: from another directory the CLI started a new, empty database and
    printed a key that the running stack rejected."""
    env = {k: v for k, v in os.environ.items() if k not in ("CRM_DATABASE_URL", "CRM_DATA_DIR")}
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "workspaces", "create", "Elsewhere"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no tnx-crm database in" in result.stderr
    assert str(tmp_path) in result.stderr
    assert "tnx_" not in result.stdout
    assert not (tmp_path / ".tnx-crm" / "pg").exists()
