"""Files in and out of a Spark scoring run: formats by suffix, reading, and writing without half-results.

Spark writes a folder of part files. For a local OUTPUT the folder is written beside the target under a
temporary name and renamed onto it only once the job committed (`--single-file`: its one part file is
renamed instead), so OUTPUT is either the old content or the whole new one. Other URIs (hdfs://, s3a://)
go through Spark's own output committer.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from batch.output import OUTPUT_FIELDS
from textclf.core.records import CSV_SUFFIXES, JSONL_SUFFIXES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

FORMATS = ("parquet", "csv", "jsonl")
SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    **dict.fromkeys(CSV_SUFFIXES, "csv"),
    **dict.fromkeys(JSONL_SUFFIXES, "jsonl"),
}
FORMAT_NAMES = {"parquet": "Parquet", "csv": "CSV", "jsonl": "JSON Lines"}


class SparkRunError(Exception):
    """The run cannot start or finish correctly; the message says why, and OUTPUT is untouched."""


def is_local(path: str) -> bool:
    """Whether `path` is on this machine's file system (no URI scheme other than file:)."""
    return "://" not in path or path.startswith("file:")


def local_path(path: str) -> Path:
    return Path(path.removeprefix("file://").removeprefix("file:"))


def data_format(path: str, given: str | None, role: str) -> str:
    """The format of an input or output: `given` (--input-format/--output-format), else the suffix."""
    if given is not None:
        if given.lower() not in FORMATS:
            raise SparkRunError(f"unknown {role} format {given!r}; choose one of: {', '.join(FORMATS)}")
        return given.lower()
    suffix = PurePosixPath(path.rstrip("/")).suffix.lower()
    if suffix not in SUFFIXES:
        known = ", ".join(sorted(SUFFIXES))
        raise SparkRunError(
            f"{role} {path} has an unknown format {suffix or '(no suffix)'!r}; "
            f"use one of {known} or pass --{role}-format ({', '.join(FORMATS)})"
        )
    return SUFFIXES[suffix]


@dataclass(frozen=True)
class Plan:
    """What was checked before Spark starts (in milliseconds, not after its start-up)."""

    input: str
    output: str
    input_format: str
    output_format: str
    overwrite: bool
    single_file: bool


def plan_run(
    input_path: str,
    output: str,
    input_format: str | None = None,
    output_format: str | None = None,
    overwrite: bool = False,
    single_file: bool = False,
) -> Plan:
    """Check the paths and formats of a run; SparkRunError says what is wrong."""
    kind_in = data_format(input_path, input_format, "input")
    kind_out = data_format(output, output_format, "output")
    if is_local(input_path) and not local_path(input_path).exists():
        raise SparkRunError(f"input {input_path} does not exist")
    if single_file and not is_local(output):
        raise SparkRunError("--single-file needs a local OUTPUT; on a cluster, read the folder of part files")
    if is_local(output):
        target = local_path(output)
        if is_local(input_path) and target.resolve() == local_path(input_path).resolve():
            raise SparkRunError(f"OUTPUT {output} is the input; write the predictions elsewhere")
        if target.exists() and not overwrite:
            raise SparkRunError(f"{output} already exists; pass --overwrite to replace it")
        if not target.parent.is_dir():
            raise SparkRunError(f"the folder of OUTPUT, {target.parent}, does not exist")
    return Plan(input_path, output, kind_in, kind_out, overwrite, single_file)


def read_input(spark: SparkSession, plan: Plan, text_column: str) -> DataFrame:
    """The input as a DataFrame, its text column checked (columns found listed when it is missing).
    CSV: header row, fields quoted as Python's csv writes them (newlines inside quotes allowed), every
    column a string. JSON Lines: one object per line, a malformed line fails the run."""
    from pyspark.errors import AnalysisException

    reader = spark.read
    try:
        if plan.input_format == "csv":
            frame = reader.options(header=True, multiLine=True, escape='"').csv(plan.input)
        elif plan.input_format == "jsonl":
            frame = reader.options(mode="FAILFAST").json(plan.input)
        else:
            frame = reader.parquet(plan.input)
    except AnalysisException as exc:
        raise SparkRunError(
            f"cannot read {plan.input} as {FORMAT_NAMES[plan.input_format]}: {_first_line(exc)}"
        ) from None
    except Exception as exc:  # the JVM's parse errors (FAILFAST) arrive as Py4J/Spark errors
        raise SparkRunError(
            f"{plan.input} is not valid {FORMAT_NAMES[plan.input_format]}: {_first_line(exc)}"
        ) from None
    if text_column not in frame.columns:
        found = ", ".join(repr(c) for c in frame.columns) or "none"
        raise SparkRunError(f"{plan.input} has no text column {text_column!r}; columns found: {found}")
    clashes = [c for c in OUTPUT_FIELDS if c in frame.columns]
    if clashes:
        raise SparkRunError(
            f"{plan.input} already has column(s) {', '.join(map(repr, clashes))}, which the output adds; "
            "rename them in the input first"
        )
    return frame


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _for_csv(frame: DataFrame) -> DataFrame:
    """CSV holds no nested values: arrays, structs and maps (top_k among them) become JSON text."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, MapType, StructType

    nested = (ArrayType, MapType, StructType)
    return frame.select(
        *[
            F.to_json(F.col(f"`{f.name}`")).alias(f.name)
            if isinstance(f.dataType, nested)
            else F.col(f"`{f.name}`")
            for f in frame.schema.fields
        ]
    )


def _save(frame: DataFrame, kind: str, path: str, mode: str) -> None:
    if kind == "csv":
        options = {"header": True, "escape": '"', "ignoreLeadingWhiteSpace": False}
        _for_csv(frame).write.mode(mode).options(**options, ignoreTrailingWhiteSpace=False).csv(path)
    elif kind == "jsonl":  # null fields kept, as predict-batch writes them (`"label": null`)
        frame.write.mode(mode).option("ignoreNullFields", False).json(path)
    else:
        frame.write.mode(mode).parquet(path)


def write_output(frame: DataFrame, plan: Plan) -> None:
    """Run the job by writing its result; a local OUTPUT appears whole or not at all."""
    if not is_local(plan.output):
        _save(frame, plan.output_format, plan.output, "overwrite" if plan.overwrite else "errorifexists")
        return
    target = local_path(plan.output)
    staging = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        _save(
            frame.coalesce(1) if plan.single_file else frame,
            plan.output_format,
            str(staging),
            "errorifexists",
        )
        if plan.single_file:
            parts = sorted(p for p in staging.iterdir() if p.name.startswith("part-"))
            if len(parts) != 1:
                raise SparkRunError(f"expected one part file from coalesce(1), Spark wrote {len(parts)}")
            single = staging.with_name(staging.name + ".file")
            os.replace(parts[0], single)
            shutil.rmtree(staging)
            staging = single
        _replace(staging, target)
    finally:
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        elif staging.exists():
            staging.unlink()


def _replace(new: Path, target: Path) -> None:
    """Rename `new` onto `target`, which may be an old file or folder (moved aside first, then removed)."""
    if not target.exists() or (target.is_file() and new.is_file()):
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.old")
    os.replace(target, old)
    os.replace(new, target)
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()
