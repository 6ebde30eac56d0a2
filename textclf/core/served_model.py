"""The served-model file: which BentoML store tags serve as champion and challenger, for servers to follow.

`textclf retrain` names a new challenger here, `textclf promote` and `rollback` a new champion; every
server worker that follows it (TEXTCLF_FOLLOW, no TEXTCLF_MODEL pinned) looks at it every few seconds
and switches models without a restart. The file is replaced atomically (write, fsync, rename), so a
reader sees the old content or the new, never half of it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

FILE_NAME = "served-model.json"


class ServedModelError(ValueError):
    """The served-model file exists but cannot be read as one."""


@dataclass(frozen=True)
class ServedModel:
    champion: str  # BentoML store tag, e.g. textclf-logreg:0123abcd
    challenger: str | None = None
    updated: float = 0.0  # unix time
    by: str = ""  # which command wrote it


def read_served_model(path: Path) -> ServedModel | None:
    """The file's content, or None when there is no file."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ServedModelError(f"{path}: not a served-model file ({exc})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("champion"), str) or not raw["champion"]:
        raise ServedModelError(f"{path}: no champion tag")
    challenger = raw.get("challenger")
    return ServedModel(
        champion=raw["champion"],
        challenger=challenger if isinstance(challenger, str) and challenger else None,
        updated=float(raw.get("updated") or 0.0),
        by=str(raw.get("by") or ""),
    )


def write_served_model(path: Path, champion: str, challenger: str | None, by: str) -> ServedModel:
    """Replace the file atomically with the given tags."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    served = ServedModel(champion=champion, challenger=challenger, updated=time.time(), by=by)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(asdict(served), handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return served
