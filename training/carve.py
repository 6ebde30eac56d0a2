"""A test split carved from one labelled file: stratified by label, seeded, streamed, without leakage.

Two passes over the file, never holding its rows: the first learns each label's distinct texts (as 8-byte
digests), the second writes every row to the train or the test file in the source's own format (CSV with
its header and every column, or JSONL). Rows are assigned by text, so a text written twice lands on one
side only: a carved test split never leaks into train. scikit-learn's stratified split would refuse the
labels with a single example, which validation must report instead (with their line and the CSV hint).
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from textclf.core.records import csv_columns, iter_records, record_format
from training.validate import text_key


@dataclass(frozen=True)
class CarveResult:
    train_rows: int
    test_rows: int


def held_out(distinct: int, fraction: float, min_train: int) -> int:
    """How many of a label's distinct texts go to test: its share of them, at least one when the label
    can spare it, never so many that fewer than `min_train` stay to train on."""
    share = round(distinct * fraction)
    if share == 0 and distinct > min_train:
        share = 1
    return max(0, min(share, distinct - min_train))


def _field(values: dict[str, Any], column: str) -> str:
    """A column's value as validation reads it (training.data.iter_examples): None is empty."""
    value = values.get(column)
    return "" if value is None else str(value)


def choose_test_texts(
    source: Path, text_column: str, label_column: str, fraction: float, seed: int, min_train: int
) -> set[bytes]:
    """The digests of the texts the test split gets (first pass). A text's label is the one it first
    appears with; labels are visited in sorted order so the choice does not depend on dict order."""
    by_label: dict[str, dict[bytes, None]] = {}  # insertion-ordered sets: file order, deterministic
    seen: set[bytes] = set()
    for record in iter_records(source):
        key = text_key(_field(record.values, text_column))
        if key not in seen:
            seen.add(key)
            by_label.setdefault(_field(record.values, label_column), {})[key] = None
    del seen
    rng = random.Random(seed)
    chosen: set[bytes] = set()
    for label in sorted(by_label):
        keys = list(by_label[label])
        chosen.update(rng.sample(keys, held_out(len(keys), fraction, min_train)))
    return chosen


class _Writer:
    """Rows out in the source's format: CSV with the source's header, or one JSON object per line."""

    def __init__(self, handle: IO[str], header: list[str] | None) -> None:
        self._header = header
        self._csv = csv.writer(handle, lineterminator="\n") if header is not None else None
        self._handle = handle
        if self._csv is not None:
            self._csv.writerow(header)

    def write(self, values: dict[str, Any]) -> None:
        if self._csv is not None and self._header is not None:
            self._csv.writerow([values[name] for name in self._header])
        else:
            self._handle.write(json.dumps(values, ensure_ascii=False) + "\n")


def carve_test(
    source: Path,
    train_out: Path,
    test_out: Path,
    text_column: str,
    label_column: str,
    fraction: float,
    seed: int,
    min_train: int = 1,
) -> CarveResult:
    """Split `source` into `train_out` and `test_out` (same format), `fraction` of each label's texts to
    test. Raises textclf.core.records.RecordFormatError for a file that cannot be read."""
    test_keys = choose_test_texts(source, text_column, label_column, fraction, seed, min_train)
    header = csv_columns(source) if record_format(source) == "csv" else None
    train_rows = test_rows = 0
    newline = "" if header is not None else None
    with (
        train_out.open("w", encoding="utf-8", newline=newline) as train_handle,
        test_out.open("w", encoding="utf-8", newline=newline) as test_handle,
    ):
        train, test = _Writer(train_handle, header), _Writer(test_handle, header)
        for record in iter_records(source):
            if text_key(_field(record.values, text_column)) in test_keys:
                test.write(record.values)
                test_rows += 1
            else:
                train.write(record.values)
                train_rows += 1
    return CarveResult(train_rows, test_rows)
