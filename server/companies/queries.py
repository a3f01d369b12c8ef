"""SQL for companies. Every statement is scoped by workspace_id.

The hierarchy is walked level by level: each step of a recursive CTE carries the whole
frontier (the ids of one level) as an array and finds the next level with one index scan
(`parent_company_id = ANY(frontier)`). A group of any size costs one statement and one
index scan per level, never a query per company, and a paginated walk can stop at the first
level that fills the page.

Beside parent_company_id each company keeps its `path` (the ids from its root down to it),
and each linked lead a copy of it: "leads in the group of X" is then one range of
leads.company_path, which needs no walk at all. Paths change only under the hierarchy lock,
together with parent_company_id (move_subtree).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    bindparam,
    cast,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, array
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.selectable import CTE
from sqlalchemy.types import Text

from server.db.engine import AnyRow
from server.db.tables import companies, leads
from server.fields import patched_custom_fields

COMPANY_COLUMNS = list(companies.c)

# Bounds every walk of the hierarchy. Writes never make a cycle, so this only matters if
# the data were corrupted by hand: the query then ends instead of looping forever.
MAX_WALK = 10_000


def _scoped(workspace_id: str, company_id: str) -> ColumnElement[bool]:
    return and_(companies.c.workspace_id == workspace_id, companies.c.id == company_id)


async def lock_hierarchy(conn: AsyncConnection, *, workspace_id: str) -> None:
    """Serialise changes to one workspace's hierarchy until the transaction ends.

    Two concurrent parent changes (A under B, B under A) would each pass the cycle check
    against a snapshot without the other; taking this lock first makes the second one see
    the first one's result."""
    key = func.hashtextextended(literal(f"companies.hierarchy:{workspace_id}"), 0)
    await conn.execute(select(func.pg_advisory_xact_lock(key)))


async def insert_company(conn: AsyncConnection, *, values: dict[str, Any]) -> AnyRow:
    result = await conn.execute(insert(companies).values(**values).returning(*COMPANY_COLUMNS))
    return result.one()


async def get_company(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    company_id: str,
    lock: bool = False,
    share: bool = False,
) -> AnyRow | None:
    """`lock`: FOR UPDATE. `share`: FOR SHARE, which a lead being linked takes so that a
    concurrent move of the company (which updates its row) waits for the link, or the link
    reads the moved company's new path."""
    query = select(*COMPANY_COLUMNS).where(_scoped(workspace_id, company_id))
    if lock or share:
        query = query.with_for_update(read=share and not lock)
    return (await conn.execute(query)).first()


async def get_companies(
    conn: AsyncConnection, *, workspace_id: str, company_ids: list[str]
) -> list[AnyRow]:
    query = select(*COMPANY_COLUMNS).where(
        companies.c.workspace_id == workspace_id, companies.c.id.in_(company_ids)
    )
    return list((await conn.execute(query)).all())


def _live_by_domain(
    workspace_id: str | ColumnElement[str], domain: str | ColumnElement[str]
) -> ColumnElement[bool]:
    return and_(
        companies.c.workspace_id == workspace_id,
        companies.c.domain == domain,
        companies.c.archived_at.is_(None),
    )


async def find_live_by_domain(
    conn: AsyncConnection, *, workspace_id: str, domain: str
) -> AnyRow | None:
    query = select(*COMPANY_COLUMNS).where(_live_by_domain(workspace_id, domain))
    return (await conn.execute(query.with_for_update(read=True))).first()


def live_by_domain_cte(*, workspace_id: ColumnElement[str], domain: ColumnElement[str]) -> CTE:
    """find_live_by_domain as a CTE, for a statement that links a lead as it inserts it."""
    query = select(companies.c.id, companies.c.name, companies.c.path).where(
        _live_by_domain(workspace_id, domain)
    )
    return query.with_for_update(read=True).cte("domain_company")


async def update_company(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    company_id: str,
    values: dict[str, Any],
    custom_merge: dict[str, Any] | None = None,
    custom_remove: list[str] | None = None,
) -> AnyRow | None:
    """Set columns, and patch custom_fields key by key (merge, then remove) in one statement."""
    assignments: dict[str, Any] = {**values, "updated_at": func.now()}
    document = patched_custom_fields(companies.c.custom_fields, custom_merge, custom_remove)
    if document is not None:
        assignments["custom_fields"] = document
    statement = (
        update(companies)
        .where(_scoped(workspace_id, company_id))
        .values(**assignments)
        .returning(*COMPANY_COLUMNS)
    )
    return (await conn.execute(statement)).first()


