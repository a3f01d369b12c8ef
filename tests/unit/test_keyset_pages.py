"""Keyset pages without a database: where a page starts, where it stops, and the cursor
that leads on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from server.errors import FieldViolation, InvalidArgument
from server.pagination import CursorCodec, Keyset

CODEC = CursorCodec(b"s" * 32)


@dataclass(frozen=True)
class Item:
    rank: int
    id: str


def by_rank_and_id(item: Item) -> list[Any]:
    return [item.rank, item.id]


def items(count: int) -> list[Item]:
    return [Item(rank=n // 2, id=f"it_{n:03}") for n in range(count)]


def keyset(query: str = "q1", *, field: str = "cursor") -> Keyset:
    return Keyset(CODEC, "ws_a", query, field=field)


def signed(position: list[Any], query: str = "q1") -> str:
    return CODEC.encode(workspace_id="ws_a", query=query, position=position)


def test_no_cursor_means_the_first_page() -> None:
    assert keyset().position("", int, str) is None
    assert keyset().after_id("") is None


def test_a_full_page_with_one_row_more_leads_on_from_its_last_row() -> None:
    page, cursor = keyset().page(items(4), 3, by_rank_and_id)
    assert page == items(3)
    assert keyset().position(cursor, int, str) == [1, "it_002"]


def test_next_cursor_is_empty_on_the_last_page() -> None:
    for fetched in (0, 2, 3):
        page, cursor = keyset().page(items(fetched), 3, by_rank_and_id)
        assert (page, cursor) == (items(fetched), "")


def test_walking_the_cursors_visits_every_row_once_in_order() -> None:
    rows, seen, cursor = items(11), [], ""
    while True:
        after = keyset().position(cursor, int, str)
        rest = [r for r in rows if after is None or [r.rank, r.id] > after]
        page, cursor = keyset().page(rest[:5], 4, by_rank_and_id)
        seen.extend(page)
        if not cursor:
            break
    assert seen == rows


def test_after_id_reads_back_the_id_a_page_ended_at() -> None:
    _, cursor = keyset().page(items(3), 2, lambda item: [item.id])
    assert keyset().after_id(cursor) == "it_001"


@pytest.mark.parametrize(
    "position",
    [[], ["it_001"], [1], [1, "it_001", 2], ["it_001", 1], [1.5, "it_001"], [None, "it_001"]],
)
def test_a_position_of_another_shape_is_a_malformed_cursor(position: list[Any]) -> None:
    with pytest.raises(InvalidArgument) as caught:
        keyset().position(signed(position), int, str)
    assert caught.value.reason == "CURSOR_INVALID"
    assert caught.value.message == "cursor: malformed cursor"
    assert caught.value.violations == [FieldViolation("cursor", "malformed cursor")]


def test_an_id_cursor_holding_anything_but_one_string_is_malformed() -> None:
    for position in ([], [7], ["it_001", "it_002"]):
        with pytest.raises(InvalidArgument) as caught:
            keyset().after_id(signed(position))
        assert caught.value.message == "cursor: malformed cursor"


def test_a_cursor_of_another_query_is_refused_as_not_issued_here() -> None:
    with pytest.raises(InvalidArgument) as caught:
        keyset("q1").position(signed([1, "it_001"], query="q2"), int, str)
    assert caught.value.reason == "CURSOR_INVALID"
    assert caught.value.message == "cursor: not a cursor this query issued"


def test_errors_name_the_field_the_cursor_came_in() -> None:
    events = keyset(field="after")
    with pytest.raises(InvalidArgument) as malformed:
        events.position(signed(["x"]), int, int)
    with pytest.raises(InvalidArgument) as forged:
        events.position("not-a-cursor", int, int)
    assert malformed.value.violations == [FieldViolation("after", "malformed cursor")]
    assert forged.value.violations[0].field == "after"
    assert events.malformed().message == "after: malformed cursor"
