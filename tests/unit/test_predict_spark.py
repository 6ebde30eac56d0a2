"""predict-spark's checks before Spark starts, and its worker side on plain Arrow batches (no Spark)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from batch import spark_score
from batch.output import OUTPUT_FIELDS
from batch.spark_io import SparkRunError, data_format, plan_run
from batch.spark_score import ARROW_TYPES, ScoringJob, classifier_for, score_batch, sendable
from tests.conftest import Workspace
from textclf.cli import app


@pytest.mark.parametrize(
    ("path", "given", "kind"),
    [
        ("a.parquet", None, "parquet"),
        ("a.PQ", None, "parquet"),
        ("a.csv", None, "csv"),
        ("x/", "jsonl", "jsonl"),
    ],
)
def test_format_from_suffix_or_option(path: str, given: str | None, kind: str) -> None:
    assert data_format(path, given, "input") == kind


def test_unknown_formats_are_named() -> None:
    with pytest.raises(SparkRunError, match=r"input data.txt has an unknown format '.txt'.*--input-format"):
        data_format("data.txt", None, "input")
    with pytest.raises(
        SparkRunError, match="unknown output format 'xls'; choose one of: parquet, csv, jsonl"
    ):
        data_format("out", "xls", "output")


def test_plan_refuses_missing_input_existing_output_and_input_as_output(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    with pytest.raises(SparkRunError, match="does not exist"):
        plan_run(str(source), str(tmp_path / "out.csv"))
    source.write_text("text\nhi\n", encoding="utf-8")
    (tmp_path / "out.csv").write_text("", encoding="utf-8")
    with pytest.raises(SparkRunError, match="already exists; pass --overwrite"):
        plan_run(str(source), str(tmp_path / "out.csv"))
    with pytest.raises(SparkRunError, match="is the input"):
        plan_run(str(source), str(source), overwrite=True)
    with pytest.raises(SparkRunError, match="--single-file needs a local OUTPUT"):
        plan_run(str(source), "hdfs://nn/out.parquet", single_file=True)
    assert plan_run(str(source), str(tmp_path / "out.csv"), overwrite=True).output_format == "csv"


def test_every_output_field_has_a_type() -> None:
    assert set(OUTPUT_FIELDS) <= set(ARROW_TYPES)


def test_row_errors_are_predict_batch_s() -> None:
    chunk = sendable(["hello", "", "   ", 5, None], "text")
    assert chunk.texts == ["hello"] and chunk.sent == [0]
    assert [error for _, error in chunk.results[1:]] == [
        "text is empty or only whitespace",
        "text is empty or only whitespace",
        "text is a JSON int, not a string",
        "text is a JSON NoneType, not a string",
    ]


def test_worker_scores_a_batch_with_one_cached_classifier(trained_logreg: Workspace) -> None:
    folder = str(trained_logreg.onnx_dir("logreg"))
    spark_score._CLASSIFIERS.clear()
    first = classifier_for(folder, "v1")
    assert classifier_for(folder, "v1") is first and classifier_for(folder, "v2") is not first
    batch = pa.RecordBatch.from_pydict({"id": [1, 2, 3], "text": ["how do i get a refund", "", None]})
    job = ScoringJob(folder=folder, version="v1", text_column="text", top_k=2, null_text="")
    scored = score_batch(batch, first, job)
    assert scored.schema.names == ["id", "text", *OUTPUT_FIELDS]
    rows = scored.to_pylist()
    assert rows[0]["label"] == first.answers(first.predict(["how do i get a refund"])[0])[0]["label"]
    assert len(rows[0]["top_k"]) == 2 and rows[0]["error"] is None
    assert [r["error"] for r in rows[1:]] == ["text is empty or only whitespace"] * 2
    assert score_batch(batch.slice(0, 0), first, job).num_rows == 0
    spark_score._CLASSIFIERS.clear()


def test_cli_fails_clearly_before_starting_spark(tmp_path: Path) -> None:
    runner = CliRunner()
    cases = [
        (
            ["predict-spark", "missing.csv", "out.csv", "--model-folder", "m"],
            "input missing.csv does not exist",
        ),
        (["predict-spark", "in.txt", "out.csv", "--model-folder", "m"], "unknown format '.txt'"),
        (
            ["predict-spark", str(tmp_path / "in.csv"), "out.csv", "--model-folder", "nope"],
            "model folder nope",
        ),
        (
            ["predict-spark", str(tmp_path / "in.csv"), "o.csv", "--model", "textclf-gpt:1"],
            "no model 'textclf-gpt:1'",
        ),
        (["model-archive", str(tmp_path / "m.tar.gz"), "--model-folder", "nope"], "model folder nope"),
    ]
    (tmp_path / "in.csv").write_text("text\nhi\n", encoding="utf-8")
    for args, text in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert text in " ".join(result.output.split()), (args, result.output)
