"""Model metrics (monitoring.model_metrics): exact counts per label, histograms equal to plain `observe`,
drift gauges from a real DriftReport, the multi-process modes, and the batcher's queue-wait hook."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from bentos.batcher import GreedyBatcher
from monitoring.drift import DriftReport, FeatureDrift, GroupDrift
from monitoring.model_metrics import (
    CONFIDENCE_BUCKETS,
    DRIFT_CHECK_TIME,
    LOOP_UP_TO,
    ModelMetrics,
    _LazyGauge,
    observe_many,
)
from tests.helpers import wait_for
from textclf.core.features import FEATURES

REPO = Path(__file__).resolve().parents[2]
LABELS = ["card_arrival", "refund", "pin_blocked"]
WAIT_S = 30  # a deadline for what happens at once when the code works


def value(metric: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric, labels) or 0.0


def metrics(low_confidence: float = 0.5) -> ModelMetrics:
    return ModelMetrics(
        LABELS, name="m", version="v1", family="logreg", precision="fp32", low_confidence=low_confidence
    )


def buckets_of(histogram: Histogram) -> list[float]:
    return [b.get() for b in histogram._buckets] + [histogram._sum.get()]


@pytest.mark.parametrize("n", [0, 1, LOOP_UP_TO, LOOP_UP_TO + 1, 500])
def test_observe_many_equals_one_observe_per_value(n: int) -> None:
    rng = np.random.default_rng(n)
    values = np.concatenate([rng.random(n), np.array(CONFIDENCE_BUCKETS[: n % 5]), [math.inf] * (n > 3)])
    bulk = Histogram("bulk", "", buckets=CONFIDENCE_BUCKETS, registry=CollectorRegistry())
    plain = Histogram("plain", "", buckets=CONFIDENCE_BUCKETS, registry=CollectorRegistry())
    observe_many(bulk, values)
    for v in values:
        plain.observe(v)
    assert buckets_of(bulk) == pytest.approx(buckets_of(plain))


def test_observe_many_skips_nan() -> None:
    for nans, values in ((1, 1), (3, 7)):  # the plain path and the numpy path
        histogram = Histogram("h", "", buckets=CONFIDENCE_BUCKETS, registry=CollectorRegistry())
        observe_many(histogram, np.array([math.nan] * nans + [0.3] * values))
        assert sum(b.get() for b in histogram._buckets) == values
        assert histogram._sum.get() == pytest.approx(0.3 * values)


def test_every_label_is_counted_from_zero_and_low_confidence_by_threshold() -> None:
    m = metrics(low_confidence=0.5)
    for label in LABELS:  # present before any answer: a label never predicted still shows 0
        assert REGISTRY.get_sample_value("textclf_predictions_total", {"label": label}) is not None
    assert value("textclf_model_info", name="m", version="v1", family="logreg", precision="fp32") == 1
    before = {label: value("textclf_predictions_total", label=label) for label in LABELS}
    low_before = value("textclf_low_confidence_total")
    confidence_before = value("textclf_prediction_confidence_count")
    for probs in (  # a flush of a few texts (plain observes) and one of many (numpy)
        np.array([[0.1, 0.8, 0.1], [0.4, 0.35, 0.25]]),
        np.tile([[0.2, 0.2, 0.6], [0.9, 0.05, 0.05]], (10, 1)),
    ):
        counted = value("textclf_prediction_confidence_count")
        m.note_batch([f"text {i}" for i in range(len(probs))], probs, None, 0.0, 0.0)
        assert value("textclf_prediction_confidence_count") == counted  # noted, not yet counted
        m.flush()
        assert value("textclf_prediction_confidence_count") == counted + len(probs)
    delta = {label: value("textclf_predictions_total", label=label) - before[label] for label in LABELS}
    assert delta == {"card_arrival": 11, "refund": 1, "pin_blocked": 10}
    assert value("textclf_low_confidence_total") - low_before == 1  # only 0.4 is below 0.5
    assert value("textclf_prediction_confidence_count") - confidence_before == 22


def test_feedback_is_counted_by_true_label_and_outcome_from_zero() -> None:
    m = metrics()
    outcomes = ("correct", "wrong", "unstated")
    before = {
        (label, outcome): REGISTRY.get_sample_value(
            "textclf_feedback_total", {"label": label, "outcome": outcome}
        )
        for label in LABELS
        for outcome in outcomes
    }
    assert None not in before.values()  # every series exists at 0: increase() sees the first item
    m.count_feedback(
        [
            ("refund", "refund"),
            ("refund", "card_arrival"),
            ("refund", None),
            ("pin_blocked", "pin_blocked"),
            ("pin_blocked", "pin_blocked"),
            ("card_arrival", "not a label at all"),  # `predicted` is compared, never a label value
        ]
    )
    delta = {
        key: value("textclf_feedback_total", label=key[0], outcome=key[1]) - count
        for key, count in before.items()
    }
    assert {key: d for key, d in delta.items() if d} == {
        ("refund", "correct"): 1,
        ("refund", "wrong"): 1,
        ("refund", "unstated"): 1,
        ("pin_blocked", "correct"): 2,
        ("card_arrival", "wrong"): 1,
    }
    assert (
        REGISTRY.get_sample_value(
            "textclf_feedback_total", {"label": "not a label at all", "outcome": "correct"}
        )
        is None
    )


def test_small_and_large_batches_fill_the_size_histograms_alike() -> None:
    m = metrics()
    texts = ["x" * 10, "y" * 100, "zz " * 30]
    probs = np.array([[0.5, 0.3, 0.2]] * 3)
    sums = {}
    for name in ("textclf_input_chars", "textclf_input_tokens"):
        sums[name] = value(f"{name}_sum"), value(f"{name}_count")
    m.note_batch(texts, probs, None, 0.0, 0.0)
    m.flush()  # 3 values: plain observes
    m.note_batch(texts * 3, np.tile(probs, (3, 1)), None, 0.0, 0.0)
    m.flush()  # 9 values: numpy
    chars = value("textclf_input_chars_sum") - sums["textclf_input_chars"][0]
    assert chars == 4 * (10 + 100 + 90)
    assert value("textclf_input_chars_count") - sums["textclf_input_chars"][1] == 12
    assert value("textclf_input_tokens_sum") - sums["textclf_input_tokens"][0] == 4 * (1 + 1 + 30)
    assert value("textclf_input_chars_bucket", le="16.0") >= 4  # the 10-character texts


def test_batch_and_queue_histograms() -> None:
    m = metrics()
    names = ["batch_size", "tokenize_seconds", "inference_seconds", "queue_wait_seconds"]

    def read() -> dict[str, tuple[float, float]]:
        return {n: (value(f"textclf_{n}_count"), value(f"textclf_{n}_sum")) for n in names}

    before = read()
    m.note_batch(["a text"] * 32, np.tile([[0.5, 0.3, 0.2]], (32, 1)), None, 0.002, 0.010)
    m.note_queue_wait([0.001, 0.004])
    m.flush()
    after = read()
    delta = {n: (after[n][0] - before[n][0], after[n][1] - before[n][1]) for n in names}
    assert delta["batch_size"] == (1, 32)
    assert delta["tokenize_seconds"] == (1, pytest.approx(0.002))
    assert delta["inference_seconds"] == (1, pytest.approx(0.010))
    assert delta["queue_wait_seconds"] == (2, pytest.approx(0.005))


def _report(texts: int, overall_p: float | None, drifted: bool, confidence: float | None) -> DriftReport:
    features = [
        FeatureDrift("confidence", "ks", statistic=0.4, p_value=1e-6, p_adjusted=7e-6, drifted=drifted),
        FeatureDrift("chars", "ks", statistic=0.01, p_value=0.6, p_adjusted=1.0),
    ]
    return DriftReport(
        verdict="drift" if drifted else "too few texts",
        drifted=drifted,
        texts=texts,
        reference_texts=1000,
        alpha=0.01,
        min_texts=200,
        p_value=overall_p,
        features=features if overall_p is not None else [],
        model_outputs=GroupDrift("model_outputs", ("confidence",), 4e-6, drifted) if overall_p else None,
        estimated_accuracy=confidence,
    )


def test_drift_gauges_follow_the_last_report() -> None:
    m = metrics()
    m.set_drift(_report(5000, 7e-6, True, 0.71), now=1_700_000_000.0)
    assert value("textclf_drift_p_value", feature="overall") == pytest.approx(7e-6)
    assert value("textclf_drift_p_value", feature="confidence") == pytest.approx(7e-6)  # Holm-adjusted
    assert value("textclf_drift_detected", feature="confidence") == 1
    assert value("textclf_drift_detected", feature="chars") == 0
    assert value("textclf_drift_detected", feature="model_outputs") == 1
    assert value("textclf_drift_window_texts") == 5000
    assert value("textclf_estimated_accuracy") == pytest.approx(0.71)
    assert DRIFT_CHECK_TIME.get() == 1_700_000_000.0
    labelled = {
        s.labels["feature"]
        for family in text_string_to_metric_families(generate_latest().decode())
        for s in family.samples
        if s.name == "textclf_drift_p_value"
    }
    assert labelled == {*FEATURES, "model_outputs", "overall"}
    # a later window with too few texts: no verdict, so nothing stays flagged from the older check
    m.set_drift(_report(12, None, False, None), now=1_700_000_060.0)
    assert math.isnan(REGISTRY.get_sample_value("textclf_drift_p_value", {"feature": "overall"}))
    assert value("textclf_drift_detected", feature="confidence") == 0
    assert value("textclf_drift_window_texts") == 12
    assert value("textclf_estimated_accuracy") == pytest.approx(0.71)  # no new estimate: the last one stays


def test_a_lazy_gauge_is_absent_until_first_set() -> None:
    gauge = _LazyGauge("textclf_test_lazy_gauge", "for this test")
    assert REGISTRY.get_sample_value("textclf_test_lazy_gauge") is None
    gauge.set(0.25)
    assert REGISTRY.get_sample_value("textclf_test_lazy_gauge") == 0.25


# Two worker processes write one multi-process folder; the page sums counters and applies each gauge's mode.
WORKER = """
import json, sys, numpy as np
from monitoring.model_metrics import ModelMetrics
from monitoring.drift import DriftReport
m = ModelMetrics(["a", "b"], name="m", version="v1", family="logreg", precision="fp32", low_confidence=0.5)
n, p_value, now = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
m.note_batch(["t"] * n, np.tile([[0.9, 0.1]], (n, 1)), None, 0.001, 0.002)
m.flush()
if p_value >= 0:
    m.set_drift(DriftReport("no drift", False, 300, 1000, 0.01, 200, p_value), now=now)
