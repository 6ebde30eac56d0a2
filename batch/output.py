"""The output side of a batch run: one result row per input row, in the output's format.

Rows keep their input columns and gain OUTPUT_FIELDS; they are written to a temporary file beside
the target, which the run renames onto it only once every row is there.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batch.rows import InputSpec
    from textclf.core.records import Record

OUTPUT_FIELDS = ("label", "score", "top_k", "error")


def _cell(value: Any) -> str:
    """A JSON value as one CSV cell: strings as they are, everything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


class Writer:
    """Writes result rows in the output's format; for CSV output the columns are fixed up front."""

    def __init__(self, handle: IO[str], kind: str, spec: InputSpec) -> None:
        self.handle = handle
        self.kind = kind
        self.spec = spec
        self.csv = csv.writer(handle) if kind == "csv" else None
        if self.csv is not None:
            self.csv.writerow([*spec.columns, *OUTPUT_FIELDS])

    def write(self, row: Record, prediction: dict[str, Any] | None, error: str | None) -> None:
        label = prediction["label"] if prediction else None
        score = prediction["score"] if prediction else None
        top_k = prediction.get("top_k") if prediction else None
        if self.csv is not None:
            cells = [_cell(row.values.get(c)) for c in self.spec.columns]
            top = json.dumps(top_k, ensure_ascii=False) if top_k is not None else ""
            self.csv.writerow([*cells, _cell(label), _cell(score), top, error or ""])
        else:
            record = dict(row.values)
            record.update(label=label, score=score, top_k=top_k, error=error)
            self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def temporary_beside(output: Path) -> Path:
    """A fresh name in the output's folder, so the final rename is atomic (same file system)."""
    return output.with_name(f".{output.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
