"""whylogs profiles of the derived features: log a batch, merge, write one file per worker and interval,
read back the window a drift check looks at, and the model's reference profile.

Only this module touches pandas and whylogs' logging API, so the rest of the code passes plain columns
(textclf.core.features) and opaque views around. Profile files are laid out as
`<folder>/<model_version>/<int(start)>-<worker>.bin`: the model version keeps one model's traffic from
being compared with another model's reference, and the start time in the name lets `read_window` pick a
time window without opening a file. Every write goes to a hidden temporary file first and is renamed into
place, so a reader never sees half a profile; a file that is damaged anyway (disk full, a copy cut short)
is skipped with a problem string instead of failing the whole window.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from textclf.core.offline import go_offline

go_offline()  # whylogs reads WHYLOGS_NO_ANALYTICS when it is imported

import pandas as pd  # noqa: E402
import whylogs as why  # noqa: E402
from whylogs.core import DatasetProfileView  # noqa: E402

PROFILE_SUFFIX = ".bin"
# a path component we are willing to create: no separators, no "..", nothing hidden
_SAFE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
_FILE_NAME = re.compile(r"^(?P<start>\d+)-(?P<worker>[A-Za-z0-9_.+-]+)\.bin$")


class ProfileError(ValueError):
    """An input a profile cannot be written to or read from (not a folder, not writable, not a profile)."""


@dataclass(frozen=True)
class Window:
    """What `read_window` found: the merged view (None when there was nothing), how many files went into
    it, how many texts it counts, and one line per file that had to be skipped."""

    view: DatasetProfileView | None
    files: int
    texts: int
    problems: list[str] = field(default_factory=list)


def profile_columns(columns: Mapping[str, np.ndarray]) -> DatasetProfileView:
    """Profile one batch of feature columns (equal lengths). Numeric columns are logged as float64 (NaN is
    counted as missing, so a model without vocabulary has an all-NaN `oov_rate` and an empty distribution);
    anything else is logged as Python objects, because whylogs 1.6.4 cannot type pandas' string dtype."""
    if not columns:
        raise ProfileError("no feature columns to profile")
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ProfileError(f"feature columns of different lengths: {lengths}")
    frame = pd.DataFrame({name: _series(np.asarray(values)) for name, values in columns.items()})
    return why.log(frame).view()


def _series(values: np.ndarray) -> pd.Series:
    if values.dtype.kind in "biuf":
        return pd.Series(values.astype(np.float64, copy=False))
    return pd.Series(values.astype(object), dtype=object)


def merge_views(views: Iterable[DatasetProfileView | None]) -> DatasetProfileView | None:
    """One view of many (whylogs sketches merge exactly for counts, approximately for quantiles); None
    when there is nothing to merge."""
    merged: DatasetProfileView | None = None
    for view in views:
        if view is None:
            continue
        merged = view if merged is None else merged.merge(view)
    return merged


def view_texts(view: DatasetProfileView | None) -> int:
    """The number of texts a view counts: every feature column counts every text (NaN included), so the
    largest column count is the number of rows logged."""
    if view is None:
        return 0
    counts = [column.get_metric("counts") for column in view.get_columns().values()]
    return max((int(c.n.value) for c in counts if c is not None), default=0)


def write_profile(
    view: DatasetProfileView, folder: Path, *, model_version: str, worker: str, start: float
) -> Path:
    """Write one interval's view to `<folder>/<model_version>/<int(start)>-<worker>.bin`, atomically."""
    _check_part("model version", model_version)
    _check_part("worker", worker)
    if not math.isfinite(start) or start < 0:
        raise ProfileError(f"start must be a unix time, got {start!r}")
    target = Path(folder) / model_version / f"{int(start)}-{worker}{PROFILE_SUFFIX}"
    _write_atomic(view, target)
    return target


def read_window(
    folder: Path, *, model_version: str, since: float | None, until: float | None = None
) -> Window:
    """Merge the profiles of one model version whose start time (from the file name) lies in
    [since, until). A folder that does not exist yet is an empty window; a file that cannot be read is
    skipped and named in `problems`. (A check that runs again and again keeps a `RollingWindow`.)"""
    return RollingWindow(folder, model_version).read(since, until)


Signature = tuple[int, int]  # a profile file's (mtime_ns, size): a replaced file has another


@dataclass
class _Interval:
    """The files of one start time merged so far, and what they were when read."""

    files: dict[str, Signature] = field(default_factory=dict)
    view: DatasetProfileView | None = None