async def ancestor_ids(conn: AsyncConnection, *, workspace_id: str, company_id: str) -> list[str]:
    """The company's id, then its parent's, up to the root of its group."""
    walk = (
        select(companies.c.id, companies.c.parent_company_id, literal(0).label("step"))
        .where(_scoped(workspace_id, company_id))
        .cte("walk", recursive=True)
    )
    walk = walk.union_all(
        select(companies.c.id, companies.c.parent_company_id, walk.c.step + 1).where(
            companies.c.workspace_id == workspace_id,
            companies.c.id == walk.c.parent_company_id,
            walk.c.step < MAX_WALK,
        )
    )
    rows = await conn.execute(select(walk.c.id).order_by(walk.c.step))
    return [row.id for row in rows]


def _levels(
    workspace_id: str,
    root_id: str,
    *,
    max_depth: int,
    include_archived: bool,
    after: tuple[int, str] = (0, ""),
    stop_after: int | None = None,
) -> Any:
    """A recursive CTE of (depth, ids): one row per level below `root_id`, depth 0 being the
    root itself. With `stop_after`, the walk ends at the first level by which more than that
    many companies sort after `after` (by depth, then id): deeper levels cannot be on the page.
    """
    children = companies.alias("children")
    levels = select(
        literal(0, Integer).label("depth"),
        cast(array([literal(root_id, Text)]), ARRAY(Text)).label("ids"),
        literal(0, Integer).label("after"),
    ).cte("levels", recursive=True)
    conditions = [
        children.c.workspace_id == workspace_id,
        children.c.parent_company_id == func.any(levels.c.ids),
    ]
    if not include_archived:
        conditions.append(children.c.archived_at.is_(None))
    next_depth = levels.c.depth + 1
    is_after = or_(next_depth > after[0], and_(next_depth == after[0], children.c.id > after[1]))
    frontier = (
        select(
            func.array_agg(children.c.id).label("ids"),
            cast(func.count().filter(is_after), Integer).label("after"),
        )
        .where(*conditions)
        .lateral("frontier")
    )
    step = [levels.c.depth < max_depth, frontier.c.ids.is_not(None)]
    if stop_after is not None:
        step.append(levels.c.after <= stop_after)
    return levels.union_all(
        select(next_depth, frontier.c.ids, levels.c.after + frontier.c.after)
        .select_from(levels.join(frontier, literal(True)))
        .where(*step)
    )


async def subtree_live_count(conn: AsyncConnection, *, workspace_id: str, company_id: str) -> int:
    """How many live companies sit anywhere below this one (the walk skips nothing: a live
    grandchild under an archived child still counts)."""
    levels = _levels(workspace_id, company_id, max_depth=MAX_WALK, include_archived=True)
    below = select(func.unnest(levels.c.ids).label("id")).where(levels.c.depth > 0).subquery()
    query = select(func.count()).where(
        companies.c.workspace_id == workspace_id,
        companies.c.id.in_(select(below.c.id)),
        companies.c.archived_at.is_(None),
    )
    return int((await conn.execute(query)).scalar_one())


async def archive_subtree(
    conn: AsyncConnection, *, workspace_id: str, company_id: str
) -> list[str]:
    """Archive every live company below this one; returns their ids."""
    levels = _levels(workspace_id, company_id, max_depth=MAX_WALK, include_archived=True)
    below = select(func.unnest(levels.c.ids)).where(levels.c.depth > 0)
    statement = (
        update(companies)
        .where(
            companies.c.workspace_id == workspace_id,
            companies.c.id.in_(below),
            companies.c.archived_at.is_(None),
        )
        .values(archived_at=func.now(), updated_at=func.now())
        .returning(companies.c.id)
    )
    return [row.id for row in await conn.execute(statement)]


async def tree_page(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    company_id: str,
    max_depth: int,
    include_archived: bool,
    after: tuple[int, str],
    limit: int,
) -> list[AnyRow]:
    """The company (depth 0), its ancestors (depth -1 for the parent, -2, … up to the root)
    and one page of subsidiaries after `after` by (depth, id), in one statement. Fetches
    limit + 1 subsidiaries so the caller knows whether more follow."""
    up = (
        select(companies.c.id, companies.c.parent_company_id, literal(0, Integer).label("depth"))
        .where(_scoped(workspace_id, company_id))
        .cte("up", recursive=True)
    )
    up = up.union_all(
        select(companies.c.id, companies.c.parent_company_id, up.c.depth - 1).where(
            companies.c.workspace_id == workspace_id,
            companies.c.id == up.c.parent_company_id,
            up.c.depth > -MAX_WALK,
        )
    )
    levels = _levels(
        workspace_id,
        company_id,
        max_depth=max_depth,
        include_archived=include_archived,
        after=after,
        stop_after=limit,
    )
    member = func.unnest(levels.c.ids).table_valued("id").render_derived()
    down = (
        select(member.c.id, levels.c.depth)
        .select_from(levels.join(member, literal(True)))
        .where(
            levels.c.depth > 0,
            or_(
                levels.c.depth > after[0],
                and_(levels.c.depth == after[0], member.c.id > after[1]),
            ),
        )
        .order_by(levels.c.depth, member.c.id)
        .limit(limit + 1)
        .cte("down")
    )
    placed = select(up.c.id, up.c.depth).union_all(select(down.c.id, down.c.depth)).subquery()
    query = (
        select(*COMPANY_COLUMNS, placed.c.depth)
        .select_from(
            placed.join(
                companies,
                and_(companies.c.workspace_id == workspace_id, companies.c.id == placed.c.id),
            )
        )
        .order_by(placed.c.depth, companies.c.id)
    )
    return list((await conn.execute(query)).all())


