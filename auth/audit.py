"""The audit trail: one JSON line per request (and per token issued or refused) to a rotating file
and stdout. It records who did what, when, from where and with what outcome; never a token, a secret
or a text being classified (callers pass only the fields below)."""

from __future__ import annotations

import json
import logging
import sys
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

AUDIT_LOGGER = "textclf.audit"


class AuditLog:
    """Writes audit records; `record(**fields)` adds the time and one line per call."""

    def __init__(self, folder: Path | None, name: str, stdout: bool, max_bytes: int, backups: int):
        self.logger = logging.getLogger(f"{AUDIT_LOGGER}.{name}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False  # the server's own log format must not wrap our JSON
        for handler in list(self.logger.handlers):
            self.logger.removeHandler(handler)
            handler.close()
        self.path: Path | None = None
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.path = folder / f"{name}.jsonl"
            file_handler = RotatingFileHandler(
                self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
            )
            self.logger.addHandler(file_handler)
        if stdout:
            self.logger.addHandler(logging.StreamHandler(sys.stdout))
        if not self.logger.handlers:
            self.logger.addHandler(logging.NullHandler())

    def record(self, **fields: Any) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        self.logger.info(json.dumps({"time": stamp, **fields}, separators=(",", ":"), default=str))

    def close(self) -> None:
        for handler in list(self.logger.handlers):
            self.logger.removeHandler(handler)
            handler.close()
