"""Data validation: refuse data that would train or evaluate a model wrongly, and say exactly why."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
    data_sha256: str = ""
    warnings: list[str] = field(default_factory=list)


def normalize(text: str) -> str:
    """The form used to compare texts: what a model sees once whitespace is tokenised away."""
    return _SPACES.sub(" ", text).strip()


def _where(examples: list[Example], path: Path) -> str:
    shown = ", ".join(f"line {e.line}" for e in examples[:_SHOW])
    more = f" and {len(examples) - _SHOW} more" if len(examples) > _SHOW else ""
    return f"{path} ({shown}{more})"


def _check_split(path: Path, params: DataParams, problems: list[str]) -> list[Example]:
    try:
        rows = list(iter_examples(path, params.text_column, params.label_column))
    except (DatasetFormatError, UnicodeDecodeError) as exc:
        problems.append(str(exc))
        return []
    if not rows:
        problems.append(f"{path}: no rows")
    empty_text = [e for e in rows if not e.text.strip()]
    if empty_text:
        problems.append(f"{len(empty_text)} empty or blank text(s) in {_where(empty_text, path)}")
    empty_label = [e for e in rows if not e.label.strip()]
    if empty_label:
        problems.append(f"{len(empty_label)} empty label(s) in {_where(empty_label, path)}")
    return rows


def _check_labels(
    train: list[Example], test: list[Example], params: DataParams, problems: list[str]
) -> tuple[list[str], list[str]]:
    warnings: list[str] = []
    train_labels = {e.label for e in train}
    test_labels = {e.label for e in test}
    if params.labels_path is not None:
        try:
            closed = read_label_list(params.labels_path)
        except (OSError, ValueError) as exc:
            problems.append(f"cannot read labels file: {exc}")
            return sorted(train_labels), warnings
        known = set(closed)
        for split, rows in (("train", train), ("test", test)):
            unknown = sorted({e.label for e in rows} - known)
            if unknown:
                problems.append(
                    f"{split}: {len(unknown)} label(s) not in {params.labels_path}: {unknown[:_SHOW]}"
                )
        untrained = [x for x in closed if x not in train_labels]
        if untrained:
            problems.append(f"label(s) with no training example: {untrained[:_SHOW]}")
        labels = closed
    else:
        labels = sorted(train_labels)
    unseen = sorted(test_labels - train_labels)
    if unseen:
        problems.append(f"test label(s) never seen in train: {unseen[:_SHOW]}")
    untested = sorted(train_labels - test_labels)
    if untested:
        warnings.append(f"{len(untested)} train label(s) absent from test: {untested[:_SHOW]}")
    return labels, warnings


def validate_dataset(
    params: DataParams,
) -> tuple[DataReport, list[Example], list[Example], list[str]]:
    """Run every check; raise DataValidationError listing all problems, or return clean splits."""
    problems: list[str] = []
    train = _check_split(params.train_path, params, problems)
    test = _check_split(params.test_path, params, problems)
    if problems:  # column or format errors make the rest meaningless
        raise DataValidationError(problems)
    labels, warnings = _check_labels(train, test, params, problems)

    test_keys = {normalize(e.text) for e in test}
    leaked = [e for e in train if normalize(e.text) in test_keys]
    if leaked and params.on_leakage == "fail":
        problems.append(
            f"{len(leaked)} train text(s) also in the test set (leakage) at "
            f"{_where(leaked, params.train_path)}; set data.on_leakage: drop_from_train to drop them"
        )
    if problems:
        raise DataValidationError(problems)

    if leaked:
        warnings.append(f"dropped {len(leaked)} train text(s) that also appear in test")
        leaked_lines = {e.line for e in leaked}
        train = [e for e in train if e.line not in leaked_lines]
    conflicts = _conflicting_duplicates(train)
    if conflicts:
        warnings.append(f"{conflicts} train text(s) appear with more than one label")
    duplicates = sum(n - 1 for n in Counter(normalize(e.text) for e in train).values() if n > 1)

    hashed = [params.train_path, params.test_path]
    if params.labels_path is not None:
        hashed.append(params.labels_path)
    report = DataReport(
        train_rows=len(train),
        test_rows=len(test),
        labels=len(labels),
        leaked_texts=len(leaked),
        dropped_from_train=len(leaked),
        duplicate_train_texts=duplicates,
        data_sha256=files_sha256(hashed),
        warnings=warnings,
    )
    return report, train, test, labels


def _conflicting_duplicates(rows: list[Example]) -> int:
    seen: dict[str, set[str]] = {}
    for e in rows:
        seen.setdefault(normalize(e.text), set()).add(e.label)
    return sum(1 for labels in seen.values() if len(labels) > 1)


def _write_jsonl(path: Path, rows: Iterator[Example] | list[Example]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for e in rows:
            handle.write(json.dumps({PREPARED_TEXT: e.text, PREPARED_LABEL: e.label}) + "\n")


def prepare(params: DataParams, report_path: Path) -> DataReport:
    """Validate the raw splits and write the clean ones the rest of the pipeline reads."""
    report, train, test, labels = validate_dataset(params)
    _write_jsonl(params.prepared_train, train)
    _write_jsonl(params.prepared_test, test)
    (params.prepared_dir / "labels.json").write_text(json.dumps(labels, indent=1), encoding="utf-8")
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    return report
