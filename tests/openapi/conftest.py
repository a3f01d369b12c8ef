"""A stack of its own for the OpenAPI tests: its own database, server and gateway.

The fuzzer creates whatever the spec lets it create, triggers and enrichment connectors with
made-up https URLs included. Workers deliver webhooks and run enrichments for the database
they serve, so this stack gets a database no worker of the session reads and queue names no
worker consumes: nothing the fuzzer creates is ever sent anywhere.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from server.config import REPO_ROOT
from tests.conftest import Workspace
from tests.support import db, stack

SPEC_PATH = REPO_ROOT / "gateway" / "openapi.json"


@dataclass(frozen=True)
class Gateway:
    url: str
    grpc_address: str
    database_url: str
    work_dir: Path

    def workspace(self) -> Workspace:
        created = db.create_workspace(self.database_url, name="openapi")
        return Workspace(id=created.workspace_id, key=created.key)


@pytest.fixture(scope="package")
def spec() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="package")
def isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("openapi")
    unconsumed = f"openapi-{uuid.uuid4().hex[:8]}"
    with (
        db.fresh_database() as url,
        stack.grpc_server(
            url,
            work / "server.log",
            CRM_IMPORT_QUEUE=f"{unconsumed}-imports",
            CRM_SCORING_QUEUE=f"{unconsumed}-scoring",
            CRM_ENRICHMENT_QUEUE=f"{unconsumed}-enrichment",
            CRM_OUTBOUND_ALLOW="",
        ) as (address, port),
        stack.envoy_gateway(port, work) as gateway_url,
    ):
        yield Gateway(url=gateway_url, grpc_address=address, database_url=url, work_dir=work)
