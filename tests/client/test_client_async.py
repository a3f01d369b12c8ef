"""The asyncio client mirrors the sync one: awaited calls, `async for` over pages, the same
errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import tnx_crm

from tests.conftest import Workspace


def test_async_create_get_list_error_and_export(
    grpc_server: tuple[str, int], workspace: Workspace, tmp_path: Path
) -> None:
    async def main() -> None:
        async with tnx_crm.AsyncClient(grpc_server[0], api_key=workspace.key) as client:
            created = [
                await client.leads.create(email=f"a{i}@async.example", title="CTO")
                for i in range(5)
            ]
            assert await client.leads.get(created[0].id) == created[0]
            listed = [lead.id async for lead in client.leads.list(page_size=2)]
            assert listed == [lead.id for lead in created]
            found = [lead.id async for lead in client.leads.search("cto", page_size=4)]
            assert sorted(found) == sorted(listed)

            with pytest.raises(tnx_crm.AlreadyExists) as caught:
                await client.leads.create(email="A0@async.example")
            assert caught.value.reason == "LEAD_EMAIL_TAKEN"
            with pytest.raises(tnx_crm.InvalidArgument) as invalid:
                await client.leads.list(filter="titel = 'x'").__anext__()
            assert invalid.value.field_violations[0][0] == "filter"

            segment = await client.lists.create(name="All", membership="STATIC")
            await client.lists.add(segment.id, listed)
            members = [lead.id async for lead in client.lists.members(segment.id, page_size=3)]
            assert sorted(members) == sorted(listed)
            written = await client.lists.export(segment.id, tmp_path / "all.csv")
            assert written == (tmp_path / "all.csv").stat().st_size
            assert len((tmp_path / "all.csv").read_text().splitlines()) == 6

            events = [e async for e in client.events.list(types=["lead.created"], page_size=2)]
            assert [e.subject_id for e in events] == listed

    asyncio.run(main())


def test_activities_and_scores(client: tnx_crm.Client) -> None:
    lead = client.leads.create(email="act@score.example", title="CTO")
    first = client.activities.record(
        lead.id, "email_click", properties={"url": "/pricing"}, idempotency_key="k1"
    )
    again = client.activities.record(lead.id, "email_click", idempotency_key="k1")
    assert again.id == first.id  # recorded once
    batch = client.activities.batch(
        [
            {"email": "act@score.example", "type": "page_view"},
            {"email": "nobody@x.example", "type": "page_view"},
        ]
    )
    assert [bool(r.error.reason) for r in batch.results] == [False, True]
    types = [a.type for a in client.activities.list(lead.id, page_size=1)]
    assert sorted(types) == ["email_click", "page_view"]
    model = client.scoring.update_model(
        fit_rules=[
            {
                "id": "cto",
                "points": 30,
                "rules": {"rules": [{"condition": {"field": "title", "op": "eq", "value": "CTO"}}]},
            }
        ],
        update_mask=["fit_rules"],
    )
    assert client.scoring.get_model().version == model.version
    assert client.scoring.get_score(lead.id).fit == 30
