"""Reading an uploaded file as a stream of records, straight from its stored chunks.

Nothing here holds the file in memory: bytes come chunk by chunk, are decoded
incrementally, and records come out one at a time. Text encodings: a BOM (UTF-8, UTF-16,
UTF-32) wins; UTF-16 without a BOM is recognised by its NUL bytes; otherwise UTF-8, falling
back to Windows-1252 (a superset of Latin-1's printable range) for a file that is not UTF-8
at all. A file that is UTF-8 in places and broken in others is refused rather than guessed.

Anything that makes the file unreadable as a whole raises ImportFailure with a reason a
person can act on; a problem confined to one row is the caller's row error. A NUL character
is one of those (PostgreSQL stores none): it passes through here, escaped as `\u0000` inside
JSON so the record still parses, and the record's mapping refuses it.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import ijson

MAX_FIELD_CHARS = 1024 * 1024
MAX_LINE_CHARS = 2 * 1024 * 1024
MAX_COLUMNS = 1000
SNIFF_BYTES = 64 * 1024
DELIMITERS = (",", ";", "\t", "|")
FALLBACK_ENCODING = "windows-1252"
_CP1252_ERRORS = "tnx-cp1252-undefined"

# The stdlib default (128 KiB) would refuse long custom-field texts; past this a field is
# almost always a quote left open, reported as such.
csv.field_size_limit(MAX_FIELD_CHARS)


def _undefined_cp1252(error: UnicodeError) -> tuple[str, int]:
    # The five bytes Windows-1252 leaves undefined decode as in Latin-1 (C1 controls).
    assert isinstance(error, UnicodeDecodeError)
    return error.object[error.start : error.end].decode("latin-1"), error.end


codecs.register_error(_CP1252_ERRORS, _undefined_cp1252)

Opener = Callable[[], Iterator[bytes]]  # a fresh iterator over the file's chunks, in order
Row = tuple[int, Any, Any]  # (record number, cells, raw): cells None when unparseable


class ImportFailure(Exception):
    """The file can't be imported as a whole; the message says why."""


@dataclass(frozen=True)
class Unreadable:
    """A record that could not be parsed (an NDJSON line that is not JSON): a row error."""

    message: str


@dataclass
class Layout:
    """What the first pass learned; stored on the job so a resumed job reads alike."""

    encoding: str
    delimiter: str = ""
    columns: list[str] = field(default_factory=list)
    rows: int = 0


class ChunkReader(io.RawIOBase):
    """A raw binary stream over chunks. A binary file is refused by its head (_refuse_binary);
    a stray NUL further on is left to be its record's row error, not the whole file's."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._current = memoryview(b"")
        self.offset = 0  # bytes handed out so far

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._current:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._current = memoryview(chunk)
        size = min(len(buffer), len(self._current))
        buffer[:size] = self._current[:size]
        self._current = self._current[size:]
        self.offset += size
        return size


def _head(open_chunks: Opener) -> bytes:
    head = bytearray()
    for chunk in open_chunks():
        head += chunk
        if len(head) >= SNIFF_BYTES:
            break
    return bytes(head[:SNIFF_BYTES])


def _single_byte_text(encoding: str) -> bool:
    return not codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))


def sniff_encoding(head: bytes, declared: str) -> str:
    if declared:
        try:
            name = codecs.lookup(declared).name
        except LookupError:
            raise ImportFailure(f"unknown encoding {declared!r}") from None
        return "utf-8-sig" if name == "utf-8" else name
    for bom, name in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if head.startswith(bom):
            return name
    sample = head[:4096]
    pairs = len(sample) // 2
    if pairs >= 2:
        even_nul = sample[0::2].count(0) / pairs
        odd_nul = sample[1::2].count(0) / pairs
        if odd_nul > 0.3 and even_nul < 0.05:
            return "utf-16-le"
        if even_nul > 0.3 and odd_nul < 0.05:
            return "utf-16-be"
    return "utf-8"


def _refuse_binary(head: bytes, encoding: str) -> None:
    """Refuse what is evidently not text: control bytes in a single-byte/UTF-8 file; for
    UTF-16/32, decoded characters that are controls, invalid, private-use or unassigned."""
    if _single_byte_text(encoding):
        controls = sum(head.count(bytes([c])) for c in range(32) if c not in (9, 10, 12, 13))
        size = len(head)
    else:
        text = head.decode(encoding, errors="replace")
        controls = sum(
            1
            for c in text
            if (c < " " and c not in "\t\n\r\f")
            or c == "\ufffd"
            or unicodedata.category(c) in ("Co", "Cn", "Cs")
        )
        size = len(text)
    if size and controls > max(8, size // 100):
        raise ImportFailure("binary data (control bytes): upload a CSV, JSON or NDJSON text file")


def _utf8_verdict(open_chunks: Opener) -> tuple[bool, int]:
    """(whether the file has valid multi-byte UTF-8 sequences, offset of the first byte
    that is not UTF-8)."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    multibyte, bad, offset = False, -1, 0
    for chunk in open_chunks():
        if not chunk.isascii():
            text = decoder.decode(chunk)
            if bad < 0:
                escaped = next((i for i, c in enumerate(text) if "\udc80" <= c <= "\udcff"), -1)
                if escaped >= 0:
                    bad = offset + len(text[:escaped].encode("utf-8", "surrogateescape"))
            multibyte = multibyte or any(
                ord(c) > 127 and not 0xDC80 <= ord(c) <= 0xDCFF for c in text
            )
        offset += len(chunk)
        if multibyte and bad >= 0:
            break
    return multibyte, bad


