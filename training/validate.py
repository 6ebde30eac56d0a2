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
import shutil
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
    feedback_rows: int = 0  # labelled feedback trained on beside the train split (data.feedback_dir)
    feedback_dropped: int = 0
    validation_rows: int = 0  # the dataset's own validation split (data.validation_file), when it has one
    data_sha256: str = ""
    warnings: list[str] = field(default_factory=list)


def normalize(text: str) -> str:
    """The form used to compare texts: what a model sees once whitespace is tokenised away."""
    return _SPACES.sub(" ", text).strip()


def text_key(text: str) -> bytes:
    """A text's identity for leakage and duplicates: 8 bytes of a hash of its normal form."""
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
    counts: dict[str, int] = field(default_factory=dict)  # train: examples per label
    first_line: dict[str, int] = field(default_factory=dict)  # train: where each label first appears


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
            test_digests.add(text_key(example.text))
            _write_row(handle, example)

    leaked = _Offenders("train text(s) also in the test set (leakage)", params.train_path)
    seen: dict[bytes, str | None] = {}  # digest → its label, or None once labels conflict
    duplicates = 0
    with tmp_train.open("w", encoding="utf-8") as handle:
        for example in _stream_split(params.train_path, params, problems):
            key = text_key(example.text)
            if key in test_digests:
                leaked.add(example)
                continue
            train.rows += 1
            train.labels.add(example.label)
            train.counts[example.label] = train.counts.get(example.label, 0) + 1
            train.first_line.setdefault(example.label, example.line)
            if key in seen:
                duplicates += 1
                if seen[key] != example.label:
                    seen[key] = None
            else:
                seen[key] = example.label
            _write_row(handle, example)
    conflicts = sum(1 for label in seen.values() if label is None)

    labels = _check_labels(train, test, closed, params, problems)
    _check_rare_labels(train, params, problems)
    warnings: list[str] = []
    feedback = _prepare_feedback(params, labels, test_digests, seen, problems, warnings)
    validation_rows = _prepare_validation(params, labels, test_digests, problems, warnings)
    del seen
    if untested := sorted(train.labels - test.labels):
        warnings.append(f"{len(untested)} train label(s) absent from test: {untested[:_SHOW]}")
    _leakage(leaked, "train", params, problems, warnings)
    if problems:
        tmp_test.unlink(missing_ok=True)
        tmp_train.unlink(missing_ok=True)
        _validation_tmp(params).unlink(missing_ok=True)
        shutil.rmtree(_feedback_tmp(params), ignore_errors=True)
        raise DataValidationError(problems)
    if conflicts:
        warnings.append(f"{conflicts} train text(s) appear with more than one label")

    os.replace(tmp_test, params.prepared_test)
    os.replace(tmp_train, params.prepared_train)
    shutil.rmtree(params.prepared_feedback_dir, ignore_errors=True)
    if params.validation_path is not None:
        os.replace(_validation_tmp(params), params.prepared_validation)
    else:
        params.prepared_validation.unlink(missing_ok=True)
    if feedback.source is not None:
        os.replace(_feedback_tmp(params), params.prepared_feedback_dir)
    (out_dir / "labels.json").write_text(json.dumps(labels, indent=1), encoding="utf-8")
    hashed = [params.train_path, params.test_path]
    if params.labels_path is not None:
        hashed.append(params.labels_path)
    if feedback.source is not None:  # a new feedback version is new training data
        hashed.append(feedback.source)
    if params.validation_path is not None:
        hashed.append(params.validation_path)
    report = DataReport(
        train_rows=train.rows,
        test_rows=test.rows,
        labels=len(labels),
        leaked_texts=leaked.count,
        dropped_from_train=leaked.count,
        duplicate_train_texts=duplicates,
        conflicting_train_texts=conflicts,
        feedback_rows=feedback.rows,
        validation_rows=validation_rows,
        feedback_dropped=feedback.dropped,
        data_sha256=files_sha256(hashed),
        warnings=warnings,
    )
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    return report


def _leakage(
    leaked: _Offenders, what: str, params: DataParams, problems: list[str], warnings: list[str]
) -> None:
    """Texts of the test split found in another split: a problem (on_leakage: fail), or dropped and said."""
    if not leaked.count:
        return
    if params.on_leakage == "fail":
        problems.append(f"{leaked.message()}; set data.on_leakage: drop_from_train to drop them")
    else:
        warnings.append(f"dropped {leaked.count} {what} text(s) that also appear in test")


def _validation_tmp(params: DataParams) -> Path:
    return params.prepared_dir / ".validation.jsonl.tmp"


