"""Reading import files without a database: encodings, delimiters, mapping, and the fast
email check agreeing with the API's."""

from __future__ import annotations

import codecs
from collections.abc import Iterator

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given
from hypothesis import strategies as st

from server.imports import mapping, parsing
from server.imports.writer import copy_text
from server.leads import emails


def _opener(data: bytes, size: int = 7) -> parsing.Opener:
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), size):
            yield data[start : start + size]

    return chunks


def _read(data: bytes) -> tuple[parsing.Layout, list[list[str]]]:
    layout = parsing.survey(_opener(data), "CSV", "")
    rows = [cells for _, cells, _ in parsing.rows(_opener(data), "CSV", layout)]
    return layout, rows


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("email;name\na@b.io;Zoë\n".encode(), "utf-8"),
        (codecs.BOM_UTF8 + "email;name\na@b.io;Zoë\n".encode(), "utf-8-sig"),
        ("email\tname\na@b.io\tZoë\n".encode("utf-16"), "utf-16"),
        ("email,name\na@b.io,Zoë\n".encode("utf-16-be"), "utf-16-be"),
        ("email,name\na@b.io,Zoë €\n".encode("cp1252"), "windows-1252"),
    ],
)
def test_encodings_are_detected_across_chunk_boundaries(data: bytes, encoding: str) -> None:
    layout, rows = _read(data)
    assert layout.encoding == encoding and layout.rows == 1
    assert rows[0][1].startswith("Zoë")


def test_quoted_newlines_crlf_and_blank_lines() -> None:
    layout, rows = _read(b'email,notes\r\n\r\na@b.io,"one\r\ntwo"\r\n,\r\nc@d.io,x\r\n')
    assert layout.rows == 2 and layout.delimiter == ","
    assert rows == [["a@b.io", "one\ntwo"], ["c@d.io", "x"]]


def test_broken_utf8_among_good_utf8_is_refused() -> None:
    with pytest.raises(parsing.ImportFailure, match="not valid UTF-8"):
        _read("email,name\na@b.io,Zoë\n".encode() + b"b@c.io,\xff\n")


def test_a_declared_encoding_is_used_as_declared() -> None:
    data = "email,name\na@b.io,Zoë\n".encode("latin-1")
    layout = parsing.survey(_opener(data), "CSV", "latin-1")
    assert layout.encoding == "iso8859-1"


def test_headers_map_by_their_usual_names_and_the_rest_to_custom_fields() -> None:
    explicit = dict(mapping.parse_pairs(["Work Mail=email"]))
    assert mapping.resolve("E-mail", {}) == "email"
    assert mapping.resolve("Email Address", {}) == "email"
    assert mapping.resolve("First Name", {}) == "first_name"
    assert mapping.resolve("Job Title", {}) == "title"
    assert mapping.resolve("Organization", {}) == "company"
    assert mapping.resolve("work mail", explicit) == "email"
    assert mapping.resolve("Annual Revenue (USD)", {}) == "custom.annual_revenue_usd"
    assert mapping.resolve("import_error", {}) == "skip"


@pytest.mark.parametrize(
    "address",
    [
        "Ann.Lee+news@Example.COM",
        "o'brien@sub.example.co.uk",
        "a@localhost",
        "a@b.test",
        "a@example.invalid",
        "x@123.45",
        "üser@exämple.de",
        '"quoted"@example.com',
        "a..b@example.com",
        "a" * 65 + "@example.com",
        "a@" + "b" * 64 + ".com",
    ],
)
def test_the_fast_email_check_agrees_with_email_validator(address: str) -> None:
    _agree(address)


@given(st.from_regex(r"[a-zA-Z0-9._%+'-]{1,20}@[a-zA-Z0-9.-]{1,20}\.[a-zA-Z]{2,6}", fullmatch=True))
def test_the_fast_email_check_agrees_on_generated_addresses(address: str) -> None:
    _agree(address)


def _agree(address: str) -> None:
    try:
        expected: str | None = validate_email(
            address, check_deliverability=False
        ).normalized.lower()
    except EmailNotValidError:
        expected = None
    try:
        got: str | None = emails.normalise(address)
    except EmailNotValidError:
        got = None
    assert got == expected


def test_staged_rows_are_escaped_for_copy_only_where_needed() -> None:
    rows = [(1, "plain", None, 7), (2, "tab\there", "back\\slash", None), (3, "\\N", "a\r\nb", 0)]
    assert copy_text(rows) == (
        b"1\tplain\t\\N\t7\n2\ttab\\there\tback\\\\slash\t\\N\n3\t\\\\N\ta\\r\\nb\t0\n"
    )
