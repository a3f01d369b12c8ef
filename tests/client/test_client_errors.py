"""Failed calls raise ApiError subclasses that carry the server's ErrorInfo reason, metadata
and BadRequest field violations."""

from __future__ import annotations

import grpc
import pytest
import tnx_crm

from tests.conftest import Workspace


def test_not_found_carries_reason_and_metadata(client: tnx_crm.Client) -> None:
    with pytest.raises(tnx_crm.NotFound) as caught:
        client.leads.get("lead_01JUNKNOWN")
    error = caught.value
    assert isinstance(error, tnx_crm.ApiError)
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.reason == "LEAD_NOT_FOUND"
    assert error.domain == "crm.tnx"
    assert error.metadata == {"id": "lead_01JUNKNOWN"}
    assert "not found" in error.message


def test_invalid_input_carries_field_violations(client: tnx_crm.Client) -> None:
    with pytest.raises(tnx_crm.InvalidArgument) as caught:
        client.leads.create(email="not an email", score=-1)
    error = caught.value
    assert error.reason == "LEAD_INVALID"
    fields = [field for field, _ in error.field_violations]
    assert set(fields) == {"lead.email", "lead.score"}
    assert all(description for _, description in error.field_violations)
    assert "lead.score: must not be negative" in str(error)


def test_duplicate_is_already_exists(client: tnx_crm.Client) -> None:
    client.leads.create(email="dup@acme.example")
    with pytest.raises(tnx_crm.AlreadyExists) as caught:
        client.leads.create(email="DUP@acme.example")
    assert caught.value.reason == "LEAD_EMAIL_TAKEN"
    assert caught.value.field_violations == [("lead.email", "already used by another lead")]


def test_a_bad_key_is_unauthenticated(grpc_server: tuple[str, int]) -> None:
    client = tnx_crm.Client(grpc_server[0], api_key="tnx_wrong")
    with client, pytest.raises(tnx_crm.Unauthenticated) as caught:
        client.leads.get("lead_x")
    assert caught.value.reason
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_the_key_comes_from_the_environment(
    grpc_server: tuple[str, int], workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_API_KEY", workspace.key)
    monkeypatch.setenv("CRM_GRPC_TARGET", grpc_server[0])
    with tnx_crm.Client() as client:
        assert client.target == grpc_server[0]
        assert client.leads.create(email="env@acme.example").email == "env@acme.example"


def test_unknown_keyword_is_a_type_error_before_any_call(client: tnx_crm.Client) -> None:
    with pytest.raises(TypeError, match="titel"):
        client.leads.create(email="x@acme.example", titel="CTO")
    with pytest.raises(ValueError, match="LeadStatus"):
        client.leads.create(email="x@acme.example", status="hot")
    with pytest.raises(TypeError, match="page_size"):
        client.leads.list(limit=5)


def test_deadline_applies_per_call(client: tnx_crm.Client) -> None:
    with pytest.raises(tnx_crm.DeadlineExceeded):
        client.leads.create(email="slow@acme.example", timeout=0.000001)
