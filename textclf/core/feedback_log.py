"""The server's feedback logs: one sealed JSON-lines file per worker, read back by the retraining job.

The server appends (bentos.feedback); `textclf retrain` reads every worker's file, decrypting in memory
only. A worker killed in the middle of an append can leave a torn last line: the log repairs it before
its next append (textclf.core.crypto.SealedLog) and the reader skips it with a warning, so an
acknowledged record is never lost and an unacknowledged one is either whole or absent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textclf.core.crypto import Sealer, read_sealed_lines

FEEDBACK_AAD = b"textclf-feedback-v1"
LOG_GLOB = "feedback-*.sealed.jsonl"
log = logging.getLogger(__name__)


def log_name(worker: str) -> str:
    """The file name of one worker's feedback log."""
    return f"feedback-{worker}.sealed.jsonl"


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """One stored feedback item: the text, its true label, what the server answered (if said), when."""

    text: str
    label: str
    predicted: str | None
    time: float
    source: str  # file:line, for messages

    @classmethod
    def from_record(cls, record: dict[str, Any], source: str) -> FeedbackRecord:
        predicted = record.get("predicted")
        return cls(
            text=str(record.get("text") or ""),
            label=str(record.get("label") or ""),
            predicted=None if predicted is None else str(predicted),
            time=float(record.get("time") or 0.0),
            source=source,
        )


def feedback_logs(folder: Path) -> list[Path]:
    """Every worker's log in `folder` (none when it does not exist), in name order."""
    return sorted(Path(folder).glob(LOG_GLOB)) if Path(folder).is_dir() else []


def iter_feedback(folder: Path, sealer: Sealer) -> Iterator[FeedbackRecord]:
    """Every record of every worker's log, decrypted in memory; torn lines are skipped with a warning,
    any other bad line (wrong key, tampering) stops with SealedDataError naming the file and line."""
    for path in feedback_logs(folder):
        for number, record in read_sealed_lines(path, sealer, FEEDBACK_AAD, skip_torn=True):
            yield FeedbackRecord.from_record(record, f"{path.name}:{number}")
