"""The output side of a batch run: one result row per input row, in the output's format.

Rows keep their input columns and gain OUTPUT_FIELDS; they are written to a partial file beside
the target (batch.checkpoint names it), which the run renames onto it only once every row is there.
"""

from __future__ import annotations

import csv
import json
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batch.rows import InputSpec
    from textclf.core.records import Record

OUTPUT_FIELDS = ("label", "score", "abstained", "top_k", "error")


def _cell(value: Any) -> str:
    """A JSON value as one CSV cell: strings as they are, everything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


class Writer:
    """Writes result rows in the output's format; for CSV output the columns are fixed up front."""

    def __init__(self, handle: IO[str], kind: str, spec: InputSpec, header: bool = True) -> None:
        """`header=False` when appending to a partial output that already has it (a resumed run)."""
        self.handle = handle
        self.kind = kind
        self.spec = spec
        self.csv = csv.writer(handle) if kind == "csv" else None
        if self.csv is not None and header:
            self.csv.writerow([*spec.columns, *OUTPUT_FIELDS])

    def write(self, row: Record, prediction: dict[str, Any] | None, error: str | None) -> None:
        """One result row; a null label (the model abstained) is an empty CSV cell or a JSON null, and
        `abstained` is false for an answer that does not say (null when there is no answer at all)."""
        label = prediction["label"] if prediction else None
        score = prediction["score"] if prediction else None
        abstained = bool(prediction.get("abstained", False)) if prediction else None
        top_k = prediction.get("top_k") if prediction else None
        if self.csv is not None:
            cells = [_cell(row.values.get(c)) for c in self.spec.columns]
            top = json.dumps(top_k, ensure_ascii=False) if top_k is not None else ""
            self.csv.writerow([*cells, _cell(label), _cell(score), _cell(abstained), top, error or ""])
        else:
            record = dict(row.values)
            record.update(label=label, score=score, abstained=abstained, top_k=top_k, error=error)
            self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
