"""`predict-spark` on a real Spark (local[2]): the served model's labels, one session per worker, formats,
sealed folders, and the CLI end to end. One SparkSession for the module keeps it fast."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.output import OUTPUT_FIELDS
from batch.spark import SparkRunError, predict_spark
from batch.spark_io import plan_run
from batch.spark_model import local_model
from tests.conftest import Workspace
from tests.helpers import bin_path, needs_java, tiny_rows, write_csv
from textclf.core.artifacts import write_sealed
from textclf.core.crypto import Sealer
from textclf.core.runtime import OnnxClassifier

pytestmark = pytest.mark.integration

BLANK = "text is empty or only whitespace"


@pytest.fixture(scope="module")
def spark() -> Iterator:
    needs_java()
    from batch.spark_session import spark_session

    with spark_session("local[2]") as session:
        yield session


@pytest.fixture(scope="module")
def folder(trained_logreg: Workspace) -> Path:
    return trained_logreg.onnx_dir("logreg")


def texts() -> list[str]:
    return [text for text, _ in tiny_rows(40, seed=7)]  # 200 texts


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def part_rows(folder: Path) -> list[dict]:
    """Every row of a folder of JSON part files."""
    return [row for part in sorted(folder.glob("part-*")) for row in read_jsonl(part)]


def test_labels_and_row_errors_match_the_served_classifier(spark, folder: Path, tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "in.csv", [(t, str(i)) for i, t in enumerate(texts())] + [("", "x"), ("  ", "y")]
    )
    plan = plan_run(str(source), str(tmp_path / "out.jsonl"), single_file=True)
    with local_model(folder) as model:
        summary = predict_spark(spark, plan, model, top_k=2)
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert summary.rows == len(rows) == len(texts()) + 2 and summary.failed_rows == 2
    assert list(rows[0]) == ["text", "category", *OUTPUT_FIELDS]
    classifier = OnnxClassifier(folder)
    expected = classifier.answers(classifier.predict(texts())[0], 2)
    by_text = {row["text"]: row for row in rows if row["error"] is None}
    for text, answer in zip(texts(), expected, strict=True):
        got = by_text[text]
        assert got["label"] == answer["label"]
        assert got["score"] == pytest.approx(answer["score"], abs=1e-6)
        assert [t["label"] for t in got["top_k"]] == [t["label"] for t in answer["top_k"]]
    assert sorted((r["category"], r["error"], r["label"]) for r in rows if r["error"]) == [
        ("x", BLANK, None),
        ("y", BLANK, None),
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".part", ".old"))]


def test_one_session_per_worker_process_across_batches_and_tasks(spark, folder: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": texts() * 3}), source)
    with local_model(folder) as model:
        first = predict_spark(
            spark, plan_run(str(source), str(tmp_path / "a.parquet")), model, partitions=6, batch_size=16
        )
        second = predict_spark(
            spark, plan_run(str(source), str(tmp_path / "b.parquet")), model, partitions=6, batch_size=16
        )
    assert first.rows == second.rows == 600
    # many batches and tasks per worker, yet each process built its session once...
    assert sum(first.batches.values()) > 2 * len(first.batches)
    assert set(first.sessions) <= set(first.batches)
    assert all(count == 1 for count in (first.sessions + second.sessions).values())
    # ...and a worker reused by the second run kept it (no new session for a pid seen before)
    assert not set(second.sessions) & set(first.sessions)
    assert pq.read_table(tmp_path / "b.parquet").num_rows == 600


def test_parquet_in_csv_out_keeps_columns_and_types_as_text(spark, folder: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    n = len(texts())
    pq.write_table(pa.table({"id": list(range(n)), "text": texts(), "tags": [["a", "b"]] * n}), source)
    plan = plan_run(str(source), str(tmp_path / "out.csv"), single_file=True)
    with local_model(folder) as model:
        predict_spark(spark, plan, model, top_k=3)
    with (tmp_path / "out.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "text", "tags", *OUTPUT_FIELDS]
    assert sorted(int(r["id"]) for r in rows) == list(range(n))
    assert json.loads(rows[0]["tags"]) == ["a", "b"]
    assert len(json.loads(rows[0]["top_k"])) == 3 and rows[0]["error"] == ""


def test_jsonl_in_folder_out_and_non_string_texts(spark, folder: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps({"n": i, "text": i}) for i in range(5)) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    with local_model(folder) as model:
        predict_spark(spark, plan_run(str(source), str(out)), model)
    assert out.is_dir()
    rows = part_rows(out)
    assert sorted(r["n"] for r in rows) == list(range(5))
    assert {r["error"] for r in rows} == {"text is a JSON int, not a string"}
    assert all(r["label"] is None and "top_k" in r for r in rows)  # null fields are written


def test_existing_output_is_refused_then_replaced_whole(spark, folder: Path, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", [(t, "c") for t in texts()[:20]])
    out = tmp_path / "out.parquet"
    out.mkdir()
    (out / "stale").write_text("old", encoding="utf-8")
    with pytest.raises(SparkRunError, match="already exists; pass --overwrite"):
        plan_run(str(source), str(out))
    with local_model(folder) as model:
        predict_spark(spark, plan_run(str(source), str(out), overwrite=True), model)
    assert not (out / "stale").exists() and pq.read_table(out).num_rows == 20


def test_wrong_text_column_lists_the_columns(spark, folder: Path, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", [("hello", "c")], header=("body", "category"))
    with (
        local_model(folder) as model,
        pytest.raises(SparkRunError, match="columns found: 'body', 'category'"),
    ):
        predict_spark(spark, plan_run(str(source), str(tmp_path / "o.csv")), model)
    assert not (tmp_path / "o.csv").exists()


def test_sealed_folder_is_decrypted_privately_for_the_run_only(spark, folder: Path, tmp_path: Path) -> None:
    key = os.urandom(32)
    sealed = tmp_path / "sealed"
    sealed.mkdir()
    for path in folder.iterdir():
        write_sealed(sealed, path.name, path.read_bytes(), Sealer(key))
    source = write_csv(tmp_path / "in.csv", [(t, "c") for t in texts()[:30]])
    with local_model(sealed, key) as model:
        private = Path(model.folder)
        assert private != sealed and (private / "model.onnx").is_file()
        assert private.stat().st_mode & 0o777 == 0o700
        assert (private / "model.onnx").stat().st_mode & 0o777 == 0o600
        predict_spark(spark, plan_run(str(source), str(tmp_path / "out.jsonl"), single_file=True), model)
    assert not private.exists()
    classifier = OnnxClassifier(folder)
    assert [r["label"] for r in read_jsonl(tmp_path / "out.jsonl")] == [
        a["label"] for a in classifier.answers(classifier.predict(texts()[:30])[0])
    ]


def test_cli_end_to_end(folder: Path, tmp_path: Path) -> None:
    needs_java()
    source = write_csv(tmp_path / "in.csv", [(t, "c") for t in texts()[:50]])
    archive = tmp_path / "model.tar.gz"
    packed = subprocess.run(
        [bin_path("textclf"), "model-archive", str(archive), "--model-folder", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert packed.returncode == 0, packed.stderr
    unpacked = tmp_path / "model"
    shutil.unpack_archive(archive, unpacked)
    args = [str(source), str(tmp_path / "out.csv"), "--model-folder", str(unpacked), "--master", "local[2]"]
    run = subprocess.run(
        [bin_path("textclf"), "predict-spark", *args, "--single-file"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr
    assert "50 rows" in " ".join(run.stderr.split())
    with (tmp_path / "out.csv").open(newline="", encoding="utf-8") as handle:
        labels = Counter(row["label"] for row in csv.DictReader(handle))
    assert sum(labels.values()) == 50 and "" not in labels
