"""The sync client's leads and companies: keyword arguments onto the proto fields, enum
names, and iterators that follow next_cursor."""

from __future__ import annotations

import datetime

import tnx_crm
from tnx.crm.v1 import lead_pb2


def test_create_get_update_archive_round_trip(client: tnx_crm.Client) -> None:
    created = client.leads.create(
        email="jane@acme.example",
        first_name="Jane",
        title="Head of Growth",
        status="qualified",  # a short enum name, any case
        custom_fields={"industry": "SaaS", "employees": 120},
    )
    assert created.id.startswith("lead_")
    assert created.status == lead_pb2.LEAD_STATUS_QUALIFIED
    assert tnx_crm.enum_name(created, "status") == "LEAD_STATUS_QUALIFIED"

    fetched = client.leads.get(created.id)
    assert fetched == created

    updated = client.leads.update(
        created.id,
        title="VP Growth",
        custom_fields={},
        update_mask=["title", "custom_fields.employees"],
    )
    assert updated.title == "VP Growth"
    assert dict(updated.custom_fields) == {"industry": "SaaS"}  # employees removed by the mask

    archived = client.leads.archive(created.id)
    assert archived.HasField("archived_at")
    assert created.id not in [lead.id for lead in client.leads.list()]
    assert created.id in [lead.id for lead in client.leads.list(include_archived=True)]
    assert not client.leads.unarchive(created.id).HasField("archived_at")


def test_list_iterator_follows_next_cursor_across_pages(client: tnx_crm.Client) -> None:
    ids = [client.leads.create(email=f"p{i}@pages.example", score=i).id for i in range(7)]
    client.leads.create(email="other@elsewhere.example", score=100)

    listed = list(client.leads.list(filter='email_domain = "pages.example"', page_size=3))
    assert [lead.id for lead in listed] == ids  # three pages of 3, 3 and 1, in creation order

    high = client.leads.list(score_min=5, score_max=6, page_size=1)
    assert [lead.email for lead in high] == ["p5@pages.example", "p6@pages.example"]


def test_filters_take_datetimes_and_dates(client: tnx_crm.Client) -> None:
    lead = client.leads.create(email="dated@acme.example")
    tomorrow = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    assert [x.id for x in client.leads.list(created_before=tomorrow)] == [lead.id]
    assert list(client.leads.list(created_after=tomorrow.date().isoformat())) == []


def test_search_iterates_every_match(client: tnx_crm.Client) -> None:
    for i in range(5):
        client.leads.create(email=f"g{i}@acme.example", title="Head of Growth")
    client.leads.create(email="cfo@acme.example", title="CFO")
    found = list(client.leads.search("head of gro", page_size=2))
    assert sorted(lead.email for lead in found) == [f"g{i}@acme.example" for i in range(5)]


def test_companies_create_list_and_link_leads(client: tnx_crm.Client) -> None:
    company = client.companies.create(name="Acme", domain="https://www.Acme.example/about")
    assert company.domain == "acme.example"
    lead = client.leads.create(email="joe@acme.example")
    assert lead.company_id == company.id
    assert [c.id for c in client.companies.list(query="acme")] == [company.id]
