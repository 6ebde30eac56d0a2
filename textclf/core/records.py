"""Streaming CSV and JSONL readers, shared by training and the batch client.

One reader means one set of rules: a file that `textclf validate` accepts is read the same way by
`textclf predict-batch`, byte-order mark, blank lines and all. Records come out one at a time with
the line they start on, so memory stays flat and every error can point at the input. Stdlib only.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
# utf-8-sig: spreadsheets often prefix CSV exports with a BOM, which would corrupt the first column name.
ENCODING = "utf-8-sig"

Format = Literal["csv", "jsonl"]

_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


class RecordFormatError(ValueError):
    """A record file that cannot be read as its format; the message names the file and the line."""

    def __init__(self, path: Path | str, reason: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.reason = reason
        self.line = line
        super().__init__(f"{path}: {reason}" if line is None else f"{path}:{line}: {reason}")

    def __reduce__(self) -> tuple[type[RecordFormatError], tuple[Path, str, int | None]]:
        return type(self), (self.path, self.reason, self.line)


@dataclass(frozen=True, slots=True)
class Record:
    """One record: the line it starts on, and its values by column (CSV) or key (JSONL)."""

    line: int
    values: dict[str, Any]


def record_format(path: Path | str) -> Format:
    """The format a file's suffix names (case-insensitive)."""
    suffix = Path(path).suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    known = ", ".join(CSV_SUFFIXES + JSONL_SUFFIXES)
    raise RecordFormatError(path, f"unsupported format {suffix or '(no suffix)'!r}; use one of {known}")


def iter_records(path: Path | str) -> Iterator[Record]:
    """Records of a CSV or JSONL file, by its suffix; the file is opened on the first `next()`."""
    path = Path(path)
    if record_format(path) == "csv":
        return iter_csv(path)
    return iter_jsonl(path)


def csv_columns(path: Path | str) -> list[str]:
    """The header row of a CSV file: its column names, in order (reads nothing past the header)."""
    path = Path(path)
    with _decoding(path), path.open(encoding=ENCODING, newline="") as handle:
        reader = csv.reader(handle)
        return _header(reader, path)


def iter_csv(path: Path | str) -> Iterator[Record]:
    """Records of a CSV file with a header row; short rows are padded with "", long rows refused."""
    path = Path(path)
    with _decoding(path), path.open(encoding=ENCODING, newline="") as handle:
        reader = csv.reader(handle)
        header = _header(reader, path)
        previous = reader.line_num
        for row in _rows(reader, path):
            start, previous = previous + 1, reader.line_num
            if not row:  # a blank line is not a record
                continue
            if len(row) > len(header):
                raise RecordFormatError(path, f"{len(row)} fields but the header has {len(header)}", start)
            yield Record(start, dict(zip(header, row + [""] * (len(header) - len(row)), strict=True)))


def iter_jsonl(path: Path | str) -> Iterator[Record]:
    """Records of a JSONL/NDJSON file: one JSON object per line; blank lines are skipped."""
    path = Path(path)
    with _decoding(path), path.open(encoding=ENCODING) as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield Record(number, _json_object(path, line, number))


def _header(reader: Any, path: Path) -> list[str]:
    for row in _rows(reader, path):
        if not row:  # blank lines before the header
            continue
        duplicates = sorted({name for name in row if row.count(name) > 1})
        if duplicates:
            raise RecordFormatError(
                path, f"duplicate column name(s) {duplicates} in the header", reader.line_num
            )
        return row
    raise RecordFormatError(path, "empty file: a CSV input needs a header row")


