"""Streaming dataset readers: rows come out one at a time, so memory stays flat as files grow."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from textclf.core.records import (
    CSV_SUFFIXES,
    JSONL_SUFFIXES,
    RecordFormatError,
    csv_columns,
    iter_csv,
    iter_jsonl,
    record_format,
)

SUPPORTED_SUFFIXES = CSV_SUFFIXES + JSONL_SUFFIXES


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled text; `line` is where it starts in its file, for error messages."""

    text: str
    label: str
    line: int


class DatasetFormatError(ValueError):
    """A dataset file cannot be read as the configured format or columns."""


def iter_examples(path: Path | str, text_column: str, label_column: str) -> Iterator[Example]:
    """Yield examples from a CSV (with header) or JSONL file, one row at a time.

    Reading goes through `textclf.core.records`, the reader the batch client uses too, so a file
    validates here exactly when it can be batch-predicted (BOM, blank lines, ragged rows alike).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: file not found")
    try:
        if record_format(path) == "csv":
            yield from _iter_csv(path, text_column, label_column)
        else:
            yield from _iter_jsonl(path, text_column, label_column)
    except RecordFormatError as exc:
        raise DatasetFormatError(str(exc)) from exc


def _iter_csv(path: Path, text_column: str, label_column: str) -> Iterator[Example]:
    columns = csv_columns(path)
    missing = [c for c in (text_column, label_column) if c not in columns]
    if missing:
        raise DatasetFormatError(f"{path}: missing column(s) {missing}; found {columns}")
    for record in iter_csv(path):
        yield Example(text=record.values[text_column], label=record.values[label_column], line=record.line)


def _iter_jsonl(path: Path, text_column: str, label_column: str) -> Iterator[Example]:
    for record in iter_jsonl(path):
        missing = [c for c in (text_column, label_column) if c not in record.values]
        if missing:
            raise DatasetFormatError(f"{path}:{record.line}: missing column(s) {missing}")
        text, label = record.values[text_column], record.values[label_column]
        yield Example(
            text="" if text is None else str(text),
            label="" if label is None else str(label),
            line=record.line,
        )


def batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    """Group an iterable into lists of at most `size` items, without reading ahead further."""
    if size < 1:
        raise ValueError("batch size must be at least 1")
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def load_texts_labels(path: Path | str, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    """Materialise a split for estimators that need it in memory (sklearn's fit)."""
    texts: list[str] = []
    labels: list[str] = []
    for example in iter_examples(path, text_column, label_column):
        texts.append(example.text)
        labels.append(example.label)
    return texts, labels


def read_label_list(path: Path | str) -> list[str]:
    """Read the closed list of labels (a JSON array of strings)."""
    labels = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
        raise DatasetFormatError(f"{path}: expected a JSON array of non-empty strings")
    return labels


def files_sha256(paths: Iterable[Path | str]) -> str:
    """A content hash of the given files (streamed), recorded with every model it trains."""
    digest = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
