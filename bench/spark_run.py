"""Spark throughput of a model folder (`predict-spark`'s path), beside the in-process classifier.

`measure_spark` starts a local session, scores a Parquet copy of the texts once to start the Python
workers and their ONNX Runtime sessions (the warm-up), then times `rounds` full runs (read, score,
write Parquet). Spark's start-up and the warm-up are reported apart from the steady texts/s.
`measure_in_process` times OnnxClassifier.predict on the same texts in this process, the served
path's model call without HTTP, as the reference to compare with in the same run.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from batch.spark import predict_spark
from batch.spark_io import plan_run
from batch.spark_model import local_model
from batch.spark_session import spark_session
from textclf.core.runtime import OnnxClassifier


def repeated(texts: list[str], rows: int) -> list[str]:
    """`texts` repeated (and cut) to `rows` rows."""
    return [texts[i % len(texts)] for i in range(rows)]


def measure_spark(
    folder: Path,
    texts: list[str],
    rows: int = 30_000,
    master: str = "local[2]",
    rounds: int = 2,
    partitions: int | None = None,
) -> dict:
    """Steady texts/s of predict-spark on `rows` rows (Parquet in and out), its fixed costs, and the
    label it gave each of `texts` (their first rows, in the warm-up run).
    `partitions`: tasks the input is spread over (default: the master's cores; a small file is
    otherwise one task)."""
    scratch = Path(tempfile.mkdtemp(prefix="textclf-bench-spark-"))
    try:
        source = scratch / "input.parquet"
        table = pa.table({"row": list(range(rows)), "text": repeated(texts, rows)})
        pq.write_table(table, source, row_group_size=max(1, rows // 8))
        started = time.perf_counter()
        with local_model(folder) as model, spark_session(master) as spark:
            startup_s = time.perf_counter() - started
            spread = partitions or spark.sparkContext.defaultParallelism  # every core gets a share
            runs = []
            for i in range(rounds + 1):  # the first run starts the workers and their sessions
                plan = plan_run(str(source), str(scratch / f"out-{i}.parquet"))
                runs.append(predict_spark(spark, plan, model, partitions=spread))
        steady = runs[1:]
        seconds = sum(r.seconds for r in steady)
        first = pq.read_table(scratch / "out-0.parquet", columns=["row", "label"]).to_pydict()
        labels = dict(zip(first["row"], first["label"], strict=True))  # the shuffle does not keep row order
        return {
            "target": "spark",
            "master": master,
            "rows": rows,
            "rounds": rounds,
            "partitions": spread,
            "startup_s": round(startup_s, 2),
            "warmup_s": round(runs[0].seconds, 2),
            "texts_per_s": round(sum(r.rows for r in steady) / seconds, 1),
            "sessions_per_worker": max(sum((r.sessions for r in runs), Counter()).values()),
            "workers": len(set().union(*(r.batches for r in runs))),
            "batches": sum(sum(r.batches.values()) for r in steady),
            "labels": [labels[i] for i in range(min(rows, len(texts)))],  # each text's first row
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def measure_in_process(folder: Path, texts: list[str], rows: int = 30_000, chunk: int = 10_000) -> dict:
    """texts/s of OnnxClassifier.predict (one thread, chunks of `chunk` texts) on the same rows."""
    classifier = OnnxClassifier(folder)
    data = repeated(texts, rows)
    classifier.predict(data[:chunk])  # warm-up
    started = time.perf_counter()
    for start in range(0, rows, chunk):
        classifier.answers(classifier.predict(data[start : start + chunk])[0])
    seconds = time.perf_counter() - started
    return {"target": "in-process", "rows": rows, "threads": 1, "texts_per_s": round(rows / seconds, 1)}
