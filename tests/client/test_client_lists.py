"""Segments (`client.lists`): static and rule lists, members over pages, exports to a path or
a file object."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import tnx_crm
from tnx.crm.v1 import segment_pb2


def test_static_list_members_add_remove_and_iterate(client: tnx_crm.Client) -> None:
    leads = [client.leads.create(email=f"m{i}@list.example").id for i in range(5)]
    segment = client.lists.create(name="Beta testers", membership="static")
    assert segment.membership == segment_pb2.Segment.STATIC

    added = client.lists.add(segment.id, [*leads, "lead_unknown"])
    assert list(added.changed_lead_ids) == leads
    assert list(added.not_found_lead_ids) == ["lead_unknown"]
    assert added.member_count == 5
    removed = client.lists.remove(segment.id, leads[:1])
    assert removed.member_count == 4

    members = client.lists.members(segment.id, page_size=2)
    assert sorted(lead.id for lead in members) == sorted(leads[1:])
    assert client.lists.get(segment.id).member_count == 4
    assert segment.id in [s.id for s in client.lists.list(page_size=1)]

    renamed = client.lists.update(segment.id, name="Beta", update_mask=["name"])
    assert renamed.name == "Beta"
    client.lists.delete(segment.id)
    with pytest.raises(tnx_crm.NotFound):
        client.lists.get(segment.id)


def test_rule_list_from_a_dict_and_export_to_a_path(client: tnx_crm.Client, tmp_path: Path) -> None:
    client.leads.create(email="vp@rule.example", title="VP Growth", first_name="=1+1")
    client.leads.create(email="cfo@rule.example", title="CFO")
    segment = client.lists.create(
        name="Growth",
        membership="RULE",
        rules={
            "combinator": "AND",
            "rules": [{"condition": {"field": "title", "op": "contains", "value": "growth"}}],
        },
    )
    assert segment.member_count == 1

    path = tmp_path / "growth.csv"
    written = client.lists.export(segment.id, path)
    assert written == path.stat().st_size
    rows = list(csv.DictReader(path.open()))
    assert [row["email"] for row in rows] == ["vp@rule.example"]
    assert rows[0]["first_name"] == "'=1+1"  # neutralised against formula injection

    hashed = io.BytesIO()
    client.lists.export(segment.id, hashed, format="google_ads")
    header = hashed.getvalue().decode().splitlines()[0]
    assert "Email" in header and "vp@rule.example" not in hashed.getvalue().decode()

    picked = io.BytesIO()
    client.lists.export(segment.id, picked, fields=["email", "title"])
    assert picked.getvalue().decode().splitlines() == ["email,title", "vp@rule.example,VP Growth"]


def test_a_failed_export_leaves_no_file(client: tnx_crm.Client, tmp_path: Path) -> None:
    path = tmp_path / "missing.csv"
    with pytest.raises(tnx_crm.NotFound):
        client.lists.export("seg_01JUNKNOWN", path)
    assert not path.exists()
    with pytest.raises(ValueError, match="GOOGLE_ADS"):
        client.lists.export("seg_x", tmp_path / "x.csv", format="TIKTOK")