def _rows(reader: Any, path: Path, lines_before: int = 0) -> Iterator[list[str]]:
    """The reader's rows, with the csv module's errors turned into ours (with the line)."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise RecordFormatError(path, f"invalid CSV ({exc})", lines_before + reader.line_num) from None
        yield row


@contextlib.contextmanager
def _decoding(path: Path) -> Iterator[None]:
    """Turn a UnicodeDecodeError met while streaming into a RecordFormatError with its line.

    Text is decoded in blocks, so the line is found by a second pass over the raw bytes, on the
    error path only (decoding line by line is exact: no UTF-8 sequence contains a newline byte).
    """
    try:
        yield
    except UnicodeDecodeError as exc:
        raise RecordFormatError(path, f"not UTF-8 text ({exc.reason})", _undecodable_line(path)) from None


def _undecodable_line(path: Path) -> int | None:
    with path.open("rb") as handle:
        return next((n for n, raw in enumerate(handle, start=1) if not _is_utf8(raw)), None)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# ------------------------------------------------------------------ resumable reading, by byte offset


@dataclass(frozen=True, slots=True)
class Position:
    """Where the next record starts: its byte offset, and how many physical lines lie before it.

    Taken only at record boundaries (never inside a quoted multi-line CSV field), so reading can
    resume there with a seek instead of re-parsing every record before it."""

    offset: int = 0
    lines: int = 0


def iter_records_at(path: Path | str, start: Position | None = None) -> Iterator[tuple[Record, Position]]:
    """Records of a CSV or JSONL file, each with the Position just after it, from `start` on.

    Reads the same files as `iter_records`, record for record and line for line (BOM, blank lines,
    CRLF, bare CR), but from the raw bytes, so positions are exact byte offsets. A CSV's header is
    always read from the top, then reading seeks to `start`."""
    path = Path(path)
    if record_format(path) == "csv":
        return _csv_at(path, start)
    return _jsonl_at(path, start)


class _Lines:
    """Physical lines of a binary file from `start`, decoded, counting the bytes and lines handed out.

    Lines end at LF, CRLF or a bare CR, as text mode would split them; a BOM is dropped at byte 0."""

    def __init__(self, handle: IO[bytes], path: Path, start: Position) -> None:
        self.handle, self.path = handle, path
        self.offset, self.lines = start.offset, start.lines
        self._pending: list[bytes] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self._pending:
            raw = self._pending.pop()
        else:
            raw = self.handle.readline()
            if not raw:
                raise StopIteration
            if b"\r" in raw[:-2]:  # a bare CR ends a line too: split, keep the pieces for later calls
                pieces = [p for p in _BARE_CR.split(raw) if p]
                raw, self._pending = pieces[0], pieces[:0:-1]
        if self.offset == 0 and raw.startswith(_BOM):
            self.offset, raw = len(_BOM), raw[len(_BOM) :]
        self.offset += len(raw)
        self.lines += 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordFormatError(self.path, f"not UTF-8 text ({exc.reason})", self.lines) from None


_BOM = b"\xef\xbb\xbf"
_BARE_CR = re.compile(rb"(?<=\r)(?!\n)")


def _open_at(path: Path, start: Position) -> tuple[IO[bytes], _Lines]:
    handle = path.open("rb")
    handle.seek(start.offset)
    return handle, _Lines(handle, path, start)


def _csv_at(path: Path, start: Position | None) -> Iterator[tuple[Record, Position]]:
    with path.open("rb") as top:
        lines = _Lines(top, path, Position())
        reader = csv.reader(lines)
        header = _header(reader, path)
        after_header = Position(lines.offset, lines.lines)
    start = after_header if start is None or start.offset < after_header.offset else start
    handle, lines = _open_at(path, start)
    with handle:
        reader = csv.reader(lines)
        previous = lines.lines
        for row in _rows(reader, path, start.lines):
            first, previous = previous + 1, lines.lines
            if not row:  # a blank line is not a record
                continue
            if len(row) > len(header):
                raise RecordFormatError(path, f"{len(row)} fields but the header has {len(header)}", first)
            values = dict(zip(header, row + [""] * (len(header) - len(row)), strict=True))
            yield Record(first, values), Position(lines.offset, lines.lines)


def _jsonl_at(path: Path, start: Position | None) -> Iterator[tuple[Record, Position]]:
    handle, lines = _open_at(path, start or Position())
    with handle:
        for line in lines:
            if not line.strip():
                continue
            value = _json_object(path, line, lines.lines)
            yield Record(lines.lines, value), Position(lines.offset, lines.lines)


def _json_object(path: Path, line: str, number: int) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RecordFormatError(path, f"invalid JSON ({exc.msg})", number) from None
    if not isinstance(value, dict):
        kind = "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)
        raise RecordFormatError(path, f"expected a JSON object per line, got {kind}", number)
    return value
