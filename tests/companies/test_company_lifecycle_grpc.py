"""Creating, reading, updating, archiving and listing companies over gRPC."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.protobuf import struct_pb2
from tnx.crm.v1 import company_pb2, company_service_pb2

from tests.companies.support import CompanyStub, chain, create, list_names, set_parent, update
from tests.conftest import Workspace
from tests.support import db
from tests.support.errors import details


def test_created_company_comes_back_with_id_and_normalised_firmographics(
    companies: CompanyStub, workspace: Workspace
) -> None:
    custom = struct_pb2.Struct()
    custom.update({"tier": "gold"})
    made = create(
        companies,
        workspace,
        name="  Acme GmbH ",
        domain="https://WWW.Acme.DE/about",
        industry="SaaS",
        employee_count=0,
        annual_revenue=12_000_000,
        country="de",
        city="Berlin",
        founded_year=1999,
        website="acme.de",
        linkedin_url="https://www.linkedin.com/company/acme",
        custom_fields=custom,
    )
    assert made.id.startswith("cmp_")
    assert (made.name, made.domain, made.country) == ("Acme GmbH", "acme.de", "DE")
    assert made.HasField("employee_count") and made.employee_count == 0
    assert (made.annual_revenue, made.annual_revenue_currency) == (12_000_000, "USD")
    assert made.website == "https://acme.de"
    assert not made.HasField("archived_at") and made.parent_company_id == ""
    fetched = companies.GetCompany(
        company_service_pb2.GetCompanyRequest(id=made.id), metadata=workspace.metadata
    )
    assert fetched == made


def test_update_with_mask_changes_only_named_fields_and_can_clear_a_number(
    companies: CompanyStub, workspace: Workspace
) -> None:
    made = create(companies, workspace, name="Initech", industry="Software", employee_count=40)
    changed = update(
        companies,
        workspace,
        made.id,
        ["industry", "employee_count"],
        industry="Consulting",
        name="ignored",
    )
    assert (changed.name, changed.industry) == ("Initech", "Consulting")
    assert not changed.HasField("employee_count")
    assert changed.updated_at.ToDatetime() > made.updated_at.ToDatetime()


def test_update_without_mask_sets_every_given_field(
    companies: CompanyStub, workspace: Workspace
) -> None:
    made = create(companies, workspace, name="Hooli", city="Palo Alto")
    changed = companies.UpdateCompany(
        company_service_pb2.UpdateCompanyRequest(
            company=company_pb2.Company(id=made.id, employee_count=0, country="US")
        ),
        metadata=workspace.metadata,
    )
    assert (changed.city, changed.country, changed.employee_count) == ("Palo Alto", "US", 0)
    assert changed.HasField("employee_count")


def test_duplicate_domain_in_any_case_or_with_www_is_already_exists_and_writes_nothing(
    companies: CompanyStub, workspace: Workspace, database_url: str
) -> None:
    create(companies, workspace, name="Globex", domain="globex.com")
    other = create(companies, workspace, name="Globex Two")
    before = db.snapshot(database_url, workspace.id)
    for domain in ["GLOBEX.com", "www.globex.com", "http://www.Globex.com/"]:
        with pytest.raises(grpc.RpcError) as caught:
            create(companies, workspace, name="Copy", domain=domain)
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert details(caught.value) == ("COMPANY_DOMAIN_TAKEN", ["company.domain"])
    with pytest.raises(grpc.RpcError) as caught:
        update(companies, workspace, other.id, ["domain"], domain="Globex.com")
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert db.snapshot(database_url, workspace.id) == before


def test_same_domain_may_exist_in_two_workspaces(
    companies: CompanyStub, workspace: Workspace, other_workspace: Workspace
) -> None:
    first = create(companies, workspace, name="Shared", domain="shared.io")
    second = create(companies, other_workspace, name="Shared", domain="shared.io")
    assert first.id != second.id


@pytest.mark.parametrize(
    ("fields", "violated"),
    [
        ({"domain": "not a domain"}, ["company.domain"]),
        ({"domain": "localhost"}, ["company.domain"]),
        ({"domain": "jane@acme.com"}, ["company.domain"]),
        ({"country": "Germany"}, ["company.country"]),
        ({"country": "XX"}, ["company.country"]),
        ({"employee_count": -1}, ["company.employee_count"]),
        ({"annual_revenue": -5}, ["company.annual_revenue"]),
        ({"annual_revenue_currency": "DOLLARS"}, ["company.annual_revenue_currency"]),
        ({"founded_year": 30000}, ["company.founded_year"]),
        ({"linkedin_url": "https://example.com/acme"}, ["company.linkedin_url"]),
        ({"name": "  "}, ["company.name"]),
        (
            {"domain": "bad domain", "country": "ZZZ", "employee_count": -3},
            ["company.domain", "company.employee_count", "company.country"],
        ),
    ],
)
def test_malformed_firmographics_are_invalid_naming_each_field_and_change_nothing(
    companies: CompanyStub,
    workspace: Workspace,
    database_url: str,
    fields: dict[str, object],
    violated: list[str],
) -> None:
    existing = create(companies, workspace, name="Valid Co")
    before = db.snapshot(database_url, workspace.id)
    with pytest.raises(grpc.RpcError) as caught:
        create(companies, workspace, **{"name": "Bad Co", **fields})
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(caught.value) == ("COMPANY_INVALID", violated)
    with pytest.raises(grpc.RpcError) as caught:
        update(companies, workspace, existing.id, list(fields), **fields)  # type: ignore[arg-type]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert db.snapshot(database_url, workspace.id) == before


def test_unknown_update_mask_path_is_invalid(companies: CompanyStub, workspace: Workspace) -> None:
    made = create(companies, workspace, name="Masked")
    for path in ["shoe_size", "id", "created_at"]:
        with pytest.raises(grpc.RpcError) as caught:
            update(companies, workspace, made.id, ["name", path], name="X")
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(caught.value) == ("UPDATE_MASK_INVALID", ["update_mask"])


def test_another_workspaces_company_is_not_found(
    companies: CompanyStub, workspace: Workspace, other_workspace: Workspace, database_url: str
) -> None:
    theirs = create(companies, other_workspace, name="Theirs")
    before = db.snapshot(database_url, other_workspace.id)
    calls: list[Callable[[], object]] = [
        lambda: companies.GetCompany(
            company_service_pb2.GetCompanyRequest(id=theirs.id), metadata=workspace.metadata
        ),
        lambda: update(companies, workspace, theirs.id, ["name"], name="Mine now"),
        lambda: companies.ArchiveCompany(
            company_service_pb2.ArchiveCompanyRequest(id=theirs.id, force=True),
            metadata=workspace.metadata,
        ),
        lambda: companies.GetCompanyTree(
            company_service_pb2.GetCompanyTreeRequest(id=theirs.id), metadata=workspace.metadata
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert details(caught.value)[0] == "COMPANY_NOT_FOUND"
    assert db.snapshot(database_url, other_workspace.id) == before


def test_unknown_or_foreign_parent_is_not_found_and_changes_nothing(
    companies: CompanyStub, workspace: Workspace, other_workspace: Workspace, database_url: str
) -> None:
    mine = create(companies, workspace, name="Mine")
    theirs = create(companies, other_workspace, name="Theirs")
    before = db.snapshot(database_url, workspace.id)
    for parent in [theirs.id, "cmp_01JUNKJUNKJUNKJUNKJUNKJUNK", "nonsense"]:
        with pytest.raises(grpc.RpcError) as caught:
            create(companies, workspace, name="Child", parent_company_id=parent)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert details(caught.value) == ("PARENT_COMPANY_NOT_FOUND", ["company.parent_company_id"])
        with pytest.raises(grpc.RpcError) as caught:
            set_parent(companies, workspace, mine.id, parent)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert db.snapshot(database_url, workspace.id) == before


def test_parent_change_that_makes_a_cycle_is_refused_naming_the_cycle(
    companies: CompanyStub, workspace: Workspace, database_url: str
) -> None:
    top, middle, bottom = chain(companies, workspace, "Top", "Middle", "Bottom")
    before = db.snapshot(database_url, workspace.id)
    with pytest.raises(grpc.RpcError) as caught:
        set_parent(companies, workspace, top.id, bottom.id)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(caught.value) == ("COMPANY_HIERARCHY_CYCLE", ["company.parent_company_id"])
    cycle = f"{top.id} → {bottom.id} → {middle.id} → {top.id}"
    assert cycle in (caught.value.details() or "")
    with pytest.raises(grpc.RpcError) as caught:
        set_parent(companies, workspace, middle.id, middle.id)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"{middle.id} → {middle.id}" in (caught.value.details() or "")
    assert db.snapshot(database_url, workspace.id) == before


def test_moving_a_company_to_another_branch_is_allowed(
    companies: CompanyStub, workspace: Workspace
) -> None:
    root, left = chain(companies, workspace, "Root", "Left")
    right = create(companies, workspace, name="Right", parent_company_id=root.id)
    moved = set_parent(companies, workspace, right.id, left.id)
    assert moved.parent_company_id == left.id
    detached = set_parent(companies, workspace, right.id, "")
    assert detached.parent_company_id == ""


def test_archiving_a_parent_with_live_subsidiaries_needs_force(
    companies: CompanyStub, workspace: Workspace, database_url: str
) -> None:
    parent, child, grandchild = chain(companies, workspace, "Parent", "Child", "Grandchild")
    before = db.snapshot(database_url, workspace.id)
    with pytest.raises(grpc.RpcError) as caught:
        companies.ArchiveCompany(
            company_service_pb2.ArchiveCompanyRequest(id=parent.id), metadata=workspace.metadata
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(caught.value)[0] == "COMPANY_HAS_SUBSIDIARIES"
    assert db.snapshot(database_url, workspace.id) == before

    archived = companies.ArchiveCompany(
        company_service_pb2.ArchiveCompanyRequest(id=parent.id, force=True),
        metadata=workspace.metadata,
    )
    assert archived.HasField("archived_at")
    for member in (child, grandchild):
        got = companies.GetCompany(
            company_service_pb2.GetCompanyRequest(id=member.id), metadata=workspace.metadata
        )
        assert got.HasField("archived_at")
    assert list_names(companies, workspace) == []
    assert list_names(companies, workspace, include_archived=True) == [
        "Parent",
        "Child",
        "Grandchild",
    ]


def test_archiving_a_leaf_needs_no_force_and_unarchive_brings_it_back(
    companies: CompanyStub, workspace: Workspace
) -> None:
    parent, leaf = chain(companies, workspace, "P", "Leaf")
    archived = companies.ArchiveCompany(
        company_service_pb2.ArchiveCompanyRequest(id=leaf.id), metadata=workspace.metadata
    )
    assert archived.HasField("archived_at")
    again = companies.ArchiveCompany(
        company_service_pb2.ArchiveCompanyRequest(id=leaf.id), metadata=workspace.metadata
    )
    assert again.archived_at == archived.archived_at
    # The parent now has no live subsidiaries, so it archives without force.
    companies.ArchiveCompany(
        company_service_pb2.ArchiveCompanyRequest(id=parent.id), metadata=workspace.metadata
    )
    back = companies.UnarchiveCompany(
        company_service_pb2.UnarchiveCompanyRequest(id=leaf.id), metadata=workspace.metadata
    )
    assert not back.HasField("archived_at")


def test_list_filters_on_firmographics_parent_and_text_with_pagination(
    companies: CompanyStub, workspace: Workspace
) -> None:
    group = create(
        companies,
        workspace,
        name="Umbrella Holdings",
        domain="umbrella.com",
        industry="Pharma",
        country="US",
        employee_count=5000,
        annual_revenue=9_000_000,
    )
    create(
        companies,
        workspace,
        name="Umbrella Labs",
        domain="umbrella-labs.co.uk",
        industry="pharma",
        country="GB",
        employee_count=120,
        annual_revenue=400_000,
        parent_company_id=group.id,
    )
    create(
        companies,
        workspace,
        name="Stark Industries",
        domain="stark.com",
        industry="Defense",
        country="US",
        employee_count=800,
    )
    create(companies, workspace, name="Tiny Startup", industry="SaaS", country="DE")

    assert list_names(companies, workspace, industry="PHARMA") == [
        "Umbrella Holdings",
        "Umbrella Labs",
    ]
    assert list_names(companies, workspace, country="us") == [
        "Umbrella Holdings",
        "Stark Industries",
    ]
    assert list_names(companies, workspace, employee_count_min=100, employee_count_max=1000) == [
        "Umbrella Labs",
        "Stark Industries",
    ]
    assert list_names(companies, workspace, annual_revenue_min=1_000_000) == ["Umbrella Holdings"]
    assert list_names(companies, workspace, parent_company_id=group.id) == ["Umbrella Labs"]
    assert list_names(companies, workspace, query="umbrella labs") == ["Umbrella Labs"]
    assert list_names(companies, workspace, query="STARK.com") == ["Stark Industries"]

    first = companies.ListCompanies(
        company_service_pb2.ListCompaniesRequest(limit=3), metadata=workspace.metadata
    )
    assert len(first.companies) == 3 and first.next_cursor
    rest = companies.ListCompanies(
        company_service_pb2.ListCompaniesRequest(limit=3, cursor=first.next_cursor),
        metadata=workspace.metadata,
    )
    assert [c.name for c in rest.companies] == ["Tiny Startup"] and rest.next_cursor == ""


def test_negative_limit_and_another_querys_cursor_are_invalid(
    companies: CompanyStub, workspace: Workspace, other_workspace: Workspace
) -> None:
    for i in range(3):
        create(companies, workspace, name=f"Co {i}", industry="SaaS")
    page = companies.ListCompanies(
        company_service_pb2.ListCompaniesRequest(limit=1), metadata=workspace.metadata
    )
    bad_requests = [
        (workspace, company_service_pb2.ListCompaniesRequest(limit=-1), "limit"),
        (
            workspace,
            company_service_pb2.ListCompaniesRequest(cursor=page.next_cursor, industry="SaaS"),
            "cursor",
        ),
        (
            other_workspace,
            company_service_pb2.ListCompaniesRequest(cursor=page.next_cursor),
            "cursor",
        ),
        (workspace, company_service_pb2.ListCompaniesRequest(cursor="garbage"), "cursor"),
    ]
    for ws, request, violated in bad_requests:
        with pytest.raises(grpc.RpcError) as caught:
            companies.ListCompanies(request, metadata=ws.metadata)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(caught.value)[1] == [violated]


def test_calls_without_a_key_are_unauthenticated(companies: CompanyStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        companies.ListCompanies(company_service_pb2.ListCompaniesRequest())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_group_deeper_than_the_limit_is_refused(
    companies: CompanyStub, workspace: Workspace, database_url: str
) -> None:
    deep = chain(companies, workspace, *[f"Level {i}" for i in range(1, 61)])
    branch = chain(companies, workspace, "B1", "B2", "B3", "B4", "B5")
    before = db.snapshot(database_url, workspace.id)
    with pytest.raises(grpc.RpcError) as caught:
        set_parent(companies, workspace, branch[0].id, deep[-1].id)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(caught.value)[0] == "COMPANY_HIERARCHY_TOO_DEEP"
    assert db.snapshot(database_url, workspace.id) == before
    # Four levels more still fit (60 + 4 = 64).
    set_parent(companies, workspace, branch[1].id, deep[-1].id)


def test_concurrent_moves_that_would_together_make_a_cycle_cannot_both_succeed(
    companies: CompanyStub, workspace: Workspace, database_url: str
) -> None:
    pairs = [
        (create(companies, workspace, name=f"A{i}"), create(companies, workspace, name=f"B{i}"))
        for i in range(8)
    ]

    def attempt(child: str, parent: str) -> bool:
        try:
            set_parent(companies, workspace, child, parent)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            return False
        return True

    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [
            (pool.submit(attempt, a.id, b.id), pool.submit(attempt, b.id, a.id)) for a, b in pairs
        ]
        outcomes = [(x.result(), y.result()) for x, y in futures]
    assert all(first != second for first, second in outcomes)
    parents = dict(
        db.query(
            database_url,
            "SELECT id, parent_company_id FROM companies WHERE workspace_id = %s",
            workspace.id,
        )
    )
    for a, b in pairs:
        assert not (parents[a.id] == b.id and parents[b.id] == a.id)