"""


def test_multiprocess_modes_over_two_workers(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    for args in (["3", "0.7", "1000"], ["5", "0.2", "2000"], ["2", "-1", "0"]):  # one after the other
        subprocess.run([sys.executable, "-c", WORKER, *args], env=env, check=True, cwd=REPO)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, str(tmp_path))
    page = {
        (s.name, json.dumps(s.labels, sort_keys=True)): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    assert page[("textclf_predictions_total", '{"label": "a"}')] == 10
    assert page[("textclf_predictions_total", '{"label": "b"}')] == 0
    assert page[("textclf_batch_size_count", "{}")] == 3
    info = '{"family": "logreg", "name": "m", "precision": "fp32", "version": "v1"}'
    assert page[("textclf_model_info", info)] == 1  # max, not summed over the workers
    assert page[("textclf_drift_p_value", '{"feature": "overall"}')] == 0.2  # the most recent check
    assert page[("textclf_drift_check_timestamp_seconds", "{}")] == 2000
    assert ("textclf_estimated_accuracy", "{}") not in page  # no check gave one: absent, not 0


def test_the_flusher_thread_moves_notes_by_itself_and_at_stop() -> None:
    m = ModelMetrics(
        LABELS, name="m", version="v1", family="logreg", precision="fp32", low_confidence=0.5, flush_s=0.01
    ).start()
    before = value("textclf_predictions_total", label="refund")
    m.note_batch(["a"], np.array([[0.1, 0.8, 0.1]]), None, 0.0, 0.0)
    wait_for(lambda: value("textclf_predictions_total", label="refund") == before + 1, WAIT_S, "a flush")
    m.stop()
    m.note_batch(["b"], np.array([[0.1, 0.8, 0.1]]), None, 0.0, 0.0)
    m.stop()  # a stopped flusher still flushes what came after
    assert value("textclf_predictions_total", label="refund") == before + 2
    assert not m._thread.is_alive()


def test_the_batcher_reports_each_requests_wait_before_its_batch_runs() -> None:
    seen: list[list[float]] = []
    ran: list[list[int]] = []

    def predict(items: list[int]) -> list[int]:
        ran.append(items)
        assert len(seen) == len(ran), "the hook runs before the model"
        return items

    async def main() -> list:
        batcher = GreedyBatcher(predict, lanes=1, max_batch_size=64, max_queued=100, on_batch=seen.append)
        answers = await asyncio.gather(*(batcher.submit([i, i]) for i in range(5)))
        batcher.close()
        return answers

    assert asyncio.run(main()) == [[i, i] for i in range(5)]
    assert sum(len(w) for w in seen) == 5  # one wait per request, not per text
    assert [len(w) for w in seen] == [len(batch) // 2 for batch in ran]
    assert all(0 <= wait < 30 for waits in seen for wait in waits)
