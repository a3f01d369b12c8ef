"""`tnx-crm lists …`: create from a rule tree (inline or from a file), members, exports."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import tnx_crm

from tests.client.conftest import CliRunner

RULES = {
    "combinator": "AND",
    "rules": [{"condition": {"field": "title", "op": "contains", "value": "growth"}}],
}


def test_rule_list_members_and_export(cli: CliRunner, client: tnx_crm.Client) -> None:
    growth = [client.leads.create(email=f"g{i}@l.example", title="VP Growth").id for i in range(3)]
    client.leads.create(email="cfo@l.example", title="CFO")
    rules_file = cli.cwd / "rules.json"
    rules_file.write_text(json.dumps(RULES))

    created = cli("lists", "create", "Growth", "--rules-file", "rules.json", "--json")
    assert created.code == 0, created.stderr
    segment = json.loads(created.stdout)
    assert (segment["membership"], segment["member_count"]) == ("RULE", "3")  # int64: a string

    members = cli("lists", "members", segment["id"], "--json")
    assert sorted(json.loads(line)["id"] for line in members.stdout.splitlines()) == growth

    exported = cli("lists", "export", segment["id"], "--fields", "email,title")
    assert exported.code == 0, exported.stderr
    rows = list(csv.reader(io.StringIO(exported.stdout)))
    assert rows[0] == ["email", "title"] and len(rows) == 4

    to_file = cli("lists", "export", segment["id"], "--format", "meta", "-o", "meta.csv")
    assert to_file.code == 0, to_file.stderr
    meta = (cli.cwd / "meta.csv").read_text().splitlines()
    assert meta[0].startswith("EMAIL,PHONE,FN") and len(meta) == 4
    assert "@" not in "".join(meta)  # identifiers hashed
    assert f"to {Path('meta.csv')}" in to_file.stderr

    table = cli("lists", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "MEMBERSHIP", "STATE", "MEMBERS"]
    assert any(line.startswith(segment["id"]) and "RULE" in line for line in table[1:])


def test_static_list_add_and_get(cli: CliRunner, client: tnx_crm.Client) -> None:
    lead = client.leads.create(email="s@l.example").id
    segment = json.loads(cli("lists", "create", "VIPs", "--json").stdout)
    assert segment["membership"] == "STATIC"
    added = json.loads(cli("lists", "add", segment["id"], lead, "--json").stdout)
    assert added["changed_lead_ids"] == [lead]
    shown = cli("lists", "get", segment["id"]).stdout.splitlines()
    assert "member_count: 1" in shown and "membership: STATIC" in shown


def test_file_and_rule_mistakes_are_usage_errors(cli: CliRunner) -> None:
    missing = cli("lists", "create", "X", "--rules-file", "nope.json")
    assert missing.code == 2
    assert "nope.json" in missing.stderr and "No such file" in missing.stderr
    assert "Traceback" not in missing.stderr

    not_json = cli("lists", "create", "X", "--rules", "{title contains growth}")
    assert not_json.code == 2 and "not valid JSON" in not_json.stderr

    bad_field = cli("lists", "create", "X", "--rules", json.dumps({"rules": [
        {"condition": {"field": "titel", "op": "eq", "value": "x"}}]}))  # fmt: skip
    assert bad_field.code == 3 and "titel" in bad_field.stderr

    no_dir = cli("lists", "export", "seg_x", "-o", "no/such/dir/out.csv")
    assert no_dir.code == 2 and "no/such/dir/out.csv" in no_dir.stderr