def _prepare_validation(
    params: DataParams, labels: list[str], test_keys: set[bytes], problems: list[str], warnings: list[str]
) -> int:
    """The dataset's own validation split, checked like train (blank rows, labels the train split does
    not have, texts of the test split) and written beside the other prepared splits; its row count."""
    path = params.validation_path
    if path is None:
        return 0
    known = set(labels)
    unknown = _Offenders("validation label(s) not in the train split", path)
    leaked = _Offenders("validation text(s) also in the test set (leakage)", path)
    rows = 0
    with _validation_tmp(params).open("w", encoding="utf-8") as handle:
        for example in _stream_split(path, params, problems):
            if example.label not in known:
                unknown.add(example)
            elif text_key(example.text) in test_keys:
                leaked.add(example)
            else:
                rows += 1
                _write_row(handle, example)
    if unknown.count:
        problems.append(unknown.message())
    _leakage(leaked, "validation", params, problems, warnings)
    return rows


@dataclass
class _FeedbackStats:
    source: Path | None = None
    rows: int = 0
    dropped: int = 0


def _feedback_tmp(params: DataParams) -> Path:
    return params.prepared_dir / ".feedback.tmp"


def _prepare_feedback(
    params: DataParams,
    labels: list[str],
    test_keys: set[bytes],
    train_keys: dict[bytes, str | None],
    problems: list[str],
    warnings: list[str],
) -> _FeedbackStats:
    """The feedback data set (training.feedback) checked like the train split and copied, sealed as it
    came, into the prepared folder; test texts are leakage, texts the train split has are dropped."""
    from training import feedback as fb  # it builds on this module

    stats = _FeedbackStats()
    try:
        stats.source = fb.data_file(params.feedback_dir)
    except ValueError as exc:
        problems.append(str(exc))
        return stats
    if stats.source is None:
        return stats
    blank_text = _Offenders("empty or blank feedback text(s)", stats.source)
    unknown = _Offenders("feedback label(s) the model does not have", stats.source)
    leaked = _Offenders("feedback text(s) also in the test set (leakage)", stats.source)
    known, kept, seen, duplicates = set(labels), [], set(train_keys), 0
    try:
        for line, row in enumerate(fb.read_rows(params.feedback_dir), 1):
            example = Example(row.text, row.label, line)
            key = text_key(row.text)
            if not row.text.strip():
                blank_text.add(example)
            elif row.label not in known:
                unknown.add(example)
            elif key in test_keys:
                leaked.add(example)
            elif key in seen:  # in the train split, or earlier in the feedback
                duplicates += 1
            else:
                seen.add(key)
                kept.append(row)
    except (OSError, ValueError) as exc:  # a missing data key, a tampered or unreadable file
        problems.append(f"cannot read the feedback data {stats.source}: {exc}")
        return stats
    problems.extend(o.message() for o in (blank_text, unknown) if o.count)
    _leakage(leaked, "feedback", params, problems, warnings)
    if duplicates:
        warnings.append(f"dropped {duplicates} feedback text(s) already in train or repeated")
    stats.dropped = leaked.count + duplicates
    if problems:
        return stats
    tmp = _feedback_tmp(params)
    shutil.rmtree(tmp, ignore_errors=True)
    fb.write_rows(tmp, kept, plaintext=stats.source.name == fb.PLAIN_NAME)
    stats.rows = len(kept)
    return stats


def check_file(path: Path, params: DataParams) -> None:
    """Check one labelled file on its own, before it is split (`textclf data add`): readable, the
    columns there, no blank text or label, no label rarer than `min_examples_per_label`; every problem
    names the file's own lines. Raises DataValidationError."""
    problems: list[str] = []
    stats = _SplitStats()
    for example in _stream_split(path, params, problems):
        stats.counts[example.label] = stats.counts.get(example.label, 0) + 1
        stats.first_line.setdefault(example.label, example.line)
    _check_rare_labels(stats, params, problems, path)
    if problems:
        raise DataValidationError(problems)


def _check_rare_labels(
    train: _SplitStats, params: DataParams, problems: list[str], path: Path | None = None
) -> None:
    """Labels with fewer training examples than `min_examples_per_label`, with the line of each."""
    rare = sorted((n, label) for label, n in train.counts.items() if n < params.min_examples_per_label)
    if not rare:
        return
    path = params.train_path if path is None else path
    shown = ", ".join(f"{label!r} ({n} at line {train.first_line[label]})" for n, label in rare[:_SHOW]) + (
        f" and {len(rare) - _SHOW} more" if len(rare) > _SHOW else ""
    )
    hint = (
        '; a text with an unquoted comma is read as text + label: quote such texts ("a, b")'
        if path.suffix.lower() == ".csv"
        else ""
    )
    problems.append(
        f"{path}: {len(rare)} label(s) with fewer than {params.min_examples_per_label} "
        f"training examples: {shown}{hint} (or lower data.min_examples_per_label)"
    )


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
