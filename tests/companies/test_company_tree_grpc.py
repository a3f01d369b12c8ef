"""The group tree: ancestors to the root and subsidiaries below, depth-limited and paginated,
each page one SQL statement whatever the size of the group."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from sqlalchemy import event
from tnx.crm.v1 import company_service_pb2

from server.companies import listing
from server.db.engine import Database
from server.pagination import CursorCodec
from tests.companies.support import CompanyStub, chain, create, insert_rows, tree
from tests.conftest import Workspace
from tests.support import db
from tests.support.errors import details


def _group(stub: CompanyStub, ws: Workspace) -> dict[str, str]:
    """root ─ a ─ a1, a2 ; root ─ b ─ b1 ─ b1x : names → ids."""
    ids: dict[str, str] = {}
    for name, parent in [
        ("root", ""),
        ("a", "root"),
        ("b", "root"),
        ("a1", "a"),
        ("a2", "a"),
        ("b1", "b"),
        ("b1x", "b1"),
    ]:
        ids[name] = create(stub, ws, name=name, parent_company_id=ids.get(parent, "")).id
    return ids


def _names(reply: company_service_pb2.GetCompanyTreeResponse) -> list[tuple[str, int]]:
    return [(node.company.name, node.depth) for node in reply.subsidiaries]


def _breadth_first(ids: dict[str, str], names: list[str], depth: int) -> list[tuple[str, int]]:
    return [(n, depth) for n in sorted(names, key=lambda n: ids[n])]


def test_tree_returns_ancestors_to_the_root_and_subsidiaries_breadth_first(
    companies: CompanyStub, workspace: Workspace
) -> None:
    ids = _group(companies, workspace)
    whole = tree(companies, workspace, ids["root"])
    assert whole.company.name == "root" and list(whole.ancestors) == []
    assert _names(whole) == [
        *_breadth_first(ids, ["a", "b"], 1),
        *_breadth_first(ids, ["a1", "a2", "b1"], 2),
        ("b1x", 3),
    ]
    assert whole.next_cursor == ""
    assert {n.company.name: n.company.parent_company_id for n in whole.subsidiaries}["b1x"] == (
        ids["b1"]
    )

    leaf = tree(companies, workspace, ids["b1x"])
    assert [c.name for c in leaf.ancestors] == ["b1", "b", "root"]
    assert list(leaf.subsidiaries) == []

    middle = tree(companies, workspace, ids["b"])
    assert [c.name for c in middle.ancestors] == ["root"]
    assert _names(middle) == [("b1", 1), ("b1x", 2)]


def test_tree_is_depth_limited(companies: CompanyStub, workspace: Workspace) -> None:
    ids = _group(companies, workspace)
    one_level = tree(companies, workspace, ids["root"], max_depth=1)
    assert _names(one_level) == _breadth_first(ids, ["a", "b"], 1)
    two_levels = tree(companies, workspace, ids["root"], max_depth=2)
    assert len(two_levels.subsidiaries) == 5 and two_levels.next_cursor == ""


def test_tree_pages_walk_every_subsidiary_once(
    companies: CompanyStub, workspace: Workspace
) -> None:
    ids = _group(companies, workspace)
    expected = _names(tree(companies, workspace, ids["root"]))
    seen: list[tuple[str, int]] = []
    cursor = ""
    pages = 0
    while True:
        page = tree(companies, workspace, ids["root"], limit=2, cursor=cursor)
        assert [c.name for c in page.ancestors] == [] and page.company.name == "root"
        seen.extend(_names(page))
        pages += 1
        cursor = page.next_cursor
        if not cursor:
            break
    assert seen == expected and pages == 3


def test_tree_leaves_out_archived_subsidiaries_unless_asked(
    companies: CompanyStub, workspace: Workspace
) -> None:
    ids = _group(companies, workspace)
    companies.ArchiveCompany(
        company_service_pb2.ArchiveCompanyRequest(id=ids["b"], force=True),
        metadata=workspace.metadata,
    )
    live = tree(companies, workspace, ids["root"])
    assert [name for name, _ in _names(live)] == sorted(
        ["a", "a1", "a2"], key=lambda n: (len(n), ids[n])
    )
    everything = tree(companies, workspace, ids["root"], include_archived=True)
    assert len(everything.subsidiaries) == 6


def test_bad_tree_requests_are_invalid(
    companies: CompanyStub, workspace: Workspace, other_workspace: Workspace
) -> None:
    ids = _group(companies, workspace)
    page = tree(companies, workspace, ids["root"], limit=1)
    bad: list[tuple[Workspace, dict[str, Any], str]] = [
        (workspace, {"id": ids["root"], "max_depth": -1}, "max_depth"),
        (workspace, {"id": ids["root"], "limit": -5}, "limit"),
        (workspace, {"id": ids["a"], "cursor": page.next_cursor}, "cursor"),
        (workspace, {"id": ids["root"], "max_depth": 1, "cursor": page.next_cursor}, "cursor"),
    ]
    for ws, request, violated in bad:
        with pytest.raises(grpc.RpcError) as caught:
            companies.GetCompanyTree(
                company_service_pb2.GetCompanyTreeRequest(**request), metadata=ws.metadata
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(caught.value)[1] == [violated]
    with pytest.raises(grpc.RpcError) as caught:
        tree(companies, other_workspace, ids["root"])
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_tree_of_a_large_group_is_one_statement_per_page(
    companies: CompanyStub, workspace: Workspace, database_url: str
) -> None:
    top = chain(companies, workspace, "L0", "L1", "L2")
    paths = ["".join(f"{c.id}/" for c in top[: depth + 1]) for depth in range(3)]
    rows = [
        (f"cmp_bulk{i:06d}", workspace.id, f"Bulk {i}", top[i % 3].id, f"{paths[i % 3]}b{i}/")
        for i in range(600)
    ]
    insert_rows(
        database_url,
        "INSERT INTO companies (id, workspace_id, name, parent_company_id, path)"
        " VALUES (%s, %s, %s, %s, %s)",
        rows,
    )

    async def count_statements(database: Database) -> tuple[int, int]:
        statements: list[str] = []
        event.listen(
            database.engine.sync_engine,
            "before_cursor_execute",
            lambda *args: statements.append(args[2]),
        )
        result = await listing.company_tree(
            database,
            CursorCodec(b"k" * 32),
            workspace_id=workspace.id,
            company_id=top[0].id,
            max_depth=0,
            limit=1000,
            cursor="",
            include_archived=False,
        )
        return len(statements), len(result.subsidiaries)

    executed, returned = db.run_with_db(database_url, count_statements)
    assert returned == 602
    assert executed == 1
