"""The audit trail: one JSON line per request (and per token issued or refused) to a rotating file
and stdout. It records who did what, when, from where and with what outcome; never a token, a secret
or a text being classified (callers pass only such fields).

It sits on every request's path, so it writes each line with one `os.write` to an append-only file
(whole lines, nothing buffered to lose) and counts bytes itself to rotate, instead of going through
`logging` (a record object, formatting, locks and two `stat` calls per line).
"""

from __future__ import annotations

import getpass
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from textclf.core.settings import Settings


def worker_tag() -> str:
    """This server worker's name for per-worker files: w<index> under BentoML, else p<pid>."""
    try:
        from bentoml import server_context

        index = server_context.worker_index
    except ImportError:  # pragma: no cover - the CLI's audit lines do not need bentoml
        index = None
    return f"w{index}" if index is not None else f"p{os.getpid()}"


class AuditLog:
    """Writes audit records; `record(**fields)` adds the time and writes one line."""

    def __init__(
        self,
        folder: Path | None,
        name: str,
        stdout: bool,
        max_bytes: int,
        backups: int,
        clock: Callable[[], float] = time.time,
    ):
        self.clock = clock
        self.stdout = stdout
        self.max_bytes = max_bytes
        self.backups = backups
        self.path: Path | None = None
        self._fd: int | None = None
        self._size = 0
        self._lock = threading.Lock()
        self._second: tuple[int, str] = (-1, "")  # (a second, its formatted time): one object, thread-safe
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.path = folder / f"{name}.jsonl"
            self._open()

    def _open(self) -> None:
        assert self.path is not None
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size

    def _rotate(self) -> None:
        """audit.jsonl → audit.jsonl.1 → … → audit.jsonl.<backups> (the oldest is dropped)."""
        assert self.path is not None and self._fd is not None
        os.close(self._fd)
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._open()

    def _time(self, now: float) -> str:
        """ISO-8601 UTC to the nearest millisecond; the part up to the second is formatted once per second."""
        second, millis = divmod(round(now * 1000), 1000)
        cached, stamp = self._second
        if second != cached:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, stamp)
        return f"{stamp}.{millis:03d}Z"

    def record(self, **fields: Any) -> None:
        fields = {"time": self._time(self.clock()), **fields}
        data = orjson.dumps(fields, default=str, option=orjson.OPT_APPEND_NEWLINE)
        with self._lock:
            if self._fd is not None:
                if self.max_bytes and self._size and self._size + len(data) > self.max_bytes:
                    self._rotate()
                os.write(self._fd, data)
                self._size += len(data)
        if self.stdout:
            sys.stdout.write(data.decode())
            sys.stdout.flush()

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def record_operator_action(
    settings: Settings, action: str, client: str = "cli", log_name: str = "audit-cli", **fields: Any
) -> None:
    """One audit line for an operator's command, or a change a server makes to itself (its own file,
    `log_name`.jsonl): who, what."""
    if not settings.audit:
        return
    log = AuditLog(
        settings.path("audit_dir"), log_name, False, settings.audit_max_bytes, settings.audit_backups
    )
    try:
        log.record(event="admin", action=action, subject=getpass.getuser(), client=client, **fields)
    finally:
        log.close()
