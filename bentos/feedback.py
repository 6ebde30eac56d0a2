"""Feedback records (true labels sent by clients) appended encrypted to a per-worker log.

They hold user text, so they are only ever written sealed with the data key (AES-256-GCM); a server
without a data key refuses feedback with 503 rather than store it in the clear.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from auth.audit import worker_tag
from bentos.schemas import FeedbackItem
from textclf.core.crypto import DataKeyError, SealedLog, Sealer, load_data_key
from textclf.core.feedback_log import FEEDBACK_AAD, log_name


class FeedbackStore:
    def __init__(self, folder: Path, labels: Sequence[str]):
        self.folder = folder
        self.labels = frozenset(labels)
        self._log: SealedLog | None = None
        self._why_off: str | None = None
        try:
            key = load_data_key()
        except DataKeyError as exc:
            raise RuntimeError(f"cannot start: {exc}") from None
        if key is None:
            self._why_off = (
                "feedback storage is off: the server has no data key to encrypt it "
                "(set TEXTCLF_DATA_KEY or TEXTCLF_DATA_KEY_FILE)"
            )
        else:
            self._sealer = Sealer(key)

    def _open(self) -> SealedLog:
        if self._log is None:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = self.folder / log_name(worker_tag())
            self._log = SealedLog(path, self._sealer, FEEDBACK_AAD)
        return self._log

    def append(self, items: Sequence[FeedbackItem], subject: str | None) -> tuple[int, str] | None:
        """Store every item, or none: (status, message) says why not."""
        if self._why_off is not None:
            return 503, self._why_off
        unknown = sorted({item.label for item in items} - self.labels)
        if unknown:
            return 422, f"unknown label(s): {', '.join(unknown[:5])} (not labels of this model)"
        log = self._open()
        now = time.time()
        for item in items:
            log.append(
                {
                    "time": now,
                    "subject": subject,
                    "text": item.text,
                    "label": item.label,
                    "predicted": item.predicted,
                }
            )
        return None
