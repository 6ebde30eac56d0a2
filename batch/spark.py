"""Score a dataset with Spark: the served model folder, inside mapInArrow, one output row per input row.

The driver checks paths, formats, the text column and the model before any task runs; each Python
worker then scores Arrow batches with one cached ONNX Runtime session (batch.spark_score). The output
is the input's columns plus OUTPUT_FIELDS, in Parquet, CSV or JSON Lines (batch.spark_io).
pyspark is imported inside functions only: nothing on the serving path ever loads it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from batch.spark_io import Plan, SparkRunError, read_input, write_output
from batch.spark_model import ModelRef
from batch.spark_score import CounterParam, ScoringJob, score_batches, spark_fields

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SparkRunError", "SparkSummary", "predict_spark", "score_frame"]


@dataclass
class SparkSummary:
    """What a finished run did. `sessions`/`batches`: per worker process (pid), the ONNX Runtime
    sessions it built in this run and the Arrow batches it scored (a reused worker builds none)."""

    rows: int = 0
    failed_rows: int = 0
    seconds: float = 0.0
    sessions: Counter = field(default_factory=Counter)
    batches: Counter = field(default_factory=Counter)

    @property
    def texts_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def score_frame(
    spark: SparkSession,
    frame: DataFrame,
    model: ModelRef,
    text_column: str,
    top_k: int | None = None,
    null_text: str | None = None,
) -> tuple[DataFrame, ScoringJob]:
    """`frame` with OUTPUT_FIELDS appended (lazy: nothing runs until it is written or collected)."""
    from pyspark.sql.types import StructType

    context = spark.sparkContext
    job = ScoringJob(
        folder=model.folder,
        version=model.version,
        text_column=text_column,
        top_k=top_k,
        null_text=null_text,
        sessions=context.accumulator(Counter(), CounterParam()),  # type: ignore[arg-type]
        batches=context.accumulator(Counter(), CounterParam()),  # type: ignore[arg-type]
        rows=context.accumulator(Counter(), CounterParam()),  # type: ignore[arg-type]
    )
    schema = StructType([*frame.schema.fields, *spark_fields()])
    return frame.mapInArrow(partial(score_batches, job=job), schema), job


def predict_spark(
    spark: SparkSession,
    plan: Plan,
    model: ModelRef,
    text_column: str = "text",
    top_k: int | None = None,
    partitions: int | None = None,
    batch_size: int | None = None,
) -> SparkSummary:
    """Read `plan.input`, score every row, write `plan.output`; SparkRunError for what the user can fix.
    `partitions`: spread the input over that many tasks first (a shuffle; row order is not kept).
    `batch_size`: rows per Arrow batch (Spark's spark.sql.execution.arrow.maxRecordsPerBatch)."""
    if batch_size is not None:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_size))
    frame = read_input(spark, plan, text_column)
    if partitions is not None:
        frame = frame.repartition(partitions)
    null_text = "" if plan.input_format == "csv" else None
    scored, job = score_frame(spark, frame, model, text_column, top_k, null_text)
    started = time.perf_counter()
    write_output(scored, plan)
    seconds = time.perf_counter() - started
    counts = job.rows.value
    return SparkSummary(
        rows=counts["rows"],
        failed_rows=counts["errors"],
        seconds=seconds,
        sessions=job.sessions.value,
        batches=job.batches.value,
    )
