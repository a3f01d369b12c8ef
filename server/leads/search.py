"""Free-text search over leads, ranked in tiers so that a page costs about the same whether
ten leads match or a hundred thousand.

The order: leads whose names or title hold every word first, then leads that hold every
word anywhere (email, company, custom field values); within a tier, newest first. A tier is
walked newest first along the (workspace_id, id) index, at most WINDOW_ROWS leads deep;
when that walk does not fill the page the tier is rare, and the rest of it comes from the
full-text indexes. Scoring every match (ts_rank_cd) instead costs a heap visit per match:
about 0.4 s for a title phrase that 30,000 of 1,000,000 leads share.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, func, literal_column, not_
from sqlalchemy.ext.asyncio import AsyncConnection

from server.db.engine import AnyRow
from server.db.tables import leads
from server.errors import InvalidArgument
from server.leads import queries

Predicate = ColumnElement[bool]

# How many leads a tier's id walk visits before it counts the tier as rare (about 15 ms).
WINDOW_ROWS = 20_000
MAX_WORDS = 32


def tsquery_text(text: str) -> str:
    """Free text → a tsquery in which every word must occur, the last one as a prefix so
    "head of gro" finds "Head of Growth". Words are letters and digits only, so no tsquery
    syntax gets through."""
    # PostgreSQL's parser splits words at underscores too, so they are separators here.
    words = re.findall(r"[^\W_]+", text.lower())[:MAX_WORDS]
    if not words:
        raise InvalidArgument.on("query", "must contain at least one word", reason="QUERY_EMPTY")
    return " & ".join([*words[:-1], f"{words[-1]}:*"])


def tiers(text: str) -> list[Predicate]:
    """The tiers' predicates, best first; each excludes the tiers before it."""
    # The configuration is written into the SQL, not bound: then the planner folds the whole
    # tsquery into a constant and can estimate how many leads match it.
    query = func.to_tsquery(literal_column("'simple'::regconfig"), tsquery_text(text))
    in_names = leads.c.name_vector.bool_op("@@")(query)
    anywhere = leads.c.search_vector.bool_op("@@")(query)
    return [in_names, and_(anywhere, not_(in_names))]


@dataclass(frozen=True)
class Position:
    """Where a page starts: in `tier`, below the lead `before_id` (None: the tier's top)."""

    tier: int
    before_id: str | None


@dataclass(frozen=True)
class Scope:
    workspace_id: str
    predicate: Predicate  # the request's filters
    include_archived: bool


async def find(
    conn: AsyncConnection, scope: Scope, ranked: list[Predicate], start: Position, want: int
) -> list[tuple[int, AnyRow]]:
    """Up to `want` matches from `start` on, in rank order, each with its tier."""
    # A reused (generic) plan cannot see the tsquery or the window's bounds, so each statement
    # is planned for its values. And the walk must be a walk: PostgreSQL multiplies the
    # selectivities of a query's words, so for words that come together ("head of growth")
    # it expected 1,407 of 2,000,000 leads to match where 60,966 did, and chose to gather
    # every match from the full-text index (70-115 ms) over walking ~3,400 leads (2-4 ms).
    await queries.plan_walks(conn)
    found: list[tuple[int, AnyRow]] = []
    floors: dict[str | None, str | None] = {}  # the walk's end depends only on its start
    for tier in range(start.tier, len(ranked)):
        before = start.before_id if tier == start.tier else None
        if before not in floors:
            floors[before] = await queries.window_floor(
                conn,
                workspace_id=scope.workspace_id,
                include_archived=scope.include_archived,
                before_id=before,
                rows=WINDOW_ROWS,
            )
        rows = await _newest(conn, scope, ranked[tier], before, floors[before], want - len(found))
        found.extend((tier, row) for row in rows)
        if len(found) >= want:
            break
    return found


async def _newest(
    conn: AsyncConnection,
    scope: Scope,
    tier: Predicate,
    before_id: str | None,
    floor: str | None,
    want: int,
) -> list[AnyRow]:
    """The tier's newest `want` matches below `before_id`: walked down to `floor`, and from
    the full-text indexes below it when the walk found too few."""
    predicate = and_(scope.predicate, tier)
    rows = await queries.newest_matches(
        conn,
        workspace_id=scope.workspace_id,
        predicate=predicate,
        include_archived=scope.include_archived,
        before_id=before_id,
        floor_id=floor,
        limit=want,
    )
    if len(rows) >= want or floor is None:
        return rows
    await queries.allow_index_gathering(conn, True)  # rare: gather from the index, then sort
    older = await queries.older_matches(
        conn,
        workspace_id=scope.workspace_id,
        predicate=predicate,
        include_archived=scope.include_archived,
        below_id=floor,
        limit=want - len(rows),
    )
    await queries.allow_index_gathering(conn, False)
    return rows + older
