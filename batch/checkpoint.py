"""A batch run's progress on disk, so `--resume` can continue a run that died.

Beside OUTPUT live `.OUTPUT.part` (the rows written so far) and `.OUTPUT.checkpoint.json`: the input
byte offset and line count after the last row the partial output holds for sure (it was fsynced
first), its size in bytes, and what the rows depend on (the input file, the served model, the
options). A resume truncates the partial to that size and seeks the input to that offset; it is
refused when any of those dependencies changed, since the output would then mix two runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from batch.outcome import BatchError
from textclf.core.records import Position

SCHEMA = 1
EDGE_BYTES = 64 * 1024  # the input's fingerprint hashes its first and last 64 KiB
# the same model answering the same probe texts alone agrees far closer than this (batched with other
# texts, an int8 model's scores can move by tenths: batch.requests.PROBE_TRIES)
PROBE_SCORE_TOLERANCE = 1e-3


def partial_path(output: Path) -> Path:
    """Where the rows go until the run is complete (same folder: the final rename is atomic)."""
    return output.with_name(f".{output.name}.part")


def checkpoint_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.checkpoint.json")


def input_identity(path: Path) -> dict[str, Any]:
    """Path, size, mtime and a hash of the first and last 64 KiB: cheap on a 10 GB file, and it
    changes when the file is replaced, appended to or edited at either end."""
    stat = path.stat()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        digest.update(handle.read(EDGE_BYTES))
        if stat.st_size > EDGE_BYTES:
            handle.seek(max(EDGE_BYTES, stat.st_size - EDGE_BYTES))
            digest.update(handle.read(EDGE_BYTES))
    return {
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "edges_sha256": digest.hexdigest(),
    }


@dataclass
class Checkpoint:
    """What a resume needs; `position` and `output_bytes` describe the same moment of the run."""

    input: dict[str, Any]
    model: dict[str, Any]
    options: dict[str, Any]
    spec: dict[str, Any]  # the first pass's result (kind, columns, rows): a resume does not rescan
    position: Position = field(default_factory=Position)
    rows_written: int = 0
    output_bytes: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # failed_rows, refused_chunks, retried
    schema: int = SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1)


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Write atomically: a temporary file beside it, fsynced, renamed over, and the folder fsynced,
    so a crash leaves the old checkpoint or the new one, never half of one."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(checkpoint.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(path: Path) -> Checkpoint:
    """Read a checkpoint; anything unreadable or incomplete is a BatchError saying how to go on."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ValueError(f"not a schema {SCHEMA} checkpoint")
        position = Position(int(data["position"]["offset"]), int(data["position"]["lines"]))
        checkpoint = Checkpoint(
            input=dict(data["input"]),
            model=dict(data["model"]),
            options=dict(data["options"]),
            spec=dict(data["spec"]),
            position=position,
            rows_written=int(data["rows_written"]),
            output_bytes=int(data["output_bytes"]),
            counts={k: int(v) for k, v in dict(data.get("counts") or {}).items()},
        )
        if min(position.offset, position.lines, checkpoint.rows_written, checkpoint.output_bytes) < 0:
            raise ValueError("negative offsets")
        list(checkpoint.spec["columns"]), int(checkpoint.spec["rows"]), str(checkpoint.spec["kind"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        raise BatchError(
            f"checkpoint {path} is unreadable ({reason}): its progress cannot be trusted; pass --overwrite "
            "(without --resume) to discard it and start afresh"
        ) from None
    return checkpoint


def refusal(saved: Checkpoint, identity: dict[str, Any], options: dict[str, Any]) -> str | None:
    """Why the checkpoint does not belong to this input and these options (None when it does)."""
    was, now = saved.input, identity
    if was.get("path") != now["path"]:
        return f"it is for input {was.get('path')}, not {now['path']}"
    if was.get("size") != now["size"]:
        return f"the input changed since: it had {was.get('size')} bytes, now {now['size']}"
    if was.get("edges_sha256") != now["edges_sha256"] or was.get("mtime_ns") != now["mtime_ns"]:
        return "the input changed since (its content or modification time differ)"
    changed = [
        f"{name} was {saved.options.get(name)!r}, now {value!r}"
        for name, value in options.items()
        if saved.options.get(name) != value
    ]
    if changed:
        return "options that change the output differ: " + "; ".join(changed)
    return None


def same_answers(was: list[list[Any]], new: list[list[Any]]) -> bool:
    """Whether two answers to the same probe texts agree: labels exactly, scores within
    PROBE_SCORE_TOLERANCE."""
    return len(was) == len(new) and all(
        a[0] == b[0] and math.isclose(a[1], b[1], abs_tol=PROBE_SCORE_TOLERANCE)
        for a, b in zip(was, new, strict=True)
    )


def model_unverifiable(saved: dict[str, Any], now: dict[str, Any]) -> str | None:
    """Why the served model cannot be told apart from the saved rows' one at all (None when it can): no
    version on one side, and probe answers that kept changing (batch.requests.PROBE_TRIES) on one."""
    if saved.get("version") and now.get("version"):
        return None
    if not saved.get("probe_unstable") and not now.get("probe_unstable"):
        return None
    return (
        "whether the server still serves the same model cannot be told: its version could not be read "
        "(the token lacks the model:read scope) and its answers to the probe texts kept changing (other "
        "requests batched with them on an int8 model); a token with model:read makes the check exact"
    )


def model_refusal(saved: dict[str, Any], now: dict[str, Any]) -> str | None:
    """Why the served model is not the one the saved rows came from (None when it is the same).

    The version from GET /model decides when both runs could read it; otherwise the answers to the
    same probe texts (labels exactly, scores within PROBE_SCORE_TOLERANCE) stand in for it."""
    if saved.get("version") and now.get("version"):
        if (saved.get("name"), saved["version"]) != (now.get("name"), now["version"]):
            return (
                f"the server now serves {now.get('name')} version {now['version']}, but the rows written "
                f"so far came from {saved.get('name')} version {saved['version']}"
            )
        return None
    if not same_answers(saved.get("probe") or [], now.get("probe") or []):
        return (
            "the server's model answers the same probe texts differently than when the rows written so far "
            "were classified (its version could not be read: the token lacks the model:read scope)"
        )
    return None
