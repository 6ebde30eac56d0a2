"""Data validation: refuse data that would train or evaluate a model wrongly, and say exactly why.

The splits are streamed: the test split is read once to learn its texts (kept as 8-byte digests),
then the train split flows row by row into the prepared file. Memory grows with the number of
distinct texts' digests, never with the text itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from training.data import DatasetFormatError, Example, files_sha256, iter_examples, read_label_list
from training.params import DataParams

PREPARED_TEXT, PREPARED_LABEL = "text", "label"
_SPACES = re.compile(r"\s+")
_SHOW = 5  # how many offending rows an error message quotes


class DataValidationError(ValueError):
    """The dataset failed one or more checks; the message lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("data validation failed:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass
class DataReport:
    """What validation saw; written to reports/data.json and tracked by DVC."""

    train_rows: int = 0
    test_rows: int = 0
    labels: int = 0
    leaked_texts: int = 0
    dropped_from_train: int = 0
    duplicate_train_texts: int = 0
    conflicting_train_texts: int = 0
    data_sha256: str = ""
    warnings: list[str] = field(default_factory=list)


def normalize(text: str) -> str:
    """The form used to compare texts: what a model sees once whitespace is tokenised away."""
    return _SPACES.sub(" ", text).strip()


def _digest(text: str) -> bytes:
    return hashlib.blake2b(normalize(text).encode("utf-8"), digest_size=8).digest()


@dataclass
class _Offenders:
    """Counts rows that break one rule and remembers the first few line numbers."""

    what: str
    path: Path
    count: int = 0
    lines: list[int] = field(default_factory=list)

    def add(self, example: Example) -> None:
        self.count += 1
        if len(self.lines) < _SHOW:
            self.lines.append(example.line)

    def message(self) -> str:
        shown = ", ".join(f"line {n}" for n in self.lines)
        more = f" and {self.count - len(self.lines)} more" if self.count > len(self.lines) else ""
        return f"{self.count} {self.what} in {self.path} ({shown}{more})"


@dataclass
class _SplitStats:
    rows: int = 0
    labels: set[str] = field(default_factory=set)


def _stream_split(path: Path, params: DataParams, problems: list[str]) -> Iterator[Example]:
    """Yield the rows of a split, recording blank texts or labels as problems."""
    blank_text = _Offenders("empty or blank text(s)", path)
    blank_label = _Offenders("empty label(s)", path)
    rows = 0
    try:
        for example in iter_examples(path, params.text_column, params.label_column):
            rows += 1
            if not example.text.strip():
                blank_text.add(example)
            elif not example.label.strip():
                blank_label.add(example)
            else:
                yield example
    except (DatasetFormatError, UnicodeDecodeError) as exc:
        problems.append(str(exc))
        return
    if rows == 0:
        problems.append(f"{path}: no rows")
    problems.extend(o.message() for o in (blank_text, blank_label) if o.count)


def _write_row(handle: IO[str], example: Example) -> None:
    handle.write(json.dumps({PREPARED_TEXT: example.text, PREPARED_LABEL: example.label}) + "\n")


def _closed_labels(params: DataParams, problems: list[str]) -> list[str] | None:
    if params.labels_path is None:
        return None
    try:
        return read_label_list(params.labels_path)
    except (OSError, ValueError) as exc:
        problems.append(f"cannot read labels file: {exc}")
        return None


def prepare(params: DataParams, report_path: Path) -> DataReport:
    """Validate the raw splits while streaming them into the clean files the pipeline reads.

    Raises DataValidationError listing every problem; nothing is written to the prepared folder
    unless all checks pass.
    """
    problems: list[str] = []
    closed = _closed_labels(params, problems)
    out_dir = params.prepared_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_test, tmp_train = out_dir / ".test.jsonl.tmp", out_dir / ".train.jsonl.tmp"

    test, train = _SplitStats(), _SplitStats()
    test_digests: set[bytes] = set()
    with tmp_test.open("w", encoding="utf-8") as handle:
        for example in _stream_split(params.test_path, params, problems):
            test.rows += 1
            test.labels.add(example.label)
            test_digests.add(_digest(example.text))
            _write_row(handle, example)

    leaked = _Offenders("train text(s) also in the test set (leakage)", params.train_path)
    seen: dict[bytes, str | None] = {}  # digest → its label, or None once labels conflict
    duplicates = 0
    with tmp_train.open("w", encoding="utf-8") as handle:
        for example in _stream_split(params.train_path, params, problems):
            key = _digest(example.text)
            if key in test_digests:
                leaked.add(example)
                continue
            train.rows += 1
            train.labels.add(example.label)
            if key in seen:
                duplicates += 1
                if seen[key] != example.label:
                    seen[key] = None
            else:
                seen[key] = example.label
            _write_row(handle, example)
    conflicts = sum(1 for label in seen.values() if label is None)
    del seen

    labels = _check_labels(train, test, closed, params, problems)
    warnings: list[str] = []
    if untested := sorted(train.labels - test.labels):
        warnings.append(f"{len(untested)} train label(s) absent from test: {untested[:_SHOW]}")
    if leaked.count and params.on_leakage == "fail":
        problems.append(f"{leaked.message()}; set data.on_leakage: drop_from_train to drop them")
    if problems:
        tmp_test.unlink(missing_ok=True)
        tmp_train.unlink(missing_ok=True)
        raise DataValidationError(problems)
    if leaked.count:
        warnings.append(f"dropped {leaked.count} train text(s) that also appear in test")
    if conflicts:
        warnings.append(f"{conflicts} train text(s) appear with more than one label")

    os.replace(tmp_test, params.prepared_test)
    os.replace(tmp_train, params.prepared_train)
    (out_dir / "labels.json").write_text(json.dumps(labels, indent=1), encoding="utf-8")
    hashed = [params.train_path, params.test_path]
    if params.labels_path is not None:
        hashed.append(params.labels_path)
    report = DataReport(
        train_rows=train.rows,
        test_rows=test.rows,
        labels=len(labels),
        leaked_texts=leaked.count,
        dropped_from_train=leaked.count,
        duplicate_train_texts=duplicates,
        conflicting_train_texts=conflicts,
        data_sha256=files_sha256(hashed),
        warnings=warnings,
    )
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    return report


def _check_labels(
    train: _SplitStats,
    test: _SplitStats,
    closed: list[str] | None,
    params: DataParams,
    problems: list[str],
) -> list[str]:
    """The label list (closed list order, else sorted); unknown or unseen labels are problems."""
    if closed is not None:
        known = set(closed)
        for split, stats in (("train", train), ("test", test)):
            unknown = sorted(stats.labels - known)
            if unknown:
                problems.append(
                    f"{split}: {len(unknown)} label(s) not in {params.labels_path}: {unknown[:_SHOW]}"
                )
        untrained = [x for x in closed if x not in train.labels]
        if untrained and train.rows:
            problems.append(f"label(s) with no training example: {untrained[:_SHOW]}")
    unseen = sorted(test.labels - train.labels)
    if unseen and train.rows:
        problems.append(f"test label(s) never seen in train: {unseen[:_SHOW]}")
    return closed if closed is not None else sorted(train.labels)
