"""The worker side of a Spark run: Arrow batches in, the same batches plus OUTPUT_FIELDS out.

Each Python worker builds one OnnxClassifier per model (folder + version) the first time a batch
reaches it and keeps it in a module-level cache for every later batch and task (Spark reuses its
workers): the natural singleton, one ONNX Runtime session per process. Rows the server would refuse
get the same `error` as predict-batch writes (batch.rows decides); the others get what the
classifier's `answers` gives, abstention included. Input columns pass through untouched (Arrow to
Arrow, no pandas in between).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from batch.output import OUTPUT_FIELDS
from batch.rows import Chunk, chunks
from textclf.core.records import Position, Record
from textclf.core.runtime import OnnxClassifier

TOP_K = pa.list_(pa.struct([("label", pa.string()), ("score", pa.float64())]))
# every output field's Arrow type; Spark's types are derived from these (`spark_fields`)
ARROW_TYPES: dict[str, pa.DataType] = {
    "label": pa.string(),
    "score": pa.float64(),
    "abstained": pa.bool_(),
    "top_k": TOP_K,
    "error": pa.string(),
}

_CLASSIFIERS: dict[tuple[str, str], OnnxClassifier] = {}


class CounterParam:
    """Spark accumulator parameter for a Counter (duck-typed AccumulatorParam: `zero`, `addInPlace`)."""

    def zero(self, value: Counter) -> Counter:
        return Counter()

    def addInPlace(self, total: Counter, more: Counter) -> Counter:
        total.update(more)
        return total


@dataclass(frozen=True)
class ScoringJob:
    """Everything a worker needs, pickled into each task. `null_text`: what a missing text reads as
    (CSV: an empty cell, "" as predict-batch sees it; otherwise None, a non-string). The accumulators
    count per worker process (pid) the sessions built and the batches scored."""

    folder: str
    version: str
    text_column: str
    top_k: int | None = None
    null_text: str | None = None
    sessions: Any = None
    batches: Any = None
    rows: Any = None


def classifier_for(folder: str, version: str, created: Any = None) -> OnnxClassifier:
    """This process's classifier for the model, built on first use (`created` counts the builds)."""
    key = (folder, version)
    found = _CLASSIFIERS.get(key)
    if found is None:
        found = _CLASSIFIERS[key] = OnnxClassifier(folder)
        if created is not None:
            created.add(Counter({os.getpid(): 1}))
    return found


def sendable(texts: list[Any], text_column: str) -> Chunk:
    """predict-batch's own decision (batch.rows) of which texts go to the model and which rows get
    an `error` instead (blank, not a string): one chunk holding every value of the column."""
    rows = ((Record(line=i, values={text_column: v}), Position()) for i, v in enumerate(texts))
    return next(chunks(rows, text_column, len(texts)))


def score_batch(batch: pa.RecordBatch, classifier: OnnxClassifier, job: ScoringJob) -> pa.RecordBatch:
    """One Arrow batch with its prediction columns appended, one output row per input row."""
    values = batch.column(job.text_column).to_pylist()
    if job.null_text is not None:
        values = [job.null_text if v is None else v for v in values]
    results: list[dict[str, Any]] = []
    if values:
        chunk = sendable(values, job.text_column)
        results = [{"error": error} for _, error in chunk.results]
        if chunk.texts:
            probs = classifier.predict(chunk.texts)[0]
            for i, answer in zip(chunk.sent, classifier.answers(probs, job.top_k), strict=True):
                results[i] = {**answer, "error": None}
    added = [pa.array([r.get(f) for r in results], type=ARROW_TYPES[f]) for f in OUTPUT_FIELDS]
    return pa.RecordBatch.from_arrays([*batch.columns, *added], names=[*batch.schema.names, *OUTPUT_FIELDS])


def score_batches(batches: Iterator[pa.RecordBatch], job: ScoringJob) -> Iterator[pa.RecordBatch]:
    """mapInArrow's function: the classifier is looked up once per task, built once per process."""
    classifier = None
    for batch in batches:
        if classifier is None:
            classifier = classifier_for(job.folder, job.version, job.sessions)
        scored = score_batch(batch, classifier, job)
        if job.batches is not None:
            job.batches.add(Counter({os.getpid(): 1}))
            job.rows.add(
                Counter(
                    {"rows": batch.num_rows, "errors": batch.num_rows - scored.column("error").null_count}
                )
            )
        yield scored


def spark_fields() -> list:
    """OUTPUT_FIELDS as Spark StructFields (pyspark is imported here, never by the serving path)."""
    from pyspark.sql.pandas.types import from_arrow_type
    from pyspark.sql.types import StructField

    missing = [f for f in OUTPUT_FIELDS if f not in ARROW_TYPES]
    if missing:
        raise RuntimeError(f"no Arrow type for output field(s) {missing}: add them to ARROW_TYPES")
    return [StructField(f, from_arrow_type(ARROW_TYPES[f]), nullable=True) for f in OUTPUT_FIELDS]
