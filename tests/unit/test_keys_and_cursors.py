"""API key format and signed cursors, without a database."""

from __future__ import annotations

import pytest

from server import ids
from server.auth import keys
from server.errors import InvalidArgument
from server.pagination import CursorCodec, page_size


def test_generated_keys_are_well_formed_and_distinct() -> None:
    generated = {keys.generate() for _ in range(200)}
    assert len(generated) == 200
    assert all(k.startswith("tnx_") and keys.is_well_formed(k) for k in generated)


def test_a_single_changed_character_breaks_the_checksum() -> None:
    key = keys.generate()
    position = 10
    changed = key[:position] + ("A" if key[position] != "A" else "B") + key[position + 1 :]
    assert not keys.is_well_formed(changed)


def test_cursor_round_trips_only_for_its_workspace_and_query() -> None:
    codec = CursorCodec(b"s" * 32)
    cursor = codec.encode(workspace_id="ws_a", query="q1", position=["lead_x"])
    assert codec.decode(cursor, workspace_id="ws_a", query="q1") == ["lead_x"]
    for workspace, query in [("ws_b", "q1"), ("ws_a", "q2")]:
        with pytest.raises(InvalidArgument):
            codec.decode(cursor, workspace_id=workspace, query=query)
    with pytest.raises(InvalidArgument):
        CursorCodec(b"t" * 32).decode(cursor, workspace_id="ws_a", query="q1")


def test_page_size_defaults_clamps_and_refuses_negatives() -> None:
    assert (page_size(0), page_size(10), page_size(10_000)) == (50, 10, 1000)
    with pytest.raises(InvalidArgument):
        page_size(-1)


def test_ids_carry_their_prefix_and_sort_by_creation() -> None:
    first = ids.new_id("lead")
    later = [ids.new_id("lead") for _ in range(5)]
    assert ids.looks_like("lead", first) and not ids.looks_like("cmp", first)
    assert all(first[:15] <= other[:15] for other in later)