class RollingWindow:
    """The profiles of one model version in a window that moves forward, read incrementally: the drift
    check runs every minute over the last hour, and reading every file each time would cost one read per
    worker and interval per check (960 files with 16 workers and an hour of one-minute intervals). Here a
    profile file is read once, merged into its interval's view, and a check merges one view per interval.
    Profile files are written once, atomically; one that is replaced or removed anyway (a copy, a cleanup)
    has its interval read again. Damaged files are not kept: they are named in `problems` at every read."""

    def __init__(self, folder: Path, model_version: str):
        _check_part("model version", model_version)
        self.folder = Path(folder)
        self.model_version = model_version
        self.reads = 0  # profile files read from disk so far
        self._intervals: dict[int, _Interval] = {}

    def read(self, since: float | None, until: float | None = None) -> Window:
        """The window [since, until): new files are read, intervals before `since` are forgotten."""
        found, problems = self._list(since, until)
        kept: dict[int, _Interval] = {}
        for start, files in sorted(found.items()):
            interval = self._intervals.get(start)
            if interval is None or any(files.get(name) != sig for name, sig in interval.files.items()):
                interval = _Interval()  # new, or a file it holds was replaced or removed: read it afresh
            for name, sig in files.items():
                if name in interval.files:
                    continue
                try:
                    view = _read_view(self.folder / self.model_version / name)
                except ProfileError as exc:
                    problems.append(f"{name}: {exc}")
                    continue
                finally:
                    self.reads += 1
                interval.view = merge_views([interval.view, view])
                interval.files[name] = sig
            kept[start] = interval
        self._intervals = kept
        merged = merge_views(interval.view for interval in kept.values())
        files = sum(len(interval.files) for interval in kept.values())
        return Window(view=merged, files=files, texts=view_texts(merged), problems=problems)

    def _list(
        self, since: float | None, until: float | None
    ) -> tuple[dict[int, dict[str, Signature]], list[str]]:
        """The profile files in [since, until) by start time, with their signatures; bad names as problems."""
        base = self.folder
        if base.exists() and not base.is_dir():
            raise ProfileError(f"profiles folder {base} is not a folder")
        versioned = base / self.model_version
        found: dict[int, dict[str, Signature]] = {}
        problems: list[str] = []
        if not versioned.is_dir():
            return found, problems
        low = None if since is None else math.floor(since)
        try:
            entries = sorted(os.scandir(versioned), key=lambda entry: entry.name)
        except OSError as exc:
            raise ProfileError(f"cannot list {versioned}: {exc.strerror or exc}") from None
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not name.endswith(PROFILE_SUFFIX):
                continue  # temporary files of writers still at work, and anything that is not ours
            match = _FILE_NAME.match(name)
            if match is None:
                problems.append(f"{name}: not a profile file name (<start>-<worker>.bin)")
                continue
            start = int(match["start"])
            if (low is not None and start < low) or (until is not None and start >= until):
                continue
            try:
                stat = entry.stat()
            except OSError as exc:  # removed since the listing
                problems.append(f"{name}: cannot read it: {exc.strerror or exc}")
                continue
            found.setdefault(start, {})[name] = (stat.st_mtime_ns, stat.st_size)
        return found, problems


def read_reference(path: Path) -> DatasetProfileView:
    """The reference profile a model folder ships (textclf.core.contract.REFERENCE_FILE)."""
    return _read_view(Path(path))


def write_reference(view: DatasetProfileView, path: Path) -> None:
    """Write a reference profile (atomically, like every profile)."""
    _write_atomic(view, Path(path))


def view_from_bytes(data: bytes) -> DatasetProfileView:
    """A view from serialized bytes (e.g. a sealed reference decrypted in memory); ProfileError when they
    are not a whole whylogs profile."""
    if not data:
        raise ProfileError("empty file")
    try:
        return DatasetProfileView.deserialize(data)
    except Exception as exc:  # whylogs raises DeserializationError, OSError, protobuf errors, ...
        raise ProfileError(f"not a readable whylogs profile ({type(exc).__name__})") from None


def _read_view(path: Path) -> DatasetProfileView:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ProfileError(f"no profile at {path}") from None
    except IsADirectoryError:
        raise ProfileError(f"{path} is a folder, not a profile") from None
    except OSError as exc:
        raise ProfileError(f"cannot read {path}: {exc.strerror or exc}") from None
    return view_from_bytes(data)


def _write_atomic(view: DatasetProfileView, target: Path) -> None:
    try:
        data = view.serialize()
    except Exception as exc:
        raise ProfileError(f"cannot serialize the profile: {exc}") from exc
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise ProfileError(f"cannot write profiles to {target.parent}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ProfileError(f"cannot write {target}: {exc.strerror or exc}") from None


def _check_part(what: str, value: str) -> None:
    if not isinstance(value, str) or not _SAFE_PART.match(value) or ".." in value:
        raise ProfileError(f"{what} {value!r} cannot be a file name (letters, digits, _ . + - only)")


__all__ = [
    "DatasetProfileView",
    "ProfileError",
    "RollingWindow",
    "Window",
    "merge_views",
    "profile_columns",
    "read_reference",
    "read_window",
    "view_from_bytes",
    "view_texts",
    "write_profile",
    "write_reference",
]
