"""One retraining job at a time, and its state on disk for `textclf retrain --status` and the webhook.

The lock is an advisory `flock` on a file: the kernel drops it when its holder dies, however it dies
(SIGKILL included), so a killed job never blocks the next one. The state is one JSON file replaced
atomically; a state that says "running" while nobody holds the lock is a job that was killed, and is
reported as "interrupted".
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
LOCK_FILE = "lock"


class JobBusy(RuntimeError):
    """Another retraining job holds the lock."""


@contextmanager
def job_lock(folder: Path) -> Iterator[None]:
    """Hold the retraining lock for the block; JobBusy when another process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobBusy("a retraining job is already running") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


def lock_held(folder: Path) -> bool:
    """Whether some process holds the retraining lock now."""
    path = folder / LOCK_FILE
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def read_state(folder: Path) -> dict[str, Any]:
    """The last job's state ({"status": "idle"} before any); a dead "running" job reads "interrupted"."""
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"status": "idle"}
    if state.get("status") == "running" and not lock_held(folder):
        state = {**state, "status": "interrupted", "message": "the job ended without finishing (killed?)"}
    return state


def write_state(folder: Path, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into the state (with `updated`, unix time) and replace the file atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        state = {}
    state.update(fields, updated=time.time())
    tmp = folder / f".{STATE_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, folder / STATE_FILE)
    return state
