"""A rate limit or spent budget (RESOURCE_EXHAUSTED, 429) says when to retry: a
google.rpc.RetryInfo detail and `retry-after` metadata over gRPC, a `Retry-After` header
(seconds) over REST through the gateway."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import requests
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from tnx.crm.v1 import (
    enrichment_pb2,
    enrichment_service_pb2,
    enrichment_service_pb2_grpc,
    lead_pb2,
    lead_service_pb2,
)
from tnx.crm.v1.lead_service_pb2_grpc import LeadServiceStub

from tests.conftest import Workspace
from tests.forms.support import (
    SITE,
    Forms,
    Public,
    create_form,
    embed,
    submit,
    valid_values,
)
from tests.support import db, stack
from tests.support.errors import details, json_details

FORM_LIMIT = 2  # submissions to one form a minute, on this module's own server


@dataclass(frozen=True)
class Limited:
    channel: grpc.Channel
    gateway_url: str


@pytest.fixture(scope="module")
def limited(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Limited]:
    work = tmp_path_factory.mktemp("retry-after")
    with (
        stack.grpc_server(
            database_url, work / "server.log", CRM_FORM_RATE_LIMIT_PER_MINUTE=str(FORM_LIMIT)
        ) as (address, port),
        stack.envoy_gateway(port, work) as url,
        grpc.insecure_channel(address) as channel,
    ):
        yield Limited(channel=channel, gateway_url=url)


def _retry_delay(error: grpc.RpcError) -> int:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return int(info.retry_delay.seconds)
    raise AssertionError("no RetryInfo in the error")


def _retry_after_metadata(error: grpc.RpcError) -> str:
    call: Any = error  # a grpc.Call too, which the stubs' RpcError does not say
    return next(str(value) for key, value in call.trailing_metadata() if key == "retry-after")


def test_a_form_over_its_limit_answers_with_retry_info_over_grpc(
    limited: Limited, workspace: Workspace
) -> None:
    forms, public = Forms(limited.channel), Public(limited.channel)
    form = create_form(forms, workspace)
    token = embed(forms, workspace, form.id).token
    for i in range(FORM_LIMIT):
        submit(public, form.slug, token, valid_values(email=f"g{i}@retry.io"))
    with pytest.raises(grpc.RpcError) as limited_out:
        submit(public, form.slug, token, valid_values())
    error = limited_out.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details(error)[0] == "FORM_RATE_LIMITED"
    delay = _retry_delay(error)
    assert 1 <= delay <= 60  # a token comes back within a minute
    assert _retry_after_metadata(error) == str(delay)


def test_a_form_over_its_limit_is_a_429_with_retry_after_over_rest(
    limited: Limited, http: requests.Session, workspace: Workspace
) -> None:
    form = create_form(Forms(limited.channel), workspace)
    token = embed(Forms(limited.channel), workspace, form.id).token
    url = f"{limited.gateway_url}/api/v1/public/forms/{form.slug}/submissions"
    headers = {"Origin": SITE}

    def post(email: str) -> requests.Response:
        body = {"token": token, "fields": valid_values(email=email)}
        return http.post(url, json=body, headers=headers, timeout=30)

    for i in range(FORM_LIMIT):
        assert post(f"r{i}@retry.io").status_code == 200
    refused = post("late@retry.io")
    assert refused.status_code == 429, refused.text
    assert json_details(refused.json())[0] == "FORM_RATE_LIMITED"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    retry = [d for d in refused.json()["details"] if d["@type"].endswith("RetryInfo")]
    assert retry and retry[0]["retry_delay"] == f"{refused.headers['Retry-After']}s"


def test_a_spent_enrichment_budget_says_to_retry_when_the_month_turns(
    channel: grpc.Channel,
    http: requests.Session,
    gateway_url: str,
    workspace: Workspace,
    database_url: str,
) -> None:
    enrichment = enrichment_service_pb2_grpc.EnrichmentServiceStub(channel)
    connector = enrichment.CreateConnector(
        enrichment_service_pb2.CreateConnectorRequest(
            connector=enrichment_pb2.Connector(
                name="flags",
                kind=enrichment_pb2.Connector.EMAIL_FLAGS,
                monthly_budget=1,
                enabled=True,
            )
        ),
        metadata=workspace.metadata,
    )
    db.execute(
        database_url,
        "UPDATE connectors SET calls_this_month = 1, "
        "budget_month = date_trunc('month', now() AT TIME ZONE 'UTC')::date WHERE id = %s",
        connector.id,
    )
    lead_id = (
        LeadServiceStub(channel)
        .CreateLead(
            lead_service_pb2.CreateLeadRequest(lead=lead_pb2.Lead(email="budget@retry.io")),
            metadata=workspace.metadata,
        )
        .id
    )
    request = enrichment_service_pb2.EnrichLeadRequest(id=lead_id, connector_ids=[connector.id])
    with pytest.raises(grpc.RpcError) as spent:
        enrichment.EnrichLead(request, metadata=workspace.metadata)
    assert spent.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    month = 31 * 24 * 3600
    assert 1 <= _retry_delay(spent.value) <= month
    reply = http.post(
        f"{gateway_url}/api/v1/crm/leads/{lead_id}:enrich",
        json={"connector_ids": [connector.id]},
        headers=workspace.headers,
        timeout=30,
    )
    assert reply.status_code == 429, reply.text
    assert json_details(reply.json())[0] == "BUDGET_EXHAUSTED"
    assert 1 <= int(reply.headers["Retry-After"]) <= month
