"""Off the model lanes: each worker's whylogs profiles of what it served, and the periodic drift check.

`Profiler` is one background thread per worker. A model lane hands it each batch (texts, probabilities,
encodings) with `offer`, which never blocks: the queue is bounded by texts (TEXTCLF_PROFILE_QUEUE) and a
batch that does not fit is dropped and counted (`textclf_profile_dropped_total`). The thread turns
batches into feature columns (textclf.core.features), logs them into whylogs in chunks (one whylogs call
costs milliseconds whatever its size, so it never runs per request), merges the chunks of one interval
(TEXTCLF_PROFILE_INTERVAL_S, aligned to the clock so every worker's files share start times) and writes
one file per worker and interval (monitoring.profiles). Texts stay in memory only until their features
are computed; no text is ever written. An interval without texts writes no file.

`DriftWatcher` is a second thread, in one worker only: every TEXTCLF_DRIFT_CHECK_S it merges the recent
profiles of every worker (TEXTCLF_DRIFT_WINDOW_S), tests them against the model's reference profile
(monitoring.drift) and publishes the result as gauges. It runs apart from the profiler so that a slow
check never fills the profiler's queue.

Failures are logged and counted (`textclf_profile_errors_total{kind}`), and the server lives on.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from monitoring.profiles import (
    DatasetProfileView,
    ProfileError,
    RollingWindow,
    merge_views,
    profile_columns,
    read_reference,
    view_from_bytes,
    write_profile,
)
from textclf.core.artifacts import ModelFiles
from textclf.core.contract import REFERENCE_FILE
from textclf.core.features import FEATURES, InputStats, text_features
from textclf.core.settings import Settings

if TYPE_CHECKING:
    from monitoring.drift import DriftReport

log = logging.getLogger(__name__)
# Texts logged into whylogs per call: its fixed cost (~8 ms here) spread over many texts (~6 µs each).
CHUNK_TEXTS = 4096
# The profiler's thread wakes at least this often (seconds) to take what is queued, and at once when
# the queue is half full.
DRAIN_S = 1.0
STOP_TIMEOUT_S = 30.0


class MetricsSink(Protocol):
    """Where the threads count what they lose and publish drift (monitoring.model_metrics.ModelMetrics)."""

    def count_dropped(self, texts: int) -> None: ...

    def count_error(self, kind: str, times: int = 1) -> None: ...

    def set_drift(self, report: DriftReport, now: float) -> None: ...


def worker_id() -> str:
    """This worker's name in profile file names: host and process id, unique across the pods and
    processes that may share one profiles folder."""
    host = re.sub(r"[^A-Za-z0-9_.+-]", "_", socket.gethostname()) or "host"
    return f"{host}.{os.getpid()}"


class Profiler:
    """One worker's rolling profiles (see the module docstring). `clock` gives unix time (tests inject
    one); `start()` runs the thread, or tests call `step()` / `flush()` themselves."""

    def __init__(
        self,
        folder: Path,
        *,
        labels: Sequence[str],
        stats: InputStats,
        model_version: str,
        worker: str,
        interval_s: float,
        max_queued: int,
        counts: MetricsSink | None = None,
        clock: Callable[[], float] = time.time,
        chunk_texts: int = CHUNK_TEXTS,
    ):
        self.folder = Path(folder)
        self.labels = list(labels)
        self.stats = stats
        self.model_version = model_version
        self.worker = worker
        self.interval_s = interval_s
        self.max_queued = max_queued
        self.counts = counts
        self.clock = clock
        self.chunk_texts = chunk_texts
        self.written: list[Path] = []  # files written so far (for tests and logs)
        self._lock = threading.Lock()
        self._items: collections.deque[tuple[Sequence[str], np.ndarray, Sequence[Any] | None]] = (
            collections.deque()
        )
        self._queued = 0
        self._wake_at = max(1, max_queued // 2)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._columns: list[dict[str, np.ndarray]] = []  # features not yet logged into whylogs
        self._column_texts = 0
        self._view: DatasetProfileView | None = None  # this interval's profile so far
        self._start = self._interval_start(clock())
        self._thread: threading.Thread | None = None

    # -- the model lane's side
    def offer(self, texts: Sequence[str], probs: np.ndarray, encodings: Sequence[Any] | None) -> bool:
        """Queue one batch for profiling; False (and counted) when the queue has no room. Never blocks."""
        n = len(texts)
        with self._lock:
            room = self._queued + n <= self.max_queued
            if room:
                self._items.append((texts, probs, encodings))
                self._queued += n
            wake = self._queued >= self._wake_at
        if not room and self.counts is not None:
            self.counts.count_dropped(n)
        if wake:
            self._wake.set()
        return room

    # -- the thread's side
    def start(self) -> Profiler:
        self._thread = threading.Thread(target=self._run, name="textclf-profiler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """End the thread after it has written what it holds (the current interval, however short)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(min(DRAIN_S, max(0.0, self._start + self.interval_s - self.clock())))
            self._wake.clear()
            self._guarded(self.step)
        self._guarded(self.flush)

    def _guarded(self, work: Callable[[], None]) -> None:
        """Run `work`; an unexpected failure loses that work (logged), never the thread."""
        try:
            work()
        except Exception:
            log.exception("profiler: unexpected failure; the features it held are lost")

    def step(self) -> None:
        """Take what is queued; once the interval is over, write it and start the next."""
        self._drain()
        now = self.clock()
        if now >= self._start + self.interval_s:
            self._write()
            self._start = self._interval_start(now)

    def flush(self) -> None:
        """Take what is queued and write the current interval now (at shutdown)."""
        self._drain()
        self._write()

    def _interval_start(self, now: float) -> float:
        return math.floor(now / self.interval_s) * self.interval_s

    def _drain(self) -> None:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._queued = 0
        if not items:
            return
        texts = [text for batch, _, _ in items for text in batch]
        probs = np.concatenate([p for _, p, _ in items])
        encodings = None if items[0][2] is None else [e for _, _, batch in items for e in batch or ()]
        del items
        self._columns.append(text_features(texts, probs, self.labels, self.stats, encodings))
        self._column_texts += len(texts)
        if self._column_texts >= self.chunk_texts:
            self._log_columns()

    def _log_columns(self) -> None:
        if not self._columns:
            return
        columns = {name: np.concatenate([c[name] for c in self._columns]) for name in FEATURES}
        self._columns, self._column_texts = [], 0
        self._view = merge_views([self._view, profile_columns(columns)])

    def _write(self) -> None:
        self._log_columns()
        view, self._view = self._view, None
        if view is None:
            return
        try:
            path = write_profile(
                view, self.folder, model_version=self.model_version, worker=self.worker, start=self._start
            )
        except (ProfileError, OSError) as exc:
            log.warning("profiler: this interval's profile is lost: %s", exc)
            if self.counts is not None:
                self.counts.count_error("write")
            return
        self.written.append(path)


