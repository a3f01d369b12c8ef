"""How NDJSON bytes are cut into per-transaction pieces: only at a line's end."""

from __future__ import annotations

from server.scoring.ingest import Lines, pieces


def test_pieces_end_at_newlines_and_join_back_to_the_input() -> None:
    data = b"".join(b"%d\n" % (i * 37) for i in range(500))
    cut = pieces(data, 64)
    assert len(cut) > 10 and b"".join(cut) == data
    assert all(piece.endswith(b"\n") and len(piece) <= 64 for piece in cut)


def test_a_line_longer_than_a_piece_is_a_piece_of_its_own() -> None:
    assert pieces(b"a\n" + b"x" * 100 + b"\nb\n", 10) == [b"a\n", b"x" * 100 + b"\n", b"b\n"]


def test_a_line_split_across_messages_is_written_whole() -> None:
    lines = Lines(bytearray())
    assert lines.take(b'{"a": 1}\n{"b"') == b'{"a": 1}\n'
    assert lines.take(b": 2}\n{") == b'{"b": 2}\n'
    assert lines.rest() == b"{\n"
