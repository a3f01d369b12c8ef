"""The lead tools over streamable HTTP through the gateway, with the SDK's client."""

from __future__ import annotations

from tnx.crm.v1 import lead_service_pb2, lead_service_pb2_grpc

from tests.conftest import Workspace
from tests.mcp.helpers import call, fail, over_http, run

Leads = lead_service_pb2_grpc.LeadServiceStub

TOOLS = {
    "create_lead",
    "get_lead",
    "update_lead",
    "search_leads",
    "list_segments",
    "create_segment",
    "add_to_segment",
    "record_activity",
    "get_score",
    "import_status",
}
READ_ONLY = {"get_lead", "search_leads", "list_segments", "get_score", "import_status"}


def test_every_tool_is_listed_with_schemas_and_truthful_hints(
    mcp_url: str, workspace: Workspace
) -> None:
    async def scenario() -> None:
        async with over_http(mcp_url, workspace.key) as mcp:
            tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
        assert set(tools) == TOOLS
        for name, tool in tools.items():
            hints = tool.annotations
            assert hints is not None, name
            assert hints.read_only_hint is (name in READ_ONLY), name
            assert hints.destructive_hint is (name == "update_lead"), name
            assert hints.open_world_hint is False
            assert tool.description and tool.title, name
            assert tool.input_schema["type"] == "object", name
            assert tool.output_schema is not None and tool.output_schema["type"] == "object", name
        assert tools["create_lead"].annotations.idempotent_hint is True  # type: ignore[union-attr]
        assert tools["create_segment"].annotations.idempotent_hint is False  # type: ignore[union-attr]
        assert tools["create_lead"].input_schema["required"] == ["email"]
        search = tools["search_leads"].input_schema["properties"]
        assert search["limit"]["maximum"] == 50 and "cursor" in search
        condition = tools["create_segment"].input_schema["$defs"]["RuleCondition"]["properties"]
        assert "within_last" in condition["op"]["enum"]
        field_choices = condition["field"]["anyOf"]
        assert "company.employee_count" in field_choices[0]["enum"]
        assert field_choices[1]["pattern"].startswith("^custom\\.")

    run(scenario())


def test_create_lead_twice_is_created_then_existing_with_the_same_id_and_never_overwrites(
    mcp_url: str, workspace: Workspace, leads: Leads
) -> None:
    async def scenario() -> None:
        async with over_http(mcp_url, workspace.key) as mcp:
            first = await call(
                mcp, "create_lead", email="jane@acme.io", first_name="Jane", source="mcp"
            )
            again = await call(
                mcp,
                "create_lead",
                email="JANE@acme.io",
                first_name="Janet",
                title="Head of Growth",
                custom_fields={"industry": "SaaS"},
            )
        assert first["status"] == "created"
        assert first["lead"]["first_name"] == "Jane" and first["lead"]["source"] == "mcp"
        assert again["status"] == "existing"
        assert again["lead"]["id"] == first["lead"]["id"]
        assert again["filled_fields"] == ["title", "custom_fields.industry"]
        stored = leads.GetLead(
            lead_service_pb2.GetLeadRequest(id=first["lead"]["id"]), metadata=workspace.metadata
        )
        assert (stored.first_name, stored.title) == ("Jane", "Head of Growth")
        assert dict(stored.custom_fields) == {"industry": "SaaS"}

    run(scenario())


def test_a_bad_email_is_a_tool_error_naming_the_field(mcp_url: str, workspace: Workspace) -> None:
    async def scenario() -> str:
        async with over_http(mcp_url, workspace.key) as mcp:
            return await fail(mcp, "create_lead", email="not-an-email")

    message = run(scenario())
    assert "INVALID_ARGUMENT LEAD_INVALID" in message
    assert "\n- email: " in message


def test_get_and_update_lead_set_exactly_the_fields_given(
    mcp_url: str, workspace: Workspace, leads: Leads
) -> None:
    async def scenario() -> tuple[dict[str, object], dict[str, object]]:
        async with over_http(mcp_url, workspace.key) as mcp:
            created = await call(
                mcp,
                "create_lead",
                email="sam@acme.io",
                title="CTO",
                custom_fields={"industry": "SaaS", "tier": "gold"},
            )
            lead_id = created["lead"]["id"]
            updated = await call(
                mcp,
                "update_lead",
                lead_id=lead_id,
                title="CEO",
                status="qualified",
                custom_fields={"tier": None, "employees": 120},
            )
            fetched = await call(mcp, "get_lead", lead_id=lead_id)
            return updated, fetched

    updated, fetched = run(scenario())
    assert updated["changed_fields"] == [
        "title",
        "status",
        "custom_fields.tier",
        "custom_fields.employees",
    ]
    assert fetched["title"] == "CEO" and fetched["status"] == "qualified"
    assert fetched["custom_fields"] == {"industry": "SaaS", "employees": 120}
    stored = leads.GetLead(
        lead_service_pb2.GetLeadRequest(id=str(fetched["id"])), metadata=workspace.metadata
    )
    assert stored.title == "CEO" and stored.custom_fields["employees"] == 120


def test_an_unknown_or_other_workspaces_lead_is_a_not_found_tool_error(
    mcp_url: str, workspace: Workspace, other_workspace: Workspace
) -> None:
    async def scenario() -> tuple[str, str]:
        async with over_http(mcp_url, other_workspace.key) as theirs:
            lead = await call(theirs, "create_lead", email="theirs@x.io")
        async with over_http(mcp_url, workspace.key) as mcp:
            other = await fail(mcp, "get_lead", lead_id=lead["lead"]["id"])
            missing = await fail(mcp, "update_lead", lead_id="lead_nope", title="x")
        return other, missing

    other, missing = run(scenario())
    assert other.startswith("Error executing tool get_lead: NOT_FOUND")
    assert "NOT_FOUND" in missing
