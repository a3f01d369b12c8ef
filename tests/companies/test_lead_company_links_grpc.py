"""Leads linked to companies: explicitly, by email domain, read back with firmographics, and
filtered by company fields and by company group."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2
from tnx.crm.v1 import company_service_pb2, lead_pb2, lead_service_pb2

from tests.companies.support import (
    CompanyStub,
    LeadStub,
    chain,
    create,
    create_lead,
    lead_emails,
    update,
)
from tests.conftest import Workspace
from tests.support import db
from tests.support.errors import details


def _update_lead(
    leads: LeadStub, ws: Workspace, lead_id: str, paths: list[str], **fields: object
) -> lead_pb2.Lead:
    reply: lead_pb2.Lead = leads.UpdateLead(
        lead_service_pb2.UpdateLeadRequest(
            lead=lead_pb2.Lead(id=lead_id, **fields),  # type: ignore[arg-type]
            update_mask=field_mask_pb2.FieldMask(paths=paths),
        ),
        metadata=ws.metadata,
    )
    return reply


def test_lead_linked_by_company_id_shows_the_company_name_and_firmographics(
    companies: CompanyStub, leads: LeadStub, workspace: Workspace
) -> None:
    acme = create(
        companies,
        workspace,
        name="Acme",
        domain="acme.io",
        industry="SaaS",
        employee_count=250,
        country="DE",
    )
    lead = create_lead(
        leads, workspace, email="jo@elsewhere.org", company="typed by hand", company_id=acme.id
    )
    assert (lead.company_id, lead.company) == (acme.id, "Acme")
    assert lead.linked_company.industry == "SaaS" and lead.linked_company.employee_count == 250
    fetched = leads.GetLead(
        lead_service_pb2.GetLeadRequest(id=lead.id), metadata=workspace.metadata
    )
    assert fetched.linked_company == acme


def test_company_from_another_workspace_or_unknown_is_not_found_and_writes_nothing(
    companies: CompanyStub,
    leads: LeadStub,
    workspace: Workspace,
    other_workspace: Workspace,
    database_url: str,
) -> None:
    theirs = create(companies, other_workspace, name="Theirs")
    lead = create_lead(leads, workspace, email="keep@example.org")
    before = db.snapshot(database_url, workspace.id)
    for company_id in [theirs.id, "cmp_01JUNKJUNKJUNKJUNKJUNKJUNK"]:
        with pytest.raises(grpc.RpcError) as caught:
            create_lead(leads, workspace, email="new@example.org", company_id=company_id)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert details(caught.value) == ("COMPANY_NOT_FOUND", ["lead.company_id"])
        with pytest.raises(grpc.RpcError) as caught:
            _update_lead(leads, workspace, lead.id, ["company_id"], company_id=company_id)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert db.snapshot(database_url, workspace.id) == before


def test_archived_company_cannot_be_linked(
    companies: CompanyStub, leads: LeadStub, workspace: Workspace, database_url: str
) -> None:
    gone = create(companies, workspace, name="Gone", domain="gone.com")
    companies.ArchiveCompany(
        company_service_pb2.ArchiveCompanyRequest(id=gone.id), metadata=workspace.metadata
    )
    before = db.snapshot(database_url, workspace.id)
    with pytest.raises(grpc.RpcError) as caught:
        create_lead(leads, workspace, email="x@example.org", company_id=gone.id)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert db.snapshot(database_url, workspace.id) == before
    # Nor does its domain link new leads.
    assert create_lead(leads, workspace, email="y@gone.com").company_id == ""


def test_lead_links_automatically_by_its_email_domain(
    companies: CompanyStub, leads: LeadStub, workspace: Workspace, other_workspace: Workspace
) -> None:
    initech = create(companies, workspace, name="Initech", domain="www.initech.com")
    create(companies, other_workspace, name="Elsewhere", domain="elsewhere.com")
    linked = create_lead(leads, workspace, email="Peter@Initech.com", company="Initrode")
    assert (linked.company_id, linked.company) == (initech.id, "Initech")
    assert create_lead(leads, workspace, email="bob@elsewhere.com").company_id == ""

    moved = create_lead(leads, workspace, email="milton@example.org")
    assert moved.company_id == ""
    relinked = _update_lead(leads, workspace, moved.id, ["email"], email="milton@initech.com")
    assert relinked.company_id == initech.id


def test_free_mail_and_disposable_domains_never_link(
    companies: CompanyStub, leads: LeadStub, workspace: Workspace
) -> None:
    # A company may well own such a domain; its customers' addresses are still not its staff.
    create(companies, workspace, name="Google", domain="gmail.com")
    create(companies, workspace, name="Mailinator", domain="mailinator.com")
    for email in ["someone@gmail.com", "throwaway@mailinator.com"]:
        assert create_lead(leads, workspace, email=email).company_id == ""


def test_company_created_later_picks_up_the_unlinked_leads_of_its_domain(
    companies: CompanyStub, leads: LeadStub, workspace: Workspace
) -> None:
    early = create_lead(leads, workspace, email="early@globex.com")
    elsewhere = create(companies, workspace, name="Other")
    kept = create_lead(leads, workspace, email="kept@globex.com", company_id=elsewhere.id)
    globex = create(companies, workspace, name="Globex", domain="globex.com")
    got = leads.GetLead(lead_service_pb2.GetLeadRequest(id=early.id), metadata=workspace.metadata)
    assert (got.company_id, got.company) == (globex.id, "Globex")
    still = leads.GetLead(lead_service_pb2.GetLeadRequest(id=kept.id), metadata=workspace.metadata)
    assert still.company_id == elsewhere.id


def test_renaming_a_company_renames_its_leads_company_for_reads_and_search(
    companies: CompanyStub, leads: LeadStub, workspace: Workspace
) -> None:
    hooli = create(companies, workspace, name="Hooli", domain="hooli.xyz")
    lead = create_lead(leads, workspace, email="gavin@hooli.xyz")
    update(companies, workspace, hooli.id, ["name"], name="Hooli XYZ Nucleus")
    got = leads.GetLead(lead_service_pb2.GetLeadRequest(id=lead.id), metadata=workspace.metadata)
    assert got.company == "Hooli XYZ Nucleus"
    found = leads.SearchLeads(
        lead_service_pb2.SearchLeadsRequest(query="nucleus"), metadata=workspace.metadata
    )
    assert [x.id for x in found.leads] == [lead.id]


def test_empty_company_id_unlinks_and_company_text_follows_the_link(
    companies: CompanyStub, leads: LeadStub, workspace: Workspace
) -> None:
    pied = create(companies, workspace, name="Pied Piper", domain="piedpiper.com")
    lead = create_lead(leads, workspace, email="richard@piedpiper.com")
    renamed = _update_lead(leads, workspace, lead.id, ["company"], company="Something else")
    assert renamed.company == "Pied Piper"  # a linked lead shows its company's name
    unlinked = _update_lead(leads, workspace, lead.id, ["company_id"])
    assert (unlinked.company_id, unlinked.company) == ("", "Pied Piper")
    assert not unlinked.HasField("linked_company")
    relinked = _update_lead(leads, workspace, lead.id, ["company_id"], company_id=pied.id)
    assert relinked.company_id == pied.id


def test_list_leads_filters_on_company_fields(
    companies: CompanyStub, leads: LeadStub, workspace: Workspace
) -> None:
    big = create(
        companies, workspace, name="Big SaaS", domain="big.io", industry="SaaS", employee_count=900
    )
    small = create(
        companies,
        workspace,
        name="Small SaaS",
        domain="small.io",
        industry="saas",
        employee_count=12,
    )
    create(
        companies, workspace, name="Shop", domain="shop.com", industry="Retail", employee_count=300
    )
    for email in ["a@big.io", "b@small.io", "c@shop.com", "d@nocompany.org"]:
        create_lead(leads, workspace, email=email)
    assert lead_emails(leads, workspace, filter='company.industry = "SaaS"') == [
        "a@big.io",
        "b@small.io",
    ]
    assert lead_emails(leads, workspace, filter="company.employee_count >= 50") == [
        "a@big.io",
        "c@shop.com",
    ]
    assert lead_emails(
        leads, workspace, filter='company.industry = "saas" AND company.employee_count < 50'
    ) == ["b@small.io"]
    assert lead_emails(leads, workspace, filter='NOT company.industry = "SaaS"') == [
        "c@shop.com",
        "d@nocompany.org",
    ]
    assert lead_emails(leads, workspace, filter=f'company.id = "{big.id}"') == ["a@big.io"]
    assert small.id
    with pytest.raises(grpc.RpcError) as caught:
        lead_emails(leads, workspace, filter="company.shoe_size > 3")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(caught.value) == ("FILTER_INVALID", ["filter"])


def test_list_leads_in_the_group_of_a_company_includes_every_subsidiary(
    companies: CompanyStub, leads: LeadStub, workspace: Workspace
) -> None:
    group, division, team = chain(companies, workspace, "Group", "Division", "Team")
    outsider = create(companies, workspace, name="Outsider")
    for i, company in enumerate([group, division, team, outsider]):
        create_lead(leads, workspace, email=f"p{i}@example.org", company_id=company.id)
    create_lead(leads, workspace, email="none@example.org")
    # Archived members stay in the group: their leads still belong to it.
    companies.ArchiveCompany(
        company_service_pb2.ArchiveCompanyRequest(id=team.id), metadata=workspace.metadata
    )
    assert lead_emails(leads, workspace, company_group_id=group.id) == [
        "p0@example.org",
        "p1@example.org",
        "p2@example.org",
    ]
    assert lead_emails(leads, workspace, company_group_id=division.id) == [
        "p1@example.org",
        "p2@example.org",
    ]
    assert lead_emails(leads, workspace, company_group_id=division.id, limit=1)[0] == (
        "p1@example.org"
    )


def test_group_filter_naming_another_workspaces_company_is_not_found(
    companies: CompanyStub, leads: LeadStub, workspace: Workspace, other_workspace: Workspace
) -> None:
    theirs = create(companies, other_workspace, name="Theirs")
    with pytest.raises(grpc.RpcError) as caught:
        lead_emails(leads, workspace, company_group_id=theirs.id)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert details(caught.value) == ("COMPANY_NOT_FOUND", ["company_group_id"])


def test_moving_a_company_moves_it_and_its_leads_to_the_new_group(
    companies: CompanyStub, leads: LeadStub, workspace: Workspace
) -> None:
    first, branch, twig = chain(companies, workspace, "First", "Branch", "Twig")
    second = create(companies, workspace, name="Second")
    create_lead(leads, workspace, email="on-branch@example.org", company_id=branch.id)
    create_lead(leads, workspace, email="on-twig@example.org", company_id=twig.id)
    create_lead(leads, workspace, email="on-first@example.org", company_id=first.id)

    update(companies, workspace, branch.id, ["parent_company_id"], parent_company_id=second.id)
    assert lead_emails(leads, workspace, company_group_id=first.id) == ["on-first@example.org"]
    assert lead_emails(leads, workspace, company_group_id=second.id) == [
        "on-branch@example.org",
        "on-twig@example.org",
    ]
    # A lead linked after the move lands in the new group too.
    create_lead(leads, workspace, email="late@example.org", company_id=twig.id)
    assert len(lead_emails(leads, workspace, company_group_id=second.id)) == 3


def test_filter_by_company_id_matches_the_id_exactly(
    companies: CompanyStub, leads: LeadStub, workspace: Workspace
) -> None:
    acme = create(companies, workspace, name="Exact")
    create_lead(leads, workspace, email="exact@example.org", company_id=acme.id)
    assert lead_emails(leads, workspace, filter=f'company_id = "{acme.id}"') == [
        "exact@example.org"
    ]
    assert lead_emails(leads, workspace, filter=f'company_id = "{acme.id.lower()}"') == []
