"""Spark commands: score data that outgrows one machine with the same model folder (`predict-spark`),
and pack that folder for a cluster (`model-archive`).

spark-submit runs a Python file, not a console command: it is given this file, which then runs
`textclf` with the arguments that follow (`spark-submit [options] .../textclf/cli/spark.py predict-spark
IN OUT ...`). A script's folder goes first on sys.path, and this one holds modules named like the
project's packages (auth.py, bench.py): that entry is dropped before anything else is imported.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    del sys.path[0]

from contextlib import ExitStack
from pathlib import Path

import typer

from textclf.cli.common import ParamsOption, VariantOption, console, fail, variant
from textclf.core.variants import STORE_PREFIX

app = typer.Typer()


def model_folder_of(model: str, params_file: Path) -> Path:
    """A variant name or `champion` (as every command takes it), or a BentoML store tag
    (`textclf-logreg:<version>`, or `textclf-logreg` for the newest) → its model folder."""
    if ":" not in model and not model.startswith(STORE_PREFIX):
        return variant(model, params_file)[1]
    import bentoml
    from bentoml.exceptions import BentoMLException

    try:
        return Path(bentoml.models.get(model).path)
    except (BentoMLException, ValueError) as exc:
        raise fail(f"no model {model!r} in the BentoML model store ({exc})") from None


@app.command("predict-spark")
def predict_spark(
    input_path: str = typer.Argument(..., metavar="INPUT", help="Parquet, CSV or JSONL file or folder."),
    output: str = typer.Argument(
        ..., metavar="OUTPUT", help="Where to write: a folder of part files (one file with --single-file)."
    ),
    model: str = VariantOption,
    model_folder: Path | None = typer.Option(
        None, "--model-folder", help="Run this model folder instead of --model (e.g. an unpacked archive)."
    ),
    text_column: str = typer.Option("text", help="Column holding the text."),
    top_k: int | None = typer.Option(None, min=1, help="Also write the k best labels."),
    input_format: str | None = typer.Option(None, help="parquet, csv or jsonl (default: INPUT's suffix)."),
    output_format: str | None = typer.Option(None, help="parquet, csv or jsonl (default: OUTPUT's suffix)."),
    master: str | None = typer.Option(
        None, help="Spark master (default local[*]; under spark-submit, the one it was given)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
    single_file: bool = typer.Option(
        False, "--single-file", help="Write OUTPUT as one file (coalesce(1): one task writes it all)."
    ),
    partitions: int | None = typer.Option(
        None, min=1, help="Spread the input over this many tasks first (a shuffle; row order not kept)."
    ),
    batch_size: int | None = typer.Option(None, min=1, help="Rows per Arrow batch (Spark's default 10000)."),
    params_file: Path = ParamsOption,
) -> None:
    """Classify a dataset with Spark, running the served model folder in every Python worker."""
    from batch.spark import SparkRunError
    from batch.spark import predict_spark as run
    from batch.spark_io import plan_run
    from batch.spark_model import cluster_model, local_model
    from batch.spark_session import DEFAULT_MASTER, spark_session, under_spark_submit

    try:
        plan = plan_run(input_path, output, input_format, output_format, overwrite, single_file)
    except SparkRunError as exc:
        raise fail(str(exc)) from None
    folder = model_folder if model_folder is not None else model_folder_of(model, params_file)
    on_cluster = not (master or ("" if under_spark_submit() else DEFAULT_MASTER)).startswith("local")
    try:
        with ExitStack() as stack:
            ref = cluster_model(str(folder)) if on_cluster else stack.enter_context(local_model(folder))
            meta = ref.metadata
            console.print(f"model {meta.variant} {meta.version} ({ref.labels} labels); starting Spark")
            spark = stack.enter_context(spark_session(master))
            summary = run(spark, plan, ref, text_column, top_k, partitions, batch_size)
    except SparkRunError as exc:
        raise fail(str(exc)) from None
    shape = "one file" if single_file else "a folder of part files"
    console.print(
        f"[green]{summary.rows} rows[/] scored in {summary.seconds:.1f}s "
        f"({summary.texts_per_s:,.0f} texts/s) → {output} ({shape}); "
        f"{sum(summary.sessions.values())} ONNX Runtime session(s) built by "
        f"{len(summary.batches)} worker(s) for {sum(summary.batches.values())} Arrow batches"
    )
    if summary.failed_rows:
        console.print(
            f"[yellow]warning:[/] {summary.failed_rows} row(s) not classified; "
            "their reason is in the `error` column"
        )


@app.command("model-archive")
def model_archive(
    target: Path = typer.Argument(..., metavar="ARCHIVE", help="The tar.gz to write, e.g. model.tar.gz."),
    model: str = VariantOption,
    model_folder: Path | None = typer.Option(None, "--model-folder", help="Pack this folder instead."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace ARCHIVE if it exists."),
    params_file: Path = ParamsOption,
) -> None:
    """Pack a model folder for a Spark cluster: `spark-submit --archives ARCHIVE#model`."""
    from batch.spark_io import SparkRunError
    from batch.spark_model import write_model_archive

    if target.exists() and not overwrite:
        raise fail(f"{target} already exists; pass --overwrite to replace it")
    if not target.parent.is_dir():
        raise fail(f"the folder of ARCHIVE, {target.parent}, does not exist")
    folder = model_folder if model_folder is not None else model_folder_of(model, params_file)
    try:
        metadata = write_model_archive(folder, target)
    except SparkRunError as exc:
        raise fail(str(exc)) from None
    sealed = any(p.name.endswith(".sealed") for p in folder.iterdir())
    console.print(
        f"[green]wrote[/] {target}: {metadata.variant} {metadata.version}"
        + (" (sealed: executors need the data key, see the README)" if sealed else "")
        + f"; ship it with `spark-submit --archives {target}#model` and pass `--model-folder model`"
    )


if __name__ == "__main__":
    from textclf.cli import app as textclf

    textclf(args=sys.argv[1:], prog_name="textclf")
