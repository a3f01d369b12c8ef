"""`tnx-crm leads …` as a user runs it: JSON output that parses, readable output otherwise,
and exit codes 2 (usage) and 3 (API errors, with the reason on stderr)."""

from __future__ import annotations

import json

import tnx_crm

from tests.client.conftest import CliRunner


def test_create_get_update_archive_with_json_output(cli: CliRunner) -> None:
    created = cli(
        "leads", "create", "--email", "cli@acme.example", "--first-name", "Cli",
        "--status", "NEW", "--custom", "employees=120", "--custom", "industry=SaaS", "--json",
    )  # fmt: skip
    assert created.code == 0, created.stderr
    lead = json.loads(created.stdout)
    assert lead["email"] == "cli@acme.example"
    assert lead["status"] == "LEAD_STATUS_NEW"  # enums by name, proto field names
    assert lead["custom_fields"] == {"employees": 120, "industry": "SaaS"}
    assert lead["score"] == 0  # every field, as the REST API shows it

    fetched = cli("leads", "get", lead["id"], "--json")
    assert json.loads(fetched.stdout) == lead

    updated = cli(
        "leads", "update", lead["id"], "--title", "CTO", "--unset-custom", "employees", "--json"
    )
    assert updated.code == 0, updated.stderr
    changed = json.loads(updated.stdout)
    assert (changed["title"], changed["custom_fields"]) == ("CTO", {"industry": "SaaS"})

    readable = cli("leads", "get", lead["id"])
    assert "email: cli@acme.example" in readable.stdout.splitlines()
    assert "title: CTO" in readable.stdout.splitlines()

    archived = cli("leads", "archive", lead["id"], "--json")
    assert json.loads(archived.stdout)["archived_at"]


def test_list_and_search_print_json_lines_or_a_table(
    cli: CliRunner, client: tnx_crm.Client
) -> None:
    ids = [
        client.leads.create(email=f"t{i}@table.example", title="Head of Growth", score=i).id
        for i in range(4)
    ]
    listed = cli("leads", "list", "--filter", "score >= 1", "--page-size", "2", "--json")
    assert listed.code == 0, listed.stderr
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == ids[1:]

    limited = cli("leads", "list", "--limit", "2", "--json")
    assert len(limited.stdout.splitlines()) == 2

    table = cli("leads", "search", "head of growth").stdout.splitlines()
    assert table[0].split() == ["ID", "EMAIL", "NAME", "COMPANY", "SCORE", "STATUS"]
    assert sorted(line.split()[0] for line in table[1:]) == sorted(ids)

    nothing = cli("leads", "search", "nobody matches this")
    assert (nothing.code, nothing.stdout.strip()) == (0, "(none)")


def test_api_errors_exit_3_with_reason_and_field_violations(cli: CliRunner) -> None:
    missing = cli("leads", "get", "lead_01JUNKNOWN")
    assert missing.code == 3
    assert "NOT_FOUND" in missing.stderr and "LEAD_NOT_FOUND" in missing.stderr
    assert "Traceback" not in missing.stderr

    invalid = cli("leads", "create", "--email", "not-an-email", "--score", "-3")
    assert invalid.code == 3
    assert "LEAD_INVALID" in invalid.stderr
    assert "lead.email:" in invalid.stderr and "lead.score: must not be negative" in invalid.stderr

    unauthenticated = cli("leads", "list", key="tnx_wrong")
    assert unauthenticated.code == 3 and "UNAUTHENTICATED" in unauthenticated.stderr


def test_usage_errors_exit_2(cli: CliRunner) -> None:
    unknown = cli("leads", "list", "--colour", "blue")
    assert unknown.code == 2 and "unrecognized arguments: --colour" in unknown.stderr
    no_key = cli("leads", "list", key="")
    assert no_key.code == 2 and "CRM_API_KEY" in no_key.stderr
    nothing = cli("leads", "update", "lead_x")
    assert nothing.code == 2 and "nothing to update" in nothing.stderr
    bad_custom = cli("leads", "create", "--email", "x@acme.example", "--custom", "novalue")
    assert bad_custom.code == 2 and "KEY=VALUE" in bad_custom.stderr
    bad_status = cli("leads", "create", "--email", "x@acme.example", "--status", "HOT")
    assert bad_status.code == 2 and "LeadStatus" in bad_status.stderr
