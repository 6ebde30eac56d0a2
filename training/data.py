"""Streaming dataset readers: rows come out one at a time, so memory stays flat as files grow."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SUPPORTED_SUFFIXES = (".csv", ".jsonl")


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled text; `line` is where it came from, for error messages."""

    text: str
    label: str
    line: int


class DatasetFormatError(ValueError):
    """A dataset file cannot be read as the configured format or columns."""


def iter_examples(path: Path | str, text_column: str, label_column: str) -> Iterator[Example]:
    """Yield examples from a CSV (with header) or JSONL file, one row at a time."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from _iter_csv(path, text_column, label_column)
    elif suffix == ".jsonl":
        yield from _iter_jsonl(path, text_column, label_column)
    else:
        raise DatasetFormatError(
            f"{path}: unsupported format {suffix!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )


def _iter_csv(path: Path, text_column: str, label_column: str) -> Iterator[Example]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in (text_column, label_column) if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetFormatError(f"{path}: missing column(s) {missing}; found {reader.fieldnames or []}")
        for row in reader:
            yield Example(
                text=row[text_column] or "",
                label=row[label_column] or "",
                line=reader.line_num,
            )


def _iter_jsonl(path: Path, text_column: str, label_column: str) -> Iterator[Example]:
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(f"{path}:{number}: invalid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise DatasetFormatError(f"{path}:{number}: expected a JSON object per line")
            missing = [c for c in (text_column, label_column) if c not in row]
            if missing:
                raise DatasetFormatError(f"{path}:{number}: missing column(s) {missing}")
            text, label = row[text_column], row[label_column]
            yield Example(
                text="" if text is None else str(text),
                label="" if label is None else str(label),
                line=number,
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
