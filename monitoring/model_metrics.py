"""Model metrics on `/metrics`: what the model answered, what it was asked, how batches ran, and drift.

The model lanes only note each batch (an append); a thread of each worker turns the notes into metric
updates in bulk once a second (`ModelMetrics`): label children are resolved once (every label's
prediction counter exists from the start, at 0), counters are increased once per label per flush
(`np.bincount`), and histograms are filled with one increment per touched bucket (`observe_many`)
instead of one `observe` per value.

Like `monitoring.http_metrics`, the metrics are module globals: every worker writes its values to
BentoML's multi-process folder (`PROMETHEUS_MULTIPROC_DIR`, set before a worker imports anything) and
`/metrics` sums or picks them over all workers, as each metric's `multiprocess_mode` says. Gauges that
have no value until something happens (the drift check's results, estimated accuracy) are
created on first use, so a server that never checked drift shows them absent rather than at 0.

No label ever holds a text, a path, a subject or a request id: `label` is one of the model's labels,
`feature` one of the drift check's features, `kind` one of ERROR_KINDS.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from textclf.core.features import FEATURES, char_counts, token_counts

if TYPE_CHECKING:  # the drift check (scipy, whylogs) loads only where it runs
    from monitoring.drift import DriftReport

CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
CHARS_BUCKETS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048)
TOKENS_BUCKETS = (4, 8, 16, 32, 64, 128, 256, 512)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# Seconds. A request on an idle lane waits microseconds; a saturated server's queue, tenths to seconds.
QUEUE_WAIT_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
# Seconds per batch: the TF-IDF model runs a text in tens of microseconds, BERT a large batch in seconds.
BATCH_TIME_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
DRIFT_FEATURES = frozenset((*FEATURES, "model_outputs", "overall"))
ERROR_KINDS = ("write", "read", "corrupt", "reference", "check")
log = logging.getLogger(__name__)
# how often a worker's notes reach its Prometheus values (seconds): /metrics lags answers by at most this
FLUSH_S = 1.0
# observe_many: up to this many values, plain `observe` calls are cheaper than numpy's bucketing
# (multi-process mode, this machine: 1 value 2 µs vs 8 µs; 16 values 39 µs vs 16 µs; 256: 509 vs 18)
LOOP_UP_TO = 4

PREDICTIONS = Counter("textclf_predictions", "Answers given, by top label (abstained ones too).", ["label"])
ABSTAINED = Counter(
    "textclf_abstained",
    "Answers with no label: the top probability was below the model's abstention threshold.",
)
CONFIDENCE = Histogram(
    "textclf_prediction_confidence", "Top probability of each answer.", buckets=CONFIDENCE_BUCKETS
)
LOW_CONFIDENCE = Counter(
    "textclf_low_confidence", "Answers whose top probability is below TEXTCLF_LOW_CONFIDENCE."
)
INPUT_CHARS = Histogram("textclf_input_chars", "Characters per classified text.", buckets=CHARS_BUCKETS)
INPUT_TOKENS = Histogram(
    "textclf_input_tokens",
    "Model tokens per classified text (after truncation; words for models that take raw strings).",
    buckets=TOKENS_BUCKETS,
)
BATCH_SIZE = Histogram("textclf_batch_size", "Texts per model batch.", buckets=BATCH_BUCKETS)
QUEUE_WAIT = Histogram(
    "textclf_queue_wait_seconds",
    "Time a request waited for a free model lane.",
    buckets=QUEUE_WAIT_BUCKETS,
)
TOKENIZE = Histogram(
    "textclf_tokenize_seconds",
    "Time per model batch outside ONNX Runtime (tokenising, padding).",
    buckets=BATCH_TIME_BUCKETS,
)
INFERENCE = Histogram(
    "textclf_inference_seconds", "Time per model batch in ONNX Runtime.", buckets=BATCH_TIME_BUCKETS
)
MODEL_INFO = Gauge(
    "textclf_model_info",
    "The served model (always 1).",
    ["name", "version", "family", "precision"],
    multiprocess_mode="max",
)
DRIFT_P_VALUE = Gauge(
    "textclf_drift_p_value",
    "p-value of the last drift check, per feature, for the model's outputs together, and overall "
    "(Holm-adjusted).",
    ["feature"],
    multiprocess_mode="mostrecent",
)
DRIFT_DETECTED = Gauge(
    "textclf_drift_detected",
    "1 when the last drift check found drift (per feature, model outputs, overall), else 0.",
    ["feature"],
    multiprocess_mode="mostrecent",
)
# Live accuracy: Prometheus turns these counters into windowed accuracy and per-class recall summed over
# workers (recording rules job:textclf_live_accuracy:ratio_1h, job_label:textclf_live_recall:ratio_1h).
FEEDBACK_OUTCOMES = ("correct", "wrong", "unstated")
FEEDBACK = Counter(
    "textclf_feedback",
    "Feedback items stored, by true label and outcome: the answer the item says the server gave was "
    "correct or wrong, or the item did not say (unstated).",
    ["label", "outcome"],
)
PROFILE_DROPPED = Counter(
    "textclf_profile_dropped", "Texts whose features were not profiled: the profiler's queue was full."
)
PROFILE_ERRORS = Counter(
    "textclf_profile_errors",
    "Profiling and drift-check failures, by kind (write, read, corrupt, reference, check).",
    ["kind"],
)


class _LazyGauge:
    """An unlabelled gauge created on its first `set`: until then it is absent from `/metrics`
    (an unlabelled gauge shows 0 from its creation, which a rule would read as a real value)."""

    def __init__(self, name: str, documentation: str):
        self.name = name
        self.documentation = documentation
        self._gauge: Gauge | None = None
        self._lock = threading.Lock()

    def set(self, value: float) -> None:
        if self._gauge is None:
            with self._lock:
                if self._gauge is None:
                    self._gauge = Gauge(self.name, self.documentation, multiprocess_mode="mostrecent")
        self._gauge.set(value)

    def get(self) -> float | None:
        """The value this process set last (None before any); for tests."""
        return None if self._gauge is None else self._gauge._value.get()


DRIFT_WINDOW_TEXTS = _LazyGauge("textclf_drift_window_texts", "Texts in the last drift check's window.")
DRIFT_CHECK_TIME = _LazyGauge(
    "textclf_drift_check_timestamp_seconds", "Unix time of the last completed drift check."
)
ESTIMATED_ACCURACY = _LazyGauge(
    "textclf_estimated_accuracy",
    "Mean calibrated confidence over the drift window: the accuracy the model expects of itself.",
)


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """`histogram.observe(v)` for every value, at the cost of one increment per touched bucket.

    prometheus_client has no bulk observe; past LOOP_UP_TO values this fills the same bucket counters
    and sum that `observe` does, through its private attributes (tests/unit/test_model_metrics.py checks
    the two agree, so a prometheus_client upgrade that changes them fails there, not in production).
    NaN values are skipped."""
    values = np.asarray(values, dtype=np.float64)
    if values.size <= LOOP_UP_TO:  # measured: numpy's fixed cost outweighs a few plain observes
        for value in values.tolist():
            if value == value:  # not NaN
                histogram.observe(value)
        return
    values = values[~np.isnan(values)]
    bounds = histogram._upper_bounds  # the buckets' upper bounds, +Inf last
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for i in np.flatnonzero(counts):
        histogram._buckets[i].inc(float(counts[i]))
    histogram._sum.inc(float(values.sum()))


class ModelMetrics:
    """One worker's model metrics, created once with the served model's labels and info.

    The model lanes only note what happened (`note_batch`, `note_queue_wait`: one append to a deque,
    well under a microsecond); a background thread (`start`) moves the notes into the Prometheus metrics
    in bulk every `flush_s` seconds, and `stop` flushes the rest. Each update of a multi-process value
    costs about a microsecond (a lock and an mmap write) and a text needs several, so done per text on
    the lane they cost about 19 µs per single-text batch (README); in bulk, a handful per flush. The
    price: `/metrics` lags the answers by up to `flush_s`."""

    def __init__(
        self,
        labels: Sequence[str],
        *,
        name: str,
        version: str,
        family: str,
        precision: str,
        low_confidence: float,
        abstain_below: float | None = None,
        flush_s: float = FLUSH_S,
    ):
        self.labels = list(labels)
        self.low_confidence = low_confidence
        self.abstain_below = abstain_below  # the served model's; None: it never abstains
        self.flush_s = flush_s
        self._predictions = [PREDICTIONS.labels(label=label) for label in self.labels]  # every label at 0
        self._errors = {kind: PROFILE_ERRORS.labels(kind=kind) for kind in ERROR_KINDS}
        self._feedback = {  # every label and outcome at 0 from the start: increase() needs a first sample
            (label, outcome): FEEDBACK.labels(label=label, outcome=outcome)
            for label in self.labels
            for outcome in FEEDBACK_OUTCOMES
        }
        MODEL_INFO.labels(name=name, version=version, family=family, precision=precision).set(1)
        # (texts, probabilities, encodings, tokenize_s, inference_s) per batch; queue waits per batch
        self._batches: collections.deque[tuple[Sequence[str], np.ndarray, Sequence[Any] | None, float, float]]
        self._batches = collections.deque()
        self._waits: collections.deque[Sequence[float]] = collections.deque()
        self._flushing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def set_model(
        self,
        *,
        name: str,
        version: str,
        family: str,
        precision: str,
        previous: dict[str, str],
        abstain_below: float | None = None,
    ) -> None:
        """The served model changed: its info series at 1, the previous one's at 0 (max over workers: 1
        while any worker still serves it)."""
        self.abstain_below = abstain_below
        MODEL_INFO.labels(**previous).set(0)
        MODEL_INFO.labels(name=name, version=version, family=family, precision=precision).set(1)

    # -- the model lanes' side: append only
    def note_queue_wait(self, waits_s: Sequence[float]) -> None:
        """How long each request of a batch waited for its lane (the batcher's `on_batch` hook)."""
        self._waits.append(waits_s)

    def note_batch(
        self,
        texts: Sequence[str],
        probs: np.ndarray,
        encodings: Sequence[Any] | None,
        tokenize_s: float,
        inference_s: float,
    ) -> None:
        """One model batch: its texts (held until the next flush, never stored), their probabilities and
        encodings (None for models that take raw strings), and where its time went."""
        self._batches.append((texts, probs, encodings, tokenize_s, inference_s))

    # -- the flusher's side
    def start(self) -> ModelMetrics:
        self._thread = threading.Thread(target=self._run, name="textclf-metrics", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """End the thread and flush what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            try:
                self.flush()
            except Exception:  # a bug here must not end the metrics
                log.exception("model metrics: a flush failed; its notes are lost")

    def flush(self) -> None:
        """Move every note taken so far into the metrics."""
        with self._flushing:
            waits = _take(self._waits)
            if waits:
                observe_many(QUEUE_WAIT, np.fromiter(itertools.chain.from_iterable(waits), dtype=np.float64))
            batches = _take(self._batches)
            if not batches:
                return
            n = len(batches)
            observe_many(BATCH_SIZE, np.fromiter((len(b[0]) for b in batches), dtype=np.float64, count=n))
            observe_many(TOKENIZE, np.fromiter((b[3] for b in batches), dtype=np.float64, count=n))
            observe_many(INFERENCE, np.fromiter((b[4] for b in batches), dtype=np.float64, count=n))
            texts = [text for b in batches for text in b[0]]
            encodings = None if batches[0][2] is None else [e for b in batches for e in b[2] or ()]
            probs = np.concatenate([b[1] for b in batches])
            chars, tokens = char_counts(texts), token_counts(texts, encodings)
            self.observe_predictions(probs.argmax(axis=1), probs.max(axis=1), chars, tokens)

    def observe_predictions(
        self, predicted: np.ndarray, confidence: np.ndarray, chars: np.ndarray, tokens: np.ndarray
    ) -> None:
        """Answers (predicted label indices, top probabilities) and their texts' sizes, in bulk."""
        if self.abstain_below is not None:
            abstained = int(np.count_nonzero(confidence < self.abstain_below))
            if abstained:
                ABSTAINED.inc(abstained)
        counts = np.bincount(predicted, minlength=len(self._predictions))
        for i in np.flatnonzero(counts):
            self._predictions[i].inc(float(counts[i]))
        low = int(np.count_nonzero(confidence < self.low_confidence))
        if low:
            LOW_CONFIDENCE.inc(low)
        observe_many(CONFIDENCE, confidence)
        observe_many(INPUT_CHARS, chars)
        observe_many(INPUT_TOKENS, tokens)

    def count_dropped(self, texts: int) -> None:
        PROFILE_DROPPED.inc(texts)

    def count_error(self, kind: str, times: int = 1) -> None:
        """One more profiling or drift-check failure of `kind` (one of ERROR_KINDS)."""
        self._errors[kind].inc(times)

    def set_drift(self, report: DriftReport, now: float) -> None:
        """Publish a drift check's result (monitoring.drift) as of unix time `now`.

        Every feature, the model-outputs group and the overall verdict get a p-value (Holm-adjusted;
        NaN when the check gave none, e.g. too few texts) and a 0/1 verdict, so no value of an older
        check lingers. Names outside DRIFT_FEATURES are ignored: the label set stays bounded."""
        DRIFT_WINDOW_TEXTS.set(report.texts)
        if report.estimated_accuracy is not None:
            ESTIMATED_ACCURACY.set(report.estimated_accuracy)
        for name, (p_value, drifted) in report.gauges().items():
            if name in DRIFT_FEATURES:
                DRIFT_P_VALUE.labels(feature=name).set(math.nan if p_value is None else p_value)
                DRIFT_DETECTED.labels(feature=name).set(1.0 if drifted else 0.0)
        DRIFT_CHECK_TIME.set(now)

    def count_feedback(self, items: Sequence[tuple[str, str | None]]) -> None:
        """Stored feedback: (true label, the label the server answered or None) per item. True labels
        are the model's (the store refuses others); `predicted` is only compared, never a label value."""
        outcomes = collections.Counter(
            (label, "unstated" if predicted is None else "correct" if predicted == label else "wrong")
            for label, predicted in items
        )
        for (label, outcome), count in outcomes.items():
            self._feedback[label, outcome].inc(count)


def _take(notes: collections.deque) -> list:
    """Everything in `notes` now (lanes may append meanwhile: deque ends are thread-safe)."""
    return [notes.popleft() for _ in range(len(notes))]