ReferenceLoader = Callable[[], DatasetProfileView]


def reference_loader(model_folder: Path) -> ReferenceLoader:
    """Reads the model folder's reference profile (REFERENCE_FILE), plain or sealed; raises ProfileError
    when it has none or it cannot be read."""

    def load() -> DatasetProfileView:
        files = ModelFiles(model_folder)
        if not files.has(REFERENCE_FILE):
            raise ProfileError(f"the model folder has no {REFERENCE_FILE}: drift checks are off")
        plain = files.plain_path(REFERENCE_FILE)
        if plain is not None:
            return read_reference(plain)
        try:  # sealed: decrypted in memory only
            data = files.read(REFERENCE_FILE)
        except (OSError, ValueError) as exc:  # SealedDataError, DataKeyError are ValueErrors
            raise ProfileError(f"cannot read the sealed {REFERENCE_FILE}: {exc}") from None
        return view_from_bytes(data)

    return load


class DriftWatcher:
    """The periodic drift check of one worker (see the module docstring)."""

    def __init__(
        self,
        folder: Path,
        *,
        model_version: str,
        reference: ReferenceLoader,
        counts: MetricsSink,
        every_s: float,
        window_s: float,
        alpha: float,
        min_texts: int,
        clock: Callable[[], float] = time.time,
    ):
        self.folder = Path(folder)
        self.model_version = model_version
        self.load_reference = reference
        self.counts = counts
        self.every_s = every_s
        self.window_s = window_s
        self.alpha = alpha
        self.min_texts = min_texts
        self.clock = clock
        self._reference: DatasetProfileView | None = None
        self._no_reference = False
        self._window = RollingWindow(self.folder, model_version)  # each profile file is read once
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> DriftWatcher:
        self._thread = threading.Thread(target=self._run, name="textclf-drift", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s) and not self._no_reference:
            try:
                self.check()
            except Exception:  # a bug in a check must not end the checks
                log.exception("drift check: unexpected failure")
                self.counts.count_error("check")

    def check(self) -> DriftReport | None:
        """One check; publishes and returns its report, or None when it could not run (counted)."""
        reference = self._reference_view()
        if reference is None:
            return None
        from monitoring.drift import check_drift  # scipy and whylogs' drift code: only where checks run

        now = self.clock()
        try:
            window = self._window.read(since=now - self.window_s)
        except (ProfileError, OSError) as exc:
            log.warning("drift check: cannot read the profiles: %s", exc)
            self.counts.count_error("read")
            return None
        if window.problems:
            log.warning(
                "drift check: %d profile(s) skipped, e.g. %s", len(window.problems), window.problems[0]
            )
            self.counts.count_error("corrupt", len(window.problems))
        try:
            report = check_drift(window.view, reference, alpha=self.alpha, min_texts=self.min_texts)
        except Exception as exc:  # DriftError (a reference of another model, ...) or whylogs failing
            log.warning("drift check failed: %s", exc)
            self.counts.count_error("check")
            return None
        self.counts.set_drift(report, now)
        return report

    def _reference_view(self) -> DatasetProfileView | None:
        if self._reference is None and not self._no_reference:
            try:
                self._reference = self.load_reference()
            except (ProfileError, OSError) as exc:
                self._no_reference = True
                log.warning("drift check: no usable reference profile, no drift checks: %s", exc)
                self.counts.count_error("reference")
        return self._reference


def start_monitoring(
    settings: Settings,
    *,
    labels: Sequence[str],
    stats: InputStats,
    model_folder: Path,
    model_version: str,
    metrics: MetricsSink | None,
    drift_checks: bool,
) -> tuple[Profiler, DriftWatcher | None]:
    """A started profiler, and a started drift watcher where `drift_checks` (one worker of the server)
    and the settings ask for one (TEXTCLF_DRIFT_CHECK_S > 0) and there are metrics to publish to."""
    folder = settings.path("profiles_dir")
    profiler = Profiler(
        folder,
        labels=labels,
        stats=stats,
        model_version=model_version,
        worker=worker_id(),
        interval_s=settings.profile_interval_s,
        max_queued=settings.profile_queue,
        counts=metrics,
    ).start()
    watcher = None
    if drift_checks and settings.drift_check_s > 0 and metrics is not None:
        watcher = DriftWatcher(
            folder,
            model_version=model_version,
            reference=reference_loader(model_folder),
            counts=metrics,
            every_s=settings.drift_check_s,
            window_s=settings.drift_window_s,
            alpha=settings.drift_alpha,
            min_texts=settings.drift_min_texts,
        ).start()
    return profiler, watcher
