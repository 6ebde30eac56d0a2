"""The partial output of a run: locked while written, checkpointed now and then, renamed when done.

Only one run may write a given OUTPUT at a time (an exclusive lock on `.OUTPUT.part`), and only
rows fsynced to the partial are ever recorded in the checkpoint, so after any crash the checkpoint
describes a prefix the partial really holds; a resume cuts off whatever was written after it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from batch.checkpoint import Checkpoint, checkpoint_path, fsync_folder, partial_path, save
from batch.outcome import BatchError


class PartialOutput:
    """`.OUTPUT.part` and `.OUTPUT.checkpoint.json` of one run; `handle` takes the rows (text)."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.path = partial_path(output)
        self.checkpoint_file = checkpoint_path(output)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # no truncation before the lock is ours
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BatchError(f"another predict-batch run is writing {output} right now") from None
        self.handle: IO[str] = os.fdopen(fd, "w", encoding="utf-8", newline="")
        self.saved = False  # whether a checkpoint of this run (or the one it resumes) is on disk

    def start(self, keep_bytes: int) -> None:
        """Keep the first `keep_bytes` (a resume: what the checkpoint vouches for) and append after."""
        size = os.fstat(self.handle.fileno()).st_size
        if size < keep_bytes:
            raise BatchError(
                f"the partial output {self.path} holds {size} bytes but its checkpoint counts {keep_bytes}: "
                "it was changed outside this run; pass --overwrite (without --resume) to start afresh"
            )
        self.handle.truncate(keep_bytes)
        self.handle.seek(keep_bytes)
        self.saved = keep_bytes > 0 or self.checkpoint_file.exists()

    def discard_checkpoint(self) -> None:
        self.checkpoint_file.unlink(missing_ok=True)

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        """fsync the rows, then record them: the checkpoint never counts a row the disk may lack."""
        self.handle.flush()
        os.fsync(self.handle.fileno())
        checkpoint.output_bytes = os.fstat(self.handle.fileno()).st_size
        save(self.checkpoint_file, checkpoint)
        self.saved = True

    def finish(self) -> None:
        """Every row is there: make it durable, rename it onto OUTPUT, then drop the checkpoint."""
        self.handle.flush()
        os.fsync(self.handle.fileno())
        os.replace(self.path, self.output)
        fsync_folder(self.output.parent)
        self.handle.close()
        self.discard_checkpoint()

    def close(self) -> None:
        """End of a run that did not finish: keep the partial for --resume if a checkpoint vouches for
        some of it, else remove it (nothing of it could ever be used)."""
        if self.handle.closed:
            return
        if not self.saved:
            self.path.unlink(missing_ok=True)
        self.handle.close()
