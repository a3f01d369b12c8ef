"""Schemathesis against the live gateway, from the committed gateway/openapi.json: requests
generated from the spec (valid and invalid) never get a server error, and every reply — its
status, content type and body — is one the spec describes.

Path ids are half made up, half real (a lead, company, list, form, trigger, delivery,
connector, enrichment run and import created first), so replies about real resources are
checked against their schemas too, not only the error replies to unknown ids.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.openapi.conftest import SPEC_PATH, Gateway

# Streams a fuzzer cannot drive: each stays open while its subject lives (the events feed
# for as long as the client stays, an import watch until the job ends, and no worker runs
# jobs here), so a request would only wait for its timeout. tests/openapi/test_served.py
# reads their first replies instead.
STREAMS = ["WatchEvents", "WatchImport"]
# MCP is JSON-RPC through the gateway to a server of its own, which this stack does not run
# (tests/mcp tests it); the spec describes only its envelope.
NOT_REST = ["CallMcp"]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
CONFIG = SchemathesisConfig.from_dict(
    {
        # Bounded, and the same cases on every run (CI must not flake on a lucky draw).
        "generation": {"max-examples": 12, "deterministic": True, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        "request-timeout": 20,
        # Hypothesis's health checks time the generation: on a loaded CI machine they would
        # fail a run that found nothing.
        "suppress-health-check": ["all"],
    }
)
# Raw import bodies are text; schemathesis sends them as it sends text/plain.
schemathesis.serializer.alias("text/csv", "text/plain")
schemathesis.serializer.alias("application/x-ndjson", "text/plain")

schema = schemathesis.openapi.from_path(SPEC_PATH, config=CONFIG).exclude(
    operation_id=STREAMS + NOT_REST
)


@dataclass(frozen=True)
class Target:
    url: str
    headers: dict[str, str]
    ids: dict[str, str]  # collection in the path (`leads`, `triggers`, …) -> a real id


@pytest.fixture(scope="module")
def target(isolated: Gateway) -> Target:
    workspace = isolated.workspace()
    with requests.Session() as http:
        http.headers.update(workspace.headers)
        return Target(isolated.url, workspace.headers, _create_resources(http, isolated.url))


def _create_resources(http: requests.Session, base: str) -> dict[str, str]:
    def post(path: str, **kwargs: object) -> dict[str, str]:
        reply = http.post(base + "/api/v1/crm" + path, timeout=30, **kwargs)  # type: ignore[arg-type]
        assert reply.status_code == 200, reply.text
        created: dict[str, str] = reply.json()
        return created

    lead = post("/leads", json={"email": "fuzz@example.com", "first_name": "Fuzz"})
    connector = post(
        "/enrichment/connectors", json={"name": "flags", "kind": "EMAIL_FLAGS", "enabled": True}
    )
    form = post(
        "/forms",
        json={
            "name": "Fuzz",
            "fields": [
                {
                    "name": "email",
                    "label": "Email",
                    "type": "EMAIL",
                    "required": True,
                    "maps_to": "email",
                }
            ],
            "allowed_origins": ["https://www.example.com"],
        },
    )
    trigger = post(
        "/triggers",
        json={
            "name": "fuzz",
            "event_types": ["lead.created"],
            "action": {"webhook": {"url": "https://hooks.example.com/fuzz"}},
        },
    )
    upload = post(
        "/imports",
        data=b"email\nrow@example.com\n",
        headers={"Content-Type": "text/csv"},
    )
    return {
        "leads": lead["id"],
        "companies": post("/companies", json={"name": "Fuzz Co", "domain": "fuzz.example"})["id"],
        "lists": post("/lists", json={"name": "fuzz", "membership": "STATIC"})["id"],
        "forms": form["id"],
        "slug": form["slug"],
        "triggers": trigger["id"],
        "deliveries": post(f"/triggers/{trigger['id']}:test", json={})["id"],
        "connectors": connector["id"],
        "runs": post(f"/leads/{lead['id']}:enrich", json={"connector_ids": [connector["id"]]})[
            "id"
        ],
        "imports": upload["id"],
    }


def _use_real_ids(case: Case[Any], ids: dict[str, str]) -> None:
    """Replace about half the generated path ids (by a hash of the value, so a case stays
    the same case) with the id of a real resource of that collection."""
    for name, value in list((case.path_parameters or {}).items()):
        found = re.search(rf"/([a-z_]+)/\{{{name}\}}", case.path)
        real = ids.get("slug" if name == "slug" else found.group(1) if found else "")
        if real and zlib.crc32(str(value).encode()) % 2:
            case.path_parameters[name] = real  # type: ignore[index]


@schema.parametrize()
def test_generated_requests_get_no_server_error_and_replies_the_spec_describes(
    case: Case[Any], target: Target
) -> None:
    _use_real_ids(case, target.ids)
    case.call_and_validate(
        base_url=target.url,
        headers=target.headers,
        checks=CHECKS,
    )
