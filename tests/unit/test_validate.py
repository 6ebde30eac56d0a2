"""Validation refuses data that would train or evaluate wrongly, naming every problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import write_csv, write_tiny_dataset
from training.params import DataParams
from training.validate import DataValidationError, normalize, prepare


def params_for(directory: Path, **kw: object) -> DataParams:
    return DataParams(
        **{"dir": directory, "labels_file": "categories.json", "prepared_dir": directory / "prepared", **kw}
    )


def run(params: DataParams):
    return prepare(params, params.prepared_dir / "report.json")


def read_prepared(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def rewrite(path: Path, extra: list[tuple[str, str]]) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    write_csv(path, [tuple(line.rsplit(",", 1)) for line in lines[1:]] + extra)  # type: ignore[misc]


def test_clean_data_is_prepared(tmp_path: Path) -> None:
    params = params_for(write_tiny_dataset(tmp_path / "d"))
    report = prepare(params, tmp_path / "report.json")
    assert report.train_rows == 200 and report.test_rows == 50 and report.labels == 5
    first = json.loads(params.prepared_train.read_text().splitlines()[0])
    assert set(first) == {"text", "label"}
    assert json.loads((tmp_path / "report.json").read_text())["data_sha256"] == report.data_sha256


def test_missing_column(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "d")
    with pytest.raises(DataValidationError, match=r"missing column\(s\) \['utterance'\]"):
        run(params_for(data, text_column="utterance"))


def test_empty_text_is_refused_with_its_line(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "d")
    rewrite(data / "train.csv", [("   ", "refund")])
    with pytest.raises(DataValidationError, match=r"1 empty or blank text\(s\) in .*train.csv \(line 202\)"):
        run(params_for(data))


def test_unknown_and_mismatched_labels(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "d")
    rewrite(data / "test.csv", [("what is going on", "mystery")])
    with pytest.raises(DataValidationError) as caught:
        run(params_for(data))
    text = str(caught.value)
    assert "test: 1 label(s) not in" in text and "never seen in train: ['mystery']" in text


def test_label_without_training_examples(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "d")
    labels = [*json.loads((data / "categories.json").read_text()), "lonely"]
    (data / "categories.json").write_text(json.dumps(labels))
    with pytest.raises(DataValidationError, match=r"no training example: \['lonely'\]"):
        run(params_for(data))


def test_leakage_fails_or_drops_train_copies(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "d")
    test_text, test_label = (data / "test.csv").read_text().splitlines()[1].rsplit(",", 1)
    rewrite(data / "train.csv", [("\n" + test_text + "  ", test_label)])  # differs only by whitespace
    with pytest.raises(DataValidationError, match=r"1 train text\(s\) also in the test set \(leakage\)"):
        run(params_for(data, on_leakage="fail"))
    params = params_for(data, on_leakage="drop_from_train")
    report = run(params)
    train, test = read_prepared(params.prepared_train), read_prepared(params.prepared_test)
    assert report.dropped_from_train == 1 and len(train) == 200 and len(test) == 50
    assert normalize(test_text) not in {normalize(e["text"]) for e in train}


def test_labels_inferred_without_labels_file(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "d")
    params = DataParams(dir=data, labels_file=None, prepared_dir=tmp_path / "prepared")
    run(params)
    labels = json.loads((params.prepared_dir / "labels.json").read_text())
    assert labels == sorted(labels) and len(labels) == 5


def test_failed_validation_writes_nothing(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "d")
    rewrite(data / "train.csv", [("", "refund")])
    params = params_for(data)
    with pytest.raises(DataValidationError):
        run(params)
    assert not params.prepared_train.exists() and list(params.prepared_dir.iterdir()) == []


def test_duplicates_and_conflicts_are_reported(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "d")
    rewrite(data / "train.csv", [("same words here", "refund"), ("same  words here", "top_up")])
    report = run(params_for(data))
    assert report.duplicate_train_texts == 1 and report.conflicting_train_texts == 1
    assert any("more than one label" in w for w in report.warnings)


def test_a_label_with_too_few_examples_stops_with_its_line_and_a_quoting_hint(tmp_path: Path) -> None:
    """An unquoted comma in a CSV text: the reader sees text + a one-example label."""
    directory = write_tiny_dataset(tmp_path / "d")
    (directory / "train.csv").write_text(
        (directory / "train.csv").read_text() + "i lost my card, please help\n", encoding="utf-8"
    )
    with pytest.raises(DataValidationError) as refused:
        run(params_for(directory, labels_file=None))
    message = str(refused.value)
    assert "1 label(s) with fewer than 2 training examples: ' please help' (1 at line 202)" in message
    assert "quote such texts" in message
    assert run(params_for(directory, labels_file=None, min_examples_per_label=1)).labels == 6


def test_a_dataset_of_its_own_validation_split(tmp_path: Path) -> None:
    directory = write_tiny_dataset(tmp_path / "d")
    test_text = (directory / "test.csv").read_text().splitlines()[1].rsplit(",", 1)[0]
    rows = [("where is the card i ordered last week", "card_arrival"), ("refund me for this one", "refund")]
    write_csv(directory / "validation.csv", [*rows, (test_text, "refund")])
    report = run(params_for(directory, validation_file="validation.csv", labels_file=None))
    assert report.validation_rows == 2 and "dropped 1 validation text(s)" in report.warnings[-1]
    prepared = read_prepared(directory / "prepared" / "validation.jsonl")
    assert [(r["text"], r["label"]) for r in prepared] == rows
    write_csv(directory / "validation.csv", [("a label train never saw", "no_such_label")])
    with pytest.raises(DataValidationError, match="1 validation label\\(s\\) not in the train split"):
        run(params_for(directory, validation_file="validation.csv", labels_file=None))
    report = run(params_for(directory, labels_file=None))  # without it: carved from train as before
    assert report.validation_rows == 0 and not (directory / "prepared" / "validation.jsonl").exists()
