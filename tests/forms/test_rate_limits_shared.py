"""Submission rate limits hold across server processes (issue 16: per-process state moves to
where every process shares it): with two servers, a client gets the limit, not twice it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.conftest import Workspace
from tests.forms.support import Forms, Public, create_form, embed, submit, valid_values
from tests.support import db, stack

PER_IP = 4


@pytest.fixture
def two_servers(database_url: str, tmp_path: Path) -> Iterator[tuple[grpc.Channel, ...]]:
    limits = {"CRM_FORM_IP_RATE_LIMIT_PER_MINUTE": str(PER_IP)}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    with (
        stack.grpc_server(database_url, tmp_path / "a" / "server.log", **limits) as (_, a),
        stack.grpc_server(database_url, tmp_path / "b" / "server.log", **limits) as (_, b),
        # Through each server's unix socket, as the gateway calls them: x-forwarded-for counts.
        grpc.insecure_channel(f"unix:{tmp_path}/a/grpc-{a}.sock") as first,
        grpc.insecure_channel(f"unix:{tmp_path}/b/grpc-{b}.sock") as second,
    ):
        yield first, second


def test_a_client_gets_its_limit_once_across_two_servers(
    two_servers: tuple[grpc.Channel, ...], workspace: Workspace, database_url: str
) -> None:
    first, second = two_servers
    forms = Forms(first)
    form = create_form(forms, workspace)
    token = embed(forms, workspace, form.id).token
    outcomes = []
    for i in range(PER_IP + 2):
        public = Public(first if i % 2 == 0 else second)
        try:
            values = valid_values(email=f"s{i}@x.io")
            submit(public, form.slug, token, values, client_ip="198.51.100.9")
            outcomes.append("ok")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            outcomes.append("limited")
    assert outcomes == ["ok"] * PER_IP + ["limited"] * 2
    stored = db.query(
        database_url, "SELECT count(*) FROM form_submissions WHERE form_id = %s", form.id
    )
    assert stored[0][0] == PER_IP
