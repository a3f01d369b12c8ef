"""The MCP tools' input and output shapes. Pydantic models: the SDK publishes them as each
tool's inputSchema and outputSchema, validates arguments against them before a tool runs,
and checks what a tool returns against them.

Rules have the REST API's shape (`{"combinator", "rules": [{"condition": {…}} | {"group":
{…}}]}`), so a rule written for one works in the other, and the API's error paths
(`rules.rules[1].condition`) name the same nodes the model wrote.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

LeadStatus = Literal["new", "contacted", "qualified", "customer", "disqualified"]

# The fields a rule condition may name (the public contract; see the README's Leads API).
# tests/mcp/test_mcp_schemas_match_the_api.py keeps these lists equal to the API's own.
LeadField = Literal[
    "email",
    "email_domain",
    "first_name",
    "last_name",
    "title",
    "phone",
    "company",
    "company_id",
    "source",
    "score",
    "status",
    "created_at",
    "updated_at",
    "last_activity_at",
    "archived_at",
    "company.id",
    "company.name",
    "company.domain",
    "company.industry",
    "company.employee_count",
    "company.annual_revenue",
    "company.annual_revenue_currency",
    "company.country",
    "company.city",
    "company.founded_year",
    "company.parent_company_id",
    "company.created_at",
    "company.archived_at",
]
CustomField = Annotated[str, StringConstraints(pattern=r"^custom\.[A-Za-z_][A-Za-z0-9_\-]{0,63}$")]
Operator = Literal[
    "eq",
    "neq",
    "gt",
    "gte",
    "lt",
    "lte",
    "between",
    "in",
    "not_in",
    "contains",
    "not_contains",
    "starts_with",
    "exists",
    "not_exists",
    "within_last",
]
Scalar = str | int | float | bool
Id = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Cursor = Annotated[
    str, Field(description="next_cursor of the previous call with the same arguments; empty first")
]
_STRICT = ConfigDict(extra="forbid")


def _absent(value: object) -> bool:
    # Rules come back in the shape they were written in: no `"group": null` beside a condition.
    return value is None


class RuleCondition(BaseModel):
    """`field op value`, e.g. {"field": "company.employee_count", "op": "between",
    "value": [50, 500]}."""

    model_config = _STRICT
    field: LeadField | CustomField = Field(
        description="A lead field, a field of the lead's company (`company.*`) or a custom "
        "field (`custom.<key>`)."
    )
    op: Operator
    value: Scalar | list[Scalar] | None = Field(
        default=None,
        exclude_if=_absent,
        description="A string, number or boolean; a list for in/not_in and [low, high] for "
        "between; a number of days for within_last; absent for exists/not_exists. Text "
        "comparisons ignore case; timestamps are RFC 3339 strings or dates.",
    )


class Rule(BaseModel):
    """One node of a rule tree: exactly one of `condition` and `group`."""

    model_config = _STRICT
    condition: RuleCondition | None = Field(default=None, exclude_if=_absent)
    group: RuleGroup | None = Field(default=None, exclude_if=_absent)

    @model_validator(mode="after")
    def _one_node(self) -> Rule:
        if (self.condition is None) == (self.group is None):
            raise ValueError("a rule is exactly one of condition and group")
        return self


class RuleGroup(BaseModel):
    """Rules joined by AND or OR; groups nest up to 8 deep, 200 conditions in all."""

    model_config = _STRICT
    combinator: Literal["AND", "OR"] = "AND"
    rules: list[Rule] = Field(min_length=1, max_length=200)


Rule.model_rebuild()


# -- outputs --------------------------------------------------------------------------


class Identified(BaseModel):
    """A resource with an id; lists of them page by it (pages.py)."""

    id: str


class Lead(Identified):
    email: str
    first_name: str = ""
    last_name: str = ""
    title: str = ""
    phone: str = ""
    company: str = Field(default="", description="The linked company's name once linked.")
    company_id: str = ""
    source: str = ""
    score: int = 0
    status: LeadStatus | None = None
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    custom_fields_omitted: list[str] = Field(
        default_factory=list,
        description="Custom field keys left out to keep the result small (get_lead shows more).",
    )
    segment_ids: list[str] = Field(default_factory=list)
    last_activity_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    archived_at: datetime | None = None


class CreateLeadResult(BaseModel):
    status: Literal["created", "existing"] = Field(
        description="created: a new lead; existing: a lead already had this email (any case)."
    )
    lead: Lead
    filled_fields: list[str] = Field(
        default_factory=list,
        description="For an existing lead: the empty fields this call filled in.",
    )


class UpdateLeadResult(BaseModel):
    lead: Lead
    changed_fields: list[str] = Field(description="The field paths this call wrote.")


class LeadPage(BaseModel):
    leads: list[Lead]
    next_cursor: str = Field(description="Pass as `cursor` for more; empty at the end.")
    truncated: bool = Field(
        default=False,
        description="True when fewer leads than `limit` are returned to keep the result under "
        "its size cap although more follow (next_cursor continues exactly there).",
    )


class Segment(Identified):
    name: str
    description: str = ""
    membership: Literal["STATIC", "RULE"]
    rules: RuleGroup | None = None
    member_count: int
    state: Literal["BUILDING", "READY"] = Field(
        description="BUILDING while existing leads are still being evaluated against new rules."
    )
    created_at: datetime | None = None
    updated_at: datetime | None = None


class SegmentPage(BaseModel):
    segments: list[Segment]
    next_cursor: str = Field(description="Pass as `cursor` for more; empty at the end.")
    truncated: bool = False


class CreateSegmentResult(BaseModel):
    dry_run: bool
    segment: Segment | None = Field(
        default=None, description="The segment created; absent on a dry run."
    )
    estimated_size: int | None = Field(
        default=None, description="Dry run: how many leads match the rules now."
    )
    sample_leads: list[Lead] = Field(
        default_factory=list, description="Dry run: up to 10 matching leads, newest first."
    )


class SegmentMembersResult(BaseModel):
    segment_id: str
    added: list[str] = Field(description="Leads that joined the segment.")
    already_members: list[str]
    not_found: list[str] = Field(description="Ids of no lead in this workspace: nothing done.")
    member_count: int


class Activity(BaseModel):
    id: str
    lead_id: str
    type: str
    occurred_at: datetime | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    source: str = ""
    idempotency_key: str = ""
    created_at: datetime | None = None


class ScoreContribution(BaseModel):
    kind: Literal["FIT", "ENGAGEMENT", "ADJUSTMENT", "FIT_CAP", "ENGAGEMENT_CAP", "FLOOR"]
    rule_id: str = ""
    activity_id: str = ""
    points: int
    decayed_from: int = 0


class LeadScore(BaseModel):
    lead_id: str
    score: int
    fit: int
    engagement: int
    model_version: int
    computed_at: datetime | None = None
    thresholds: dict[str, Literal["ABOVE", "BELOW"]] = Field(
        default_factory=dict, description="Where the lead stands against each named threshold."
    )
    contributions: list[ScoreContribution] = Field(
        description="Every point of the score, largest first (at most 50 listed)."
    )
    contributions_total: int = Field(description="How many contributions there are in all.")


class ImportRowError(BaseModel):
    row: int
    column: str = ""
    value: str = ""
    reason: str


class ImportStatus(BaseModel):
    id: str
    status: Literal["UPLOADING", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
    format: str = ""
    mode: str = ""
    size_bytes: int = 0
    rows_total: int = 0
    rows_processed: int = 0
    rows_created: int = 0
    rows_updated: int = 0
    rows_skipped: int = 0
    rows_failed: int = 0
    error: str = Field(default="", description="Why the import FAILED.")
    cancel_requested: bool = False
    created_at: datetime | None = None
    finished_at: datetime | None = None
    first_row_errors: list[ImportRowError] = Field(
        default_factory=list, description="The first few failed rows (at most 10)."
    )


class ImportStatusPage(BaseModel):
    imports: list[ImportStatus] = Field(description="Newest first.")
