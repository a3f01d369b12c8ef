"""The company graph benchmark of issue 3: `python -m bench.companies [--quick]`.

One workspace of 200,000 companies (COPY-seeded into a fresh database on the embedded
PostgreSQL, as the tests use) holds a 10,000-company group five levels deep (1 + 10 + 100 +
1,000 + 8,889); the other companies sit in small groups of ten. Every company has two leads,
created in random company order so a group's leads are spread over the id order the lead
list pages by. A real `tnx-crm serve` process answers; the client calls it over gRPC one
call at a time, and every figure is a p50 over the same number of calls, with the subject
and its baseline measured in alternating rounds of the same run:

1. GetCompanyTree for the root of the group (its ancestors, and the first page of 100
   subsidiaries out of 9,999) against the same call for a leaf five levels down (four
   ancestors, no subsidiaries). Target: root p50 ≤ 10 x leaf p50.
2. ListLeads (a page of 100) with company_group_id = the group's root, whose group has
   10,000 companies and 20,000 leads, against ListLeads filtered to one company
   (`filter: company_id = "…"`, a company outside the group with 250 leads, so both
   return full pages). Target: group p50 ≤ 3 x one-company p50.

Also printed, for context: the last page of the root's tree (a cursor past 9,900
subsidiaries) and the database-side time of each statement (EXPLAIN ANALYZE).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import psycopg
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import ClauseElement, Executable
from tnx.crm.v1 import (
    company_service_pb2,
    company_service_pb2_grpc,
    lead_service_pb2,
    lead_service_pb2_grpc,
)

from server import ids
from server.companies import queries
from server.db.engine import make_engine
from server.db.url import libpq_url
from tests.support import db, stack

FANOUT = 10
GROUP_LEVELS = 5  # the root and four levels below it
SMALL_GROUP = 10  # the rest of the workspace: a parent with nine subsidiaries
LEADS_PER_COMPANY = 2
# The one-company baseline lists a company with more leads than a page, so both lists
# return full pages and the comparison is the filter's cost, not the page's size.
ONE_COMPANY_LEADS = 250
PAGE = 100
TREE_TARGET = 10.0
GROUP_TARGET = 3.0


@dataclass(frozen=True)
class Plan:
    companies: int
    group: int
    calls: int
    rounds: int


@dataclass
class Seeded:
    workspace_id: str
    key: str
    root: str
    leaf: str
    one_company: str
    group_ids: list[str]


def parse_args(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(
        prog="python -m bench.companies",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="20,000 companies, fewer calls")
    parser.add_argument("--calls", type=int, help="timed calls per subject and round")
    parser.add_argument("--rounds", type=int, help="alternating rounds per comparison")
    args = parser.parse_args(argv)
    return Plan(
        companies=20_000 if args.quick else 200_000,
        group=10_000,
        calls=args.calls or (50 if args.quick else 200),
        rounds=args.rounds or (2 if args.quick else 3),
    )


# -- seeding --------------------------------------------------------------------------


def _group_levels(size: int) -> list[int]:
    """How many companies each level of the big group holds: 1, 10, 100, 1000, rest."""
    levels = [FANOUT**depth for depth in range(GROUP_LEVELS - 1)]
    levels.append(size - sum(levels))
    return levels


def _company_rows(plan: Plan, workspace_id: str) -> tuple[list[tuple[Any, ...]], list[list[str]]]:
    """(rows in parent-before-child order, the big group's ids level by level)."""
    rows: list[tuple[Any, ...]] = []
    levels: list[list[str]] = []
    number = 0
    paths: dict[str | None, str] = {None: ""}

    def add(parent: str | None) -> str:
        nonlocal number
        company_id = ids.new_id("cmp")
        paths[company_id] = f"{paths[parent]}{company_id}/"
        industry = ("SaaS", "Retail", "Fintech", "Health")[number % 4]
        rows.append(
            (
                company_id,
                workspace_id,
                f"Company {number}",
                f"c{number}.example",
                industry,
                10 + number % 5000,
                "US",
                parent,
                paths[company_id],
            )
        )
        number += 1
        return company_id

    for depth, count in enumerate(_group_levels(plan.group)):
        parents = levels[-1] if levels else []
        levels.append([add(parents[i % len(parents)] if parents else None) for i in range(count)])
        assert depth == len(levels) - 1
    while number < plan.companies:
        parent = add(None)
        for _ in range(min(SMALL_GROUP - 1, plan.companies - number)):
            add(parent)
    return rows, levels


def _copy(url: str, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> None:
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with (
        psycopg.connect(libpq_url(url)) as conn,
        conn.cursor() as cursor,
        cursor.copy(statement) as copy,
    ):
        for row in rows:
            copy.write_row(row)


def seed(plan: Plan, url: str) -> Seeded:
    created = db.create_workspace(url, name="bench-companies")
    workspace_id = created.workspace_id
    rows, levels = _company_rows(plan, workspace_id)
    columns = "id workspace_id name domain industry employee_count country parent_company_id path"
    _copy(url, "companies", columns.split(), iter(rows))
    by_id = {row[0]: row for row in rows}

    # Leads in random company order, so a group's leads spread over the lead id order.
    one_company = rows[-1][0]  # outside the big group
    order = list(by_id)
    random.Random(7).shuffle(order)

    def lead_rows() -> Iterator[tuple[Any, ...]]:
        for n, company_id in enumerate(order):
            company = by_id[company_id]
            count = ONE_COMPANY_LEADS if company_id == one_company else LEADS_PER_COMPANY
            for k in range(count):
                email = f"p{k}.{n}@{company[3]}"
                yield (
                    ids.new_id("lead"),
                    workspace_id,
                    email,
                    company_id,
                    company[2],
                    company[8],
                    "bench",
                )

    columns = "id workspace_id email company_id company company_path source"
    _copy(url, "leads", columns.split(), lead_rows())
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE companies")
        conn.execute("VACUUM ANALYZE leads")
    return Seeded(
        workspace_id=workspace_id,
        key=created.key,
        root=levels[0][0],
        leaf=levels[-1][-1],
        one_company=one_company,
        group_ids=[i for level in levels for i in level],
    )


# -- measuring ------------------------------------------------------------------------


def _p50_ms(call: Callable[[], object], calls: int) -> float:
    timings = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1000


def compare(
    subject: Callable[[], object], baseline: Callable[[], object], plan: Plan
) -> tuple[float, float]:
    """p50s of subject and baseline, each the median over alternating rounds."""
    for call in (subject, baseline):
        _p50_ms(call, 10)  # warm caches, connections and plans
    subjects, baselines = [], []
    for _ in range(plan.rounds):
        subjects.append(_p50_ms(subject, plan.calls))
        baselines.append(_p50_ms(baseline, plan.calls))
    return statistics.median(subjects), statistics.median(baselines)


def sql_ms(url: str, sql: str, *params: Any) -> float:
    """Execution time PostgreSQL reports for one statement (median of five)."""
    times = []
    with psycopg.connect(libpq_url(url)) as conn:
        for _ in range(5):
            plan = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params).fetchone()
            assert plan is not None
            times.append(float(plan[0][0]["Execution Time"]))
    return statistics.median(times)


def tree_sql(url: str, workspace_id: str, company_id: str) -> str:
    """The exact statement GetCompanyTree runs for a first page, with its values inlined."""
    captured: list[Executable] = []

    class Empty:
        def all(self) -> list[Any]:
            return []

    class Capture:
        async def execute(self, statement: Executable) -> Empty:
            captured.append(statement)
            return Empty()

    call = queries.tree_page(
        cast(AsyncConnection, Capture()),
        workspace_id=workspace_id,
        company_id=company_id,
        max_depth=queries.MAX_WALK,
        include_archived=False,
        after=(0, ""),
        limit=PAGE,
    )
    asyncio.run(call)
    statement = cast(ClauseElement, captured[0])
    dialect = make_engine(url).dialect
    compiled = statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    return str(compiled).replace("%", "%%")


def run(plan: Plan) -> int:
    started = time.perf_counter()
    with db.fresh_database() as url:
        print(
            f"seeding {plan.companies:,} companies and {_lead_count(plan):,} leads …",
            flush=True,
        )
        seeded = seed(plan, url)
        print(f"seeded in {time.perf_counter() - started:.0f}s", flush=True)
        log = Path(db.__file__).resolve().parents[2] / "build" / "bench-companies-server.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with stack.grpc_server(url, log) as (address, _), grpc.insecure_channel(address) as ch:
            return measure(plan, url, seeded, ch)


def measure(plan: Plan, url: str, seeded: Seeded, channel: grpc.Channel) -> int:
    meta = (("authorization", f"Bearer {seeded.key}"),)
    companies = company_service_pb2_grpc.CompanyServiceStub(channel)
    leads = lead_service_pb2_grpc.LeadServiceStub(channel)

    def tree(company_id: str, cursor: str = "") -> company_service_pb2.GetCompanyTreeResponse:
        request = company_service_pb2.GetCompanyTreeRequest(
            id=company_id, limit=PAGE, cursor=cursor
        )
        reply: company_service_pb2.GetCompanyTreeResponse = companies.GetCompanyTree(
            request, metadata=meta
        )
        return reply

    def listed(**filters: Any) -> lead_service_pb2.ListLeadsResponse:
        request = lead_service_pb2.ListLeadsRequest(limit=PAGE, **filters)
        reply: lead_service_pb2.ListLeadsResponse = leads.ListLeads(request, metadata=meta)
        return reply

    root_page = tree(seeded.root)
    leaf_page = tree(seeded.leaf)
    assert len(root_page.subsidiaries) == PAGE and len(leaf_page.ancestors) == GROUP_LEVELS - 1
    one_filter = f'company_id = "{seeded.one_company}"'
    assert len(listed(company_group_id=seeded.root).leads) == PAGE
    assert len(listed(filter=one_filter).leads) == PAGE

    # Walk every page once: the group must come back whole, and the last page is timed.
    cursor, walked = root_page.next_cursor, len(root_page.subsidiaries)
    while True:
        page = tree(seeded.root, cursor)
        walked += len(page.subsidiaries)
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert walked == plan.group - 1, walked

    root_ms, leaf_ms = compare(lambda: tree(seeded.root), lambda: tree(seeded.leaf), plan)
    root_sql = sql_ms(url, tree_sql(url, seeded.workspace_id, seeded.root))
    leaf_sql = sql_ms(url, tree_sql(url, seeded.workspace_id, seeded.leaf))
    group_ms, one_ms = compare(
        lambda: listed(company_group_id=seeded.root), lambda: listed(filter=one_filter), plan
    )
    last_ms = statistics.median(
        _p50_ms(lambda: tree(seeded.root, cursor), max(10, plan.calls // 4))
        for _ in range(plan.rounds)
    )
    root_path = f"{seeded.root}/"
    group_sql = sql_ms(
        url, _GROUP_SQL, seeded.workspace_id, root_path, root_path[:-1] + "0", PAGE + 1
    )
    one_group_ms = statistics.median(
        _p50_ms(lambda: listed(company_group_id=seeded.one_company), plan.calls)
        for _ in range(plan.rounds)
    )
    one_sql = sql_ms(url, _ONE_SQL, seeded.workspace_id, seeded.one_company, PAGE + 1)

    tree_ratio, group_ratio = root_ms / leaf_ms, group_ms / one_ms
    lines = [
        "",
        f"company graph benchmark: {plan.companies:,} companies, group of {plan.group:,} "
        f"({' + '.join(f'{n:,}' for n in _group_levels(plan.group))}), "
        f"{_lead_count(plan):,} leads; p50 over {plan.rounds} rounds x "
        f"{plan.calls} gRPC calls",
        "",
        f"  GetCompanyTree root, first page of {PAGE}      {root_ms:8.2f} ms"
        f"   (SQL alone {root_sql:.2f} ms)",
        f"  GetCompanyTree leaf (4 ancestors)            {leaf_ms:8.2f} ms"
        f"   (SQL alone {leaf_sql:.2f} ms)",
        f"  GetCompanyTree root, last page (cursor)      {last_ms:8.2f} ms   (context)",
        f"  ListLeads company_group_id=root, {PAGE}/page   {group_ms:8.2f} ms"
        f"   (SQL alone {group_sql:.2f} ms)",
        f"  ListLeads company_id = one company         {one_ms:8.2f} ms"
        f"   (SQL alone {one_sql:.2f} ms)",
        f"  ListLeads company_group_id=one company       {one_group_ms:8.2f} ms   (context)",
        "",
        _check("tree: root p50 / leaf p50", tree_ratio, TREE_TARGET),
        _check("leads: group p50 / one-company p50", group_ratio, GROUP_TARGET),
    ]
    print("\n".join(lines), flush=True)
    return 0 if tree_ratio <= TREE_TARGET and group_ratio <= GROUP_TARGET else 1


def _lead_count(plan: Plan) -> int:
    return plan.companies * LEADS_PER_COMPANY + ONE_COMPANY_LEADS - LEADS_PER_COMPANY


def _check(name: str, ratio: float, target: float) -> str:
    verdict = "ok" if ratio <= target else "MISSED"
    return f"  {name:<40} {ratio:6.2f}x   target ≤ {target:g}x   {verdict}"


# The statements ListLeads runs, for the database-side figures (same shape as the server's).
_GROUP_SQL = """
SELECT id FROM leads WHERE workspace_id = %s AND archived_at IS NULL
  AND company_path >= %s AND company_path < %s ORDER BY id LIMIT %s
"""
_ONE_SQL = """
SELECT id FROM leads WHERE workspace_id = %s AND archived_at IS NULL AND company_id = %s
ORDER BY id LIMIT %s
"""


def main(argv: list[str] | None = None) -> None:
    raise SystemExit(run(parse_args(argv)))


if __name__ == "__main__":
    main()
