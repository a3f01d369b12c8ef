"""Previewing rules: what a RULE segment would hold if it were created now, without creating it.

The rules are validated and compiled exactly as for a segment (rules.validate, then the one
predicate compiler with the lead's company joined, as membership.refresh evaluates them), so
the preview's count is the member_count such a segment would start with.

Its own module rather than part of service.py: the sample is shown as GetLead shows leads,
and the leads service already imports the segments service.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.db.engine import Database
from server.errors import InvalidArgument
from server.filtering.ast import Node
from server.filtering.compiler import compile_predicate
from server.leads import service as leads
from server.segments import queries, rules

MAX_SAMPLE = 10
RULES_FIELD = "rules"


@dataclass(frozen=True)
class Preview:
    estimated_size: int
    sample_leads: list[leads.Lead]  # newest first


def sample_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument.on("sample_size", "must not be negative", reason="LIMIT_NEGATIVE")
    return min(requested or MAX_SAMPLE, MAX_SAMPLE)


async def preview_segment(
    db: Database, *, workspace_id: str, tree: Node, requested_sample: int
) -> Preview:
    size = sample_size(requested_sample)
    rules.validate(tree, RULES_FIELD)
    predicate = compile_predicate(tree, label=RULES_FIELD, company_joined=True)
    # Statement by statement: a lead written between the count and the sample may be in
    # one and not the other, which an estimate can afford.
    async with db.read() as conn:
        total = await queries.count_matching(conn, workspace_id=workspace_id, predicate=predicate)
        ids = await queries.newest_matching_ids(
            conn, workspace_id=workspace_id, predicate=predicate, limit=size
        )
        found = await leads.snapshots(conn, workspace_id=workspace_id, lead_ids=ids)
    return Preview(estimated_size=total, sample_leads=[found[i] for i in ids if i in found])
