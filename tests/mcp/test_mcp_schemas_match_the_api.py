"""The MCP tools' schemas spell out, as enums a model can read, what the API accepts: rule
fields, operators, lead statuses. They are written out for the type checker and the JSON
schema; these tests keep them the same sets as the API's own, so the two never drift."""

from __future__ import annotations

from typing import get_args

from server.filtering.ast import OPERATORS
from server.filtering.fields import LEAD_FIELDS
from server.leads.enums import LeadStatus as ApiLeadStatus
from server.mcp import schemas


def test_rule_operators_are_the_filter_languages() -> None:
    assert set(get_args(schemas.Operator)) == set(OPERATORS)


def test_rule_fields_are_every_lead_and_company_field_a_rule_may_name() -> None:
    assert set(get_args(schemas.LeadField)) == {name for name in LEAD_FIELDS if name != "id"}


def test_lead_statuses_are_the_apis() -> None:
    assert set(get_args(schemas.LeadStatus)) == {status.value for status in ApiLeadStatus}
