"""The shadow lane: the challenger runs on a share of live texts beside the champion, off the response path.

The champion's model lane offers each batch after its answers are computed; a random share of the texts
(TEXTCLF_SHADOW_FRACTION) goes into a bounded queue with the champion's labels, and the shadow thread runs
the challenger on them. The offer never waits: when the queue is full the texts are skipped and counted,
so a client's latency and answer never depend on the challenger. Labelled feedback goes the same way,
run on both models, so their accuracy on it can be compared on the same texts.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Sequence

import numpy as np

from monitoring import lifecycle_metrics as m
from textclf.core.runtime import OnnxClassifier

log = logging.getLogger(__name__)
Work = tuple[str, list[str], list[str], OnnxClassifier | None]  # kind, texts, labels, champion (feedback)


class ShadowLane:
    """One thread running the challenger on mirrored texts and on labelled feedback."""

    def __init__(
        self,
        challenger: OnnxClassifier,
        *,
        name: str,
        version: str,
        fraction: float,
        max_queued: int,
        rng: random.Random | None = None,
    ):
        self.challenger = challenger
        self.name, self.version = name, version
        self.fraction = fraction
        self._rng = rng or random.Random()
        self._queue: queue.Queue[Work | None] = queue.Queue(max_queued)
        self._thread = threading.Thread(target=self._run, name="textclf-shadow", daemon=True)

    def start(self) -> ShadowLane:
        m.SHADOW_INFO.labels(name=self.name, version=self.version).set(1)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """End the thread once what is queued is done; the challenger is then no longer referenced here."""
        self._put(None, 0)
        self._thread.join(timeout_s)
        m.SHADOW_INFO.labels(name=self.name, version=self.version).set(0)

    # -- the model lanes' and the feedback route's side: never wait
    def offer(self, texts: Sequence[str], labels: Sequence[str]) -> None:
        """A champion batch: its texts and answers; a random share is mirrored."""
        rand = self._rng.random
        chosen = [i for i in range(len(texts)) if rand() < self.fraction]
        if chosen:
            self._put(("live", [texts[i] for i in chosen], [labels[i] for i in chosen], None), len(chosen))

    def offer_feedback(self, texts: Sequence[str], labels: Sequence[str], champion: OnnxClassifier) -> None:
        """Labelled texts, to be run on both models."""
        self._put(("feedback", list(texts), list(labels), champion), len(texts))

    def _put(self, item: Work | None, texts: int) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            if item is None:  # stopping: wait for room, the lane is draining
                self._queue.put(item)
            else:
                m.SHADOW_TEXTS.labels(outcome="skipped").inc(texts)

    # -- the shadow thread
    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            self._handle(*item)
            # a feedback job holds the champion: it must not outlive its run while the lane waits for the
            # next job, or a model switch waits in vain for the old champion to be freed
            item = None

    def _handle(
        self, kind: str, texts: list[str], labels: list[str], champion: OnnxClassifier | None
    ) -> None:
        try:
            probs = self.challenger.predict_proba(texts)
            answers = [self.challenger.labels[i] for i in probs.argmax(axis=1)]
            if kind == "live":
                agree = sum(a == b for a, b in zip(answers, labels, strict=True))
                m.SHADOW_TEXTS.labels(outcome="agree").inc(agree)
                m.SHADOW_TEXTS.labels(outcome="disagree").inc(len(texts) - agree)
                for value in probs.max(axis=1).tolist():
                    m.SHADOW_CONFIDENCE.observe(value)
            else:
                assert champion is not None
                theirs = champion.predict_proba(texts)
                _count_feedback("challenger", answers, labels)
                ours = [champion.labels[i] for i in np.argmax(theirs, axis=1)]
                _count_feedback("champion", ours, labels)
        except Exception:  # the challenger must never take the server down
            log.exception("shadow lane: the challenger failed on %d text(s)", len(texts))


def _count_feedback(model: str, answers: list[str], truth: list[str]) -> None:
    right = sum(a == b for a, b in zip(answers, truth, strict=True))
    m.SHADOW_FEEDBACK.labels(model=model, outcome="correct").inc(right)
    m.SHADOW_FEEDBACK.labels(model=model, outcome="wrong").inc(len(truth) - right)
