"""Following the served-model file (textclf.core.served_model) in a running worker: a new champion is
loaded and checked off the request path and then swapped in at once, a challenger runs in the shadow lane.

The swap is one attribute assignment the model lanes read per batch, so no request is dropped or
delayed by it: batches already running finish on the old model, the next one runs on the new. A model
that fails its checks (bentos.served) is refused with an audit line and a metric, and the old one keeps
serving; the same tag is not tried again until the file changes. Once the old model's last batch is
done its ONNX Runtime session is freed and the allocator is asked to give the memory back.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from bentos.served import ModelRefused, Served, load_served
from bentos.shadow import ShadowLane
from monitoring import lifecycle_metrics as m
from textclf.core.served_model import ServedModel, ServedModelError, read_served_model

log = logging.getLogger(__name__)
Audit = Callable[..., None]


class Lifecycle:
    """Watches the served-model file every `every_s` seconds (a thread) and acts on changes."""

    def __init__(
        self,
        path: Path,
        *,
        champion: Served,
        pinned: bool,
        every_s: float,
        shadow_fraction: float,
        shadow_queue: int,
        on_switch: Callable[[Served], None],
        audit: Audit,
    ):
        self.path = path
        self.champion_tag = champion.tag
        self.labels = list(champion.classifier.labels)
        self.pinned = pinned
        self.every_s = every_s
        self.shadow_fraction = shadow_fraction
        self.shadow_queue = shadow_queue
        self.on_switch = on_switch
        self.audit = audit
        self.challenger_tag: str | None = None
        self.shadow: ShadowLane | None = None
        self._seen: tuple[int, int, int] | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one check at a time (the thread, or a test calling check())
        self._thread: threading.Thread | None = None
        m.start_counting()

    def start(self) -> Lifecycle:
        self.check()  # a challenger named before the server started is shadowed from the start
        if self.every_s > 0:
            self._thread = threading.Thread(target=self._run, name="textclf-lifecycle", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self.shadow is not None:
            self.shadow.stop()
            self.shadow = None

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.check()
            except Exception:  # a bug here must not end the watching
                log.exception("served-model file: the check failed")

    def check(self) -> None:
        """Act on the file if it changed since the last look."""
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                return
            seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if seen == self._seen:
                return
            self._seen = seen
            try:
                wanted = read_served_model(self.path)
            except ServedModelError as exc:
                log.error("%s; serving %s as before", exc, self.champion_tag)
                return
            if wanted is not None:
                self._follow(wanted)

    def _follow(self, wanted: ServedModel) -> None:
        if not self.pinned and wanted.champion != self.champion_tag:
            self._switch_champion(wanted.champion)
        challenger = wanted.challenger if wanted.challenger != self.champion_tag else None
        if challenger != self.challenger_tag:
            self._switch_challenger(challenger)

    def _switch_champion(self, tag: str) -> None:
        old = self.champion_tag
        self.champion_tag = tag  # refused or not, the same tag is not tried again
        started = time.perf_counter()
        try:
            new = load_served(tag, labels=self.labels)
        except ModelRefused as exc:
            m.MODEL_SWITCHES.labels(outcome="refused").inc()
            self.audit(action="model-refused", model=tag, serving=old, reason=str(exc))
            log.error("not switching to %s: %s; %s keeps serving", tag, exc, old)
            return
        self.on_switch(new)
        m.MODEL_SWITCHES.labels(outcome="switched").inc()
        load_s = round(time.perf_counter() - started, 3)
        self.audit(action="model-switched", model=tag, previous=old, load_s=load_s)
        log.info("now serving %s (was %s)", tag, old)

    def _switch_challenger(self, tag: str | None) -> None:
        old, self.shadow = self.shadow, None
        self.challenger_tag = tag
        if old is not None:
            old.stop()
            gone = weakref.ref(old.challenger)
            del old
            wait_released(gone)
        if tag is None or self.shadow_fraction <= 0:
            return
        try:
            served = load_served(tag, labels=self.labels)
        except ModelRefused as exc:
            self.audit(action="shadow-refused", model=tag, reason=str(exc))
            log.error("not shadowing %s: %s", tag, exc)
            return
        self.shadow = ShadowLane(
            served.classifier,
            name=served.info.name,
            version=served.info.version,
            fraction=self.shadow_fraction,
            max_queued=self.shadow_queue,
        ).start()
        self.audit(action="shadow-started", model=tag, fraction=self.shadow_fraction)


def wait_released(ref: weakref.ref, timeout_s: float = 30.0) -> bool:
    """Wait until nobody holds the model `ref` points at (the caller has dropped its own references; a
    batch still running on it finishes first), collect it, and ask glibc to return freed memory to the
    OS. True once it is gone."""
    frozen = gc.get_freeze_count() > 0
    if frozen:  # the old model was frozen with the heap it started with (freeze_heap): collectable again
        gc.unfreeze()
    deadline = time.monotonic() + timeout_s
    while ref() is not None and time.monotonic() < deadline:
        gc.collect()
        if ref() is not None:
            time.sleep(0.05)
    gc.collect()
    if frozen:  # the new model joins the frozen heap
        gc.freeze()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: memory is reused, not returned
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return ref() is None


def freeze_heap() -> None:
    """Exempt everything alive once a worker has started (the framework, the model and its tokenizer)
    from the cyclic garbage collector, so each collection walks only what requests allocate, not the
    whole heap. Profiled under wrk, collections that walked it were among the largest items on the event
    loop, and the full ones stalled requests (the p99). A model switch thaws it (wait_released)."""
    gc.collect()
    gc.freeze()
