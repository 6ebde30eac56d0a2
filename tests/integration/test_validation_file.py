"""A dataset's own validation split (data.validation_file) replaces the carve: early stopping, the
temperature and the drift reference all use it, and every train row trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY_LSTM, run_pipeline
from tests.helpers import tiny_rows, write_csv
from training.params import load_params
from training.splits import training_part, validation_examples

pytestmark = pytest.mark.integration


def test_the_lstm_and_its_export_use_the_datasets_validation_split(tmp_path: Path) -> None:
    rows = [(f"{text} (validation)", label) for text, label in tiny_rows(3, seed=33)]
    write_csv(tmp_path / "data" / "validation.csv", rows)
    ws = run_pipeline(tmp_path, "lstm", lstm=TINY_LSTM, data={"validation_file": "validation.csv"})
    params = load_params(ws.params_file)
    given = validation_examples(params, "lstm")
    assert list(zip(given.texts, given.labels, strict=True)) == rows
    texts = [json.loads(line)["text"] for line in params.data.prepared_train.read_text().splitlines()]
    assert len(training_part(params, "logreg", texts, ["x"] * len(texts))) == len(texts)  # nothing carved
    calibration = json.loads((ws.reports / "calibration_lstm.json").read_text())["fp32"]
    assert calibration["validation_rows"] == len(rows)
    assert json.loads((ws.reports / "data.json").read_text())["validation_rows"] == len(rows)
