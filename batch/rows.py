"""The input side of a batch run: check the file once, then read it lazily as chunks of rows.

Reading goes through the reader training uses too (`textclf.core.records`); this module only
turns its errors into BatchErrors and decides which rows of a chunk can be sent at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch.outcome import BatchError
from batch.output import OUTPUT_FIELDS
from textclf.core.records import (
    CSV_SUFFIXES,
    JSONL_SUFFIXES,
    Format,
    Position,
    Record,
    RecordFormatError,
    csv_columns,
    iter_records_at,
    record_format,
)

FORMAT_NAMES = {"csv": "CSV", "jsonl": "JSON Lines"}


@dataclass
class Chunk:
    """Consecutive rows sent as one request; `results` gets one (prediction, error) per row."""

    rows: list[Record]
    texts: list[str] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)  # index in `rows` of each text in `texts`
    results: list[tuple[dict[str, Any] | None, str | None]] = field(default_factory=list)
    end: Position = field(default_factory=Position)  # where the input's next record starts

    @property
    def lines(self) -> str:
        return f"{self.rows[0].line}-{self.rows[-1].line}"


def file_kind(path: Path, role: str) -> Format:
    """The format of an input or output file from its suffix; an unknown one is a BatchError."""
    try:
        return record_format(path)
    except RecordFormatError:
        suffix = path.suffix.lower()
        known = ", ".join(sorted(CSV_SUFFIXES + JSONL_SUFFIXES))
        raise BatchError(
            f"{role} {path} has an unknown format {suffix or '(no suffix)'!r}; use one of {known}"
        ) from None


@dataclass(frozen=True)
class InputSpec:
    """What the first, cheap pass learned: columns (in first-seen order) and the row count."""

    path: Path
    kind: Format
    columns: list[str]
    rows: int


@contextlib.contextmanager
def _input_errors(path: Path, kind: Format) -> Iterator[None]:
    """Reading errors (not the caller's) become a BatchError naming the file and the line."""
    try:
        yield
    except RecordFormatError as exc:
        where = f"{path} line {exc.line}" if exc.line is not None else str(path)
        raise BatchError(f"{where} is not valid {FORMAT_NAMES[kind]}: {exc.reason}") from None
    except OSError as exc:
        raise BatchError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_rows(spec: InputSpec, start: Position | None = None) -> Iterator[tuple[Record, Position]]:
    """The input's records from `start` on, each with the position after it, read by the reader
    training uses too (`textclf.core.records`)."""
    with _input_errors(spec.path, spec.kind):
        yield from iter_records_at(spec.path, start)


def probe_chunk(spec: InputSpec, text_column: str, size: int) -> Chunk | None:
    """The input's first chunk of `size` rows with a text the server would take: the same in every
    run of this file (None when no row has one)."""
    with contextlib.closing(read_rows(spec)) as rows:
        return next((chunk for chunk in chunks(rows, text_column, size) if chunk.texts), None)


def scan_input(path: Path, text_column: str) -> InputSpec:
    """First pass, O(columns) memory: count rows, collect columns, check the text column exists.

    Reading the whole file once before sending anything means a malformed line fails the run in
    seconds instead of after half the file went through the server, and gives the progress total.
    It reads with the same reader as the run itself, and holds no row after counting it.
    """
    path = Path(path)
    kind = file_kind(path, "input")
    if not path.is_file():
        raise BatchError(f"input file {path} does not exist")
    count = 0
    with _input_errors(path, kind):
        seen: dict[str, None] = dict.fromkeys(csv_columns(path) if kind == "csv" else [])
        for record, _ in iter_records_at(path):
            count += 1
            if kind == "jsonl":
                seen.update(dict.fromkeys(record.values))
    columns = list(seen)
    if text_column not in seen and (kind == "csv" or count):
        found = ", ".join(repr(c) for c in columns) or "none"
        what = "column" if kind == "csv" else "key"
        raise BatchError(f"{path} has no text {what} {text_column!r}; {what}s found: {found}")
    clashes = [c for c in OUTPUT_FIELDS if c in seen]
    if clashes:
        raise BatchError(
            f"{path} already has column(s) {', '.join(map(repr, clashes))}, which the output adds; "
            "rename them in the input first"
        )
    return InputSpec(path=path, kind=kind, columns=columns, rows=count)


def chunks(
    rows: Iterator[tuple[Record, Position]], text_column: str, size: int | Callable[[int, int], int]
) -> Iterator[Chunk]:
    """Group rows into chunks of `size` rows, or of `size(rows read, chunks made)` rows each when it is
    a function (batch.pacing); rows the server would refuse are kept but not sent."""
    next_size = (lambda _read, _made: size) if isinstance(size, int) else size
    batch: list[Record] = []
    end = Position()
    read = made = 0
    want = next_size(read, made)
    for row, end in rows:
        batch.append(row)
        read += 1
        if len(batch) >= want:
            yield _prepare(batch, text_column, end)
            batch = []
            made += 1
            want = next_size(read, made)
    if batch:
        yield _prepare(batch, text_column, end)


def _prepare(rows: list[Record], text_column: str, end: Position) -> Chunk:
    chunk = Chunk(rows=rows, results=[(None, None)] * len(rows), end=end)
    for i, row in enumerate(rows):
        if text_column not in row.values:  # only JSONL: a CSV record has every column
            chunk.results[i] = (None, f"no {text_column!r} key in this record")
            continue
        text = row.values[text_column]
        if not isinstance(text, str):
            chunk.results[i] = (None, f"text is a JSON {type(text).__name__}, not a string")
        elif not text.strip():
            chunk.results[i] = (None, "text is empty or only whitespace")
        else:
            chunk.sent.append(i)
            chunk.texts.append(text)
    return chunk
