"""Reading companies: filtered, paginated lists and the group tree."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, true

from server.companies import queries
from server.companies.service import Company, to_company
from server.db.engine import Database
from server.errors import InvalidArgument, NotFound
from server.filtering.ast import Condition, Node, all_of
from server.filtering.compiler import Compiler
from server.filtering.fields import COMPANY_FIELDS
from server.pagination import CursorCodec, Keyset, fingerprint, page_size

MAX_QUERY_WORDS = 16


@dataclass(frozen=True)
class CompanyFilters:
    industry: str = ""
    country: str = ""
    employee_count_min: int | None = None
    employee_count_max: int | None = None
    annual_revenue_min: int | None = None
    annual_revenue_max: int | None = None
    parent_company_id: str = ""
    query: str = ""
    include_archived: bool = False


@dataclass(frozen=True)
class Page:
    companies: list[Company]
    next_cursor: str


@dataclass(frozen=True)
class TreeNode:
    company: Company
    depth: int


@dataclass(frozen=True)
class Tree:
    company: Company
    ancestors: list[Company]  # parent first, root last
    subsidiaries: list[TreeNode]  # by depth, then id
    next_cursor: str


# -- queries --------------------------------------------------------------------------


def _filter_tree(filters: CompanyFilters) -> Node | None:
    nodes: list[Node] = []
    if filters.industry:
        nodes.append(Condition("industry", "eq", filters.industry.strip()))
    if filters.country:
        nodes.append(Condition("country", "eq", filters.country.strip()))
    for name, low, high in (
        ("employee_count", filters.employee_count_min, filters.employee_count_max),
        ("annual_revenue", filters.annual_revenue_min, filters.annual_revenue_max),
    ):
        if low is not None:
            nodes.append(Condition(name, "gte", low))
        if high is not None:
            nodes.append(Condition(name, "lte", high))
    if filters.parent_company_id:
        nodes.append(Condition("parent_company_id", "eq", filters.parent_company_id.strip()))
    return all_of(nodes)


def _predicate(filters: CompanyFilters) -> ColumnElement[bool]:
    node = _filter_tree(filters)
    parts: list[ColumnElement[bool]] = []
    if node is not None:
        parts.append(Compiler(COMPANY_FIELDS, label="filter").compile(node))
    if filters.query.strip():
        words = re.findall(r"[\w.\-]+", filters.query)[:MAX_QUERY_WORDS]
        if not words:
            raise InvalidArgument.on("query", "must contain at least one word", "QUERY_EMPTY")
        parts.append(queries.text_match(words))
    return and_(true(), *parts)


async def list_companies(
    db: Database,
    codec: CursorCodec,
    *,
    workspace_id: str,
    filters: CompanyFilters,
    limit: int,
    cursor: str,
) -> Page:
    size = page_size(limit)
    predicate = _predicate(filters)
    keyset = Keyset(codec, workspace_id, fingerprint("companies", filters))
    after_id = keyset.after_id(cursor)
    async with db.transaction() as conn:
        rows = await queries.list_page(
            conn,
            workspace_id=workspace_id,
            predicate=predicate,
            include_archived=filters.include_archived,
            after_id=after_id,
            limit=size,
        )
    rows, next_cursor = keyset.page(rows, size, lambda r: [r.id])
    return Page(companies=[to_company(r) for r in rows], next_cursor=next_cursor)


async def company_tree(
    db: Database,
    codec: CursorCodec,
    *,
    workspace_id: str,
    company_id: str,
    max_depth: int,
    limit: int,
    cursor: str,
    include_archived: bool,
) -> Tree:
    """The company, its ancestors up to the root, and a page of subsidiaries breadth first
    (by depth, then id) down to `max_depth` levels (0: all)."""
    size = page_size(limit)
    if max_depth < 0:
        raise InvalidArgument.on("max_depth", "must not be negative", "MAX_DEPTH_NEGATIVE")
    depth_limit = max_depth or queries.MAX_WALK
    keyset = Keyset(
        codec, workspace_id, fingerprint("tree", company_id, depth_limit, include_archived)
    )
    position = keyset.position(cursor, int, str)
    after: tuple[int, str] = (position[0], position[1]) if position else (0, "")
    async with db.transaction() as conn:
        rows = await queries.tree_page(
            conn,
            workspace_id=workspace_id,
            company_id=company_id,
            max_depth=depth_limit,
            include_archived=include_archived,
            after=after,
            limit=size,
        )
    itself = [r for r in rows if r.depth == 0]
    if not itself:
        raise NotFound.resource("company", company_id)
    ancestors = sorted((r for r in rows if r.depth < 0), key=lambda r: -r.depth)
    below, next_cursor = keyset.page(
        [r for r in rows if r.depth > 0], size, lambda r: [r.depth, r.id]
    )
    return Tree(
        company=to_company(itself[0]),
        ancestors=[to_company(r) for r in ancestors],
        subsidiaries=[TreeNode(company=to_company(r), depth=r.depth) for r in below],
        next_cursor=next_cursor,
    )