def open_text(open_chunks: Opener, encoding: str) -> io.TextIOWrapper:
    raw = ChunkReader(open_chunks())
    errors = _CP1252_ERRORS if encoding == FALLBACK_ENCODING else "strict"
    # newline=None: CRLF and CR end lines too; embedded ones in quoted fields become \n.
    return io.TextIOWrapper(
        io.BufferedReader(raw, 256 * 1024), encoding=encoding, errors=errors, newline=None
    )


def _lines(text: io.TextIOWrapper) -> Iterator[str]:
    """The text's lines, refusing one longer than MAX_LINE_CHARS (never held whole)."""
    lines = iter(partial(text.readline, MAX_LINE_CHARS), "")
    for number, line in enumerate(lines, start=1):
        if len(line) == MAX_LINE_CHARS and not line.endswith("\n"):
            raise ImportFailure(
                f"line {number} is longer than {MAX_LINE_CHARS} characters "
                "(binary data, or a quote that never closes?)"
            )
        yield line


def sniff_delimiter(sample: str) -> str:
    """The delimiter under which the first records agree best on a field count > 1."""
    lines = sample.splitlines(keepends=True)[:-1] or sample.splitlines(keepends=True)
    best, best_score = ",", (-1.0, 0)
    for delimiter in DELIMITERS:
        try:
            records = [r for r in csv.reader(lines[:200], delimiter=delimiter) if any(r)][:50]
        except csv.Error:
            continue
        if not records or len(records[0]) < 2:
            continue
        width = len(records[0])
        rest = records[1:] or records
        score = (sum(len(r) == width for r in rest) / len(rest), width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _csv_error(record: int, exc: csv.Error) -> ImportFailure:
    text = str(exc)
    if "field limit" in text:
        return ImportFailure(
            f"record {record}: a field is longer than {MAX_FIELD_CHARS} characters "
            "(a quote that never closes?)"
        )
    return ImportFailure(f"record {record}: {text}")


def csv_rows(text: io.TextIOWrapper, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(record number, fields) for every record that has a non-empty field."""
    reader = csv.reader(_lines(text), delimiter=delimiter)
    number = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _csv_error(number + 1, exc) from None
        number += 1
        if any(fields) and (len(fields) > 1 or fields[0].strip()):
            yield number, fields


def _header(rows: Iterator[tuple[int, list[str]]]) -> list[str]:
    first = next(rows, None)
    if first is None:
        raise ImportFailure("the file has no header row (it is empty or blank)")
    # A NUL in a header would follow the column name into messages and stored errors.
    columns = [c.strip().replace("\x00", "\ufffd") for c in first[1]]
    if len(columns) > MAX_COLUMNS:
        raise ImportFailure(f"the header has {len(columns)} columns; at most {MAX_COLUMNS}")
    return columns


def _decoding_failure(open_chunks: Opener, encoding: str, declared: str) -> str:
    """The encoding to retry with, or raises: a file that is not UTF-8 anywhere is read as
    Windows-1252; one with broken UTF-8 among good UTF-8 is refused."""
    if declared or encoding != "utf-8":
        raise ImportFailure(
            f"the file is not valid {declared or encoding}: declare its encoding"
        ) from None
    multibyte, bad = _utf8_verdict(open_chunks)
    if multibyte:
        raise ImportFailure(
            f"the file is not valid UTF-8 (byte offset {bad}) though it has UTF-8 text: "
            "fix it, or declare its encoding"
        )
    return FALLBACK_ENCODING


def survey(open_chunks: Opener, file_format: str, declared: str) -> Layout:
    """The first pass: the encoding, the delimiter and header (CSV) and the data row count,
    with every whole-file problem found before any row is written."""
    head = _head(open_chunks)
    if not head:
        raise ImportFailure("the file is empty")
    encoding = sniff_encoding(head, declared)
    _refuse_binary(head, encoding)
    while True:
        try:
            return _count(open_chunks, file_format, encoding, head)
        except UnicodeDecodeError:
            encoding = _decoding_failure(open_chunks, encoding, declared)


def _count(open_chunks: Opener, file_format: str, encoding: str, head: bytes) -> Layout:
    layout = Layout(encoding=encoding)
    with open_text(open_chunks, encoding) as text:
        if file_format == "CSV":
            sample = head.decode(encoding, errors="ignore")
            layout.delimiter = sniff_delimiter(sample.lstrip("\ufeff"))
            rows = csv_rows(text, layout.delimiter)
            layout.columns = _header(rows)
            layout.rows = sum(1 for _ in rows)
        elif file_format == "NDJSON":
            layout.rows = sum(1 for line in _lines(text) if line.strip())
        else:
            keys: dict[str, None] = {}
            for _, cells, _raw in json_rows(text):
                layout.rows += 1
                if isinstance(cells, dict) and len(keys) < MAX_COLUMNS:
                    keys.update(dict.fromkeys(cells))
            layout.columns = list(keys)
    if file_format == "CSV" and layout.rows == 0:
        raise ImportFailure("the file has a header row but no data rows")
    if layout.rows == 0:
        raise ImportFailure("the file has no records")
    return layout


def rows(open_chunks: Opener, file_format: str, layout: Layout) -> Iterator[Row]:
    """The second pass: every data record in order, as (number, cells, raw)."""
    with open_text(open_chunks, layout.encoding) as text:
        if file_format == "CSV":
            records = csv_rows(text, layout.delimiter)
            next(records, None)  # the header
            for number, fields in records:
                yield number, fields, fields
        elif file_format == "NDJSON":
            yield from ndjson_rows(text)
        else:
            yield from json_rows(text)


def ndjson_rows(text: io.TextIOWrapper) -> Iterator[Row]:
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(_escape_nul(line))
        except ValueError as exc:
            yield number, Unreadable(f"not valid JSON: {exc}"), line.rstrip("\n")
            continue
        yield number, value, value


def _escape_nul(text: str) -> str:
    """A literal NUL as the JSON escape: inside a string the record then parses and its NUL
    is refused like an escaped one; anywhere else it is still invalid JSON."""
    return text.replace("\x00", "\\u0000") if "\x00" in text else text


class _Utf8Reader(io.RawIOBase):
    """Decoded text as UTF-8 bytes again, for the JSON parser."""

    def __init__(self, text: io.TextIOWrapper) -> None:
        self._text = text
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            piece = self._text.read(64 * 1024)
            if not piece:
                return 0
            self._pending = _escape_nul(piece.lstrip("\ufeff")).encode("utf-8")
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def json_rows(text: io.TextIOWrapper) -> Iterator[Row]:
    """The elements of one top-level JSON array, streamed."""
    source = io.BufferedReader(_Utf8Reader(text))
    first = source.peek(1)[:1]
    while first and first in b" \t\r\n":
        source.read(1)
        first = source.peek(1)[:1]
    if first != b"[":
        raise ImportFailure("a JSON import is one array of objects: [{...}, {...}]")
    number = 0
    try:
        for value in ijson.items(source, "item", use_float=True):
            number += 1
            yield number, value, value
    except ijson.JSONError as exc:
        raise ImportFailure(f"invalid JSON after element {number}: {exc}") from None