def path_range(column: ColumnElement[str], prefix: str) -> ColumnElement[bool]:
    """Paths that start with `prefix` (which ends with '/'), as a range an index can scan:
    with the C collation, every such path sorts in [prefix, prefix with its last '/'
    replaced by '0'), '0' being the character right after '/'.

    The bounds are rendered into the SQL rather than bound: with parameters, PostgreSQL
    soon switches a prepared statement to a generic plan that cannot tell a group of ten
    companies from one of ten thousand and picks the small-group plan for both."""
    low = bindparam(None, prefix, type_=Text, literal_execute=True)
    high = bindparam(None, prefix[:-1] + "0", type_=Text, literal_execute=True)
    return and_(column >= low, column < high)


async def has_subsidiaries(conn: AsyncConnection, *, workspace_id: str, company_id: str) -> bool:
    query = select(
        exists().where(
            companies.c.workspace_id == workspace_id,
            companies.c.parent_company_id == company_id,
        )
    )
    return bool((await conn.execute(query)).scalar_one())


async def subtree_height(conn: AsyncConnection, *, workspace_id: str, path: str) -> int:
    """Levels from this company down to its deepest subsidiary (0 for a leaf)."""
    segments = func.length(companies.c.path) - func.length(func.replace(companies.c.path, "/", ""))
    query = select(func.max(segments)).where(
        companies.c.workspace_id == workspace_id, path_range(companies.c.path, path)
    )
    deepest = (await conn.execute(query)).scalar_one()
    return int(deepest or 0) - path.count("/")


async def move_subtree(
    conn: AsyncConnection, *, workspace_id: str, old_path: str, new_path: str
) -> None:
    """Rewrite the path prefix of a company, everything below it, and their leads."""
    keep_from = len(old_path) + 1
    await conn.execute(
        update(companies)
        .where(companies.c.workspace_id == workspace_id, path_range(companies.c.path, old_path))
        .values(path=new_path + func.substr(companies.c.path, keep_from))
    )
    await conn.execute(
        update(leads)
        .where(leads.c.workspace_id == workspace_id, path_range(leads.c.company_path, old_path))
        .values(company_path=new_path + func.substr(leads.c.company_path, keep_from))
    )


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def text_match(words: list[str]) -> ColumnElement[bool]:
    """Every word appears in the name or the domain, any case (trigram indexes serve it)."""
    parts = []
    for word in words:
        pattern = f"%{_escape_like(word.lower())}%"
        parts.append(
            or_(
                func.lower(companies.c.name).like(pattern, escape="\\"),
                companies.c.domain.like(pattern, escape="\\"),
            )
        )
    return and_(*parts)


async def list_page(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    predicate: ColumnElement[bool],
    include_archived: bool,
    after_id: str | None,
    limit: int,
) -> list[AnyRow]:
    """One keyset page in id order; fetches limit + 1 rows so the caller knows if more follow."""
    conditions = [companies.c.workspace_id == workspace_id, predicate]
    if not include_archived:
        conditions.append(companies.c.archived_at.is_(None))
    if after_id is not None:
        conditions.append(companies.c.id > after_id)
    query = select(*COMPANY_COLUMNS).where(*conditions).order_by(companies.c.id).limit(limit + 1)
    return list((await conn.execute(query)).all())


# -- leads linked to companies --------------------------------------------------------


def _email_domain() -> ColumnElement[str]:
    # The expression leads_workspace_email_domain indexes, so the update finds its rows.
    return func.split_part(leads.c.email, "@", 2)


async def link_leads_by_domain(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    company_id: str,
    domain: str,
    name: str,
    path: str,
) -> int:
    """Link every unlinked lead whose email has this domain; returns how many."""
    statement = (
        update(leads)
        .where(
            leads.c.workspace_id == workspace_id,
            leads.c.company_id.is_(None),
            _email_domain() == domain,
        )
        .values(company_id=company_id, company=name, company_path=path, updated_at=func.now())
    )
    return (await conn.execute(statement)).rowcount


async def rename_linked_leads(
    conn: AsyncConnection, *, workspace_id: str, company_id: str, name: str
) -> None:
    """Keep the stored company name of linked leads (what lead search reads) current."""
    await conn.execute(
        update(leads)
        .where(leads.c.workspace_id == workspace_id, leads.c.company_id == company_id)
        .values(company=name)
    )
