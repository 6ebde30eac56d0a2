"""monitoring.drift: verdicts on real whylogs profiles of seeded synthetic feature columns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from monitoring.drift import (
    MODEL_OUTPUTS_GROUP,
    NO_VERDICT,
    OVERALL,
    TOO_FEW,
    DriftError,
    _holm,
    check_drift,
)
from monitoring.profiles import profile_columns, read_window, write_profile
from textclf.core.features import FEATURES

CLASSES = np.array([f"intent_{i:02d}" for i in range(30)], dtype=object)


def columns(
    n: int,
    seed: int,
    *,
    classes: np.ndarray = CLASSES,
    confidence: tuple[float, float] = (8, 2),
    chars_scale: float = 1.0,
    oov: bool = True,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    conf = rng.beta(*confidence, n)
    return {
        "chars": np.round(rng.lognormal(3.6, 0.5, n) * chars_scale),
        "tokens": rng.integers(2, 30, n).astype(np.float64),
        "oov_rate": rng.beta(1, 9, n) if oov else np.full(n, np.nan),
        "confidence": conf,
        "margin": conf * rng.uniform(0.3, 1.0, n),
        "entropy": (1 - conf) * rng.gamma(4.0, 0.5, n),
        "predicted": classes[rng.integers(0, len(classes), n)],
    }


@pytest.fixture(scope="module")
def reference():
    return profile_columns(columns(2000, seed=0))


def check(window_columns, reference, alpha: float = 0.01, min_texts: int = 100):
    return check_drift(profile_columns(window_columns), reference, alpha=alpha, min_texts=min_texts)


def test_a_window_like_the_reference_is_not_drift(reference) -> None:
    report = check(columns(600, seed=1), reference)
    assert report.verdict == "no drift" and not report.drifted
    assert [f.feature for f in report.features] == list(FEATURES)
    assert {f.test for f in report.features} == {"ks", "chi-square"}
    assert all(f.p_value is not None and f.p_adjusted >= f.p_value for f in report.features)
    assert report.texts == 600 and report.reference_texts == 2000
    assert report.model_outputs is not None and not report.model_outputs.drifted
    assert report.estimated_accuracy == pytest.approx(0.8, abs=0.03)  # mean of Beta(8, 2)


def test_same_distribution_windows_rarely_alarm(reference) -> None:
    """The family-wise alpha holds: 30 independent same-distribution windows, alpha 0.05 → about 1.5
    expected alarms; seeded, so the count is the same on every run."""
    alarms = sum(check(columns(300, seed=100 + i), reference, alpha=0.05).drifted for i in range(30))
    assert alarms <= 3


def test_less_confident_outputs_drift_in_the_model_outputs_group(reference) -> None:
    report = check(columns(400, seed=2, confidence=(3, 2)), reference)
    assert report.verdict == "drift" and report.drifted
    assert report.model_outputs.drifted
    assert report.feature("confidence").drifted and report.feature("confidence").hellinger > 0.2
    assert not report.feature("chars").drifted
    assert report.estimated_accuracy < 0.7 < report.reference_confidence


def test_longer_texts_drift_overall_but_not_in_the_model_outputs(reference) -> None:
    report = check(columns(400, seed=3, chars_scale=1.6), reference)
    assert report.drifted and report.feature("chars").drifted
    assert not report.model_outputs.drifted


def test_a_window_of_five_classes_drifts_in_the_predicted_class(reference) -> None:
    report = check(columns(150, seed=4, classes=CLASSES[:5]), reference)
    predicted = report.feature("predicted")
    assert predicted.test == "chi-square" and predicted.drifted and report.model_outputs.drifted
    assert "Monte Carlo" in predicted.note  # 30 classes in 150 texts: expected counts below 5


def test_a_large_window_uses_the_chi_square_distribution(reference) -> None:
    report = check(columns(3000, seed=5), reference)
    assert report.feature("predicted").note == "" and not report.drifted


def test_too_few_texts_gives_no_verdict_and_flags_nothing(reference) -> None:
    report = check(columns(99, seed=6, confidence=(1, 5)), reference)
    assert (report.verdict, report.drifted, report.p_value, report.features) == (TOO_FEW, False, None, [])
    assert report.texts == 99
    assert all(value == (None, False) for value in report.gauges().values())
    empty = check_drift(None, reference, alpha=0.01, min_texts=1)
    assert (empty.verdict, empty.texts, empty.estimated_accuracy) == (TOO_FEW, 0, None)


def test_a_window_of_another_model_version_is_too_few_texts_not_a_verdict(reference, tmp_path: Path) -> None:
    shifted = profile_columns(columns(500, seed=7, confidence=(2, 2)))
    write_profile(shifted, tmp_path, model_version="old", worker="1", start=100)
    window = read_window(tmp_path, model_version="new", since=None)
    report = check_drift(window.view, reference, alpha=0.01, min_texts=100)
    assert report.verdict == TOO_FEW and not report.drifted


def test_a_model_without_vocabulary_leaves_oov_rate_untested_without_a_problem() -> None:
    reference = profile_columns(columns(1000, seed=8, oov=False))
    report = check(columns(300, seed=9, oov=False), reference)
    oov = report.feature("oov_rate")
    assert (oov.test, oov.p_value, oov.drifted) == ("none", None, False) and "vocabulary" in oov.note
    assert report.problems == [] and report.verdict == "no drift"
    assert len([f for f in report.features if f.p_value is not None]) == 6


def test_oov_rate_on_one_side_only_is_a_problem(reference) -> None:
    report = check(columns(300, seed=10, oov=False), reference)
    assert report.feature("oov_rate").p_value is None
    assert any("oov_rate: no values in the window" in p for p in report.problems)


def test_a_reference_without_a_feature_is_an_error() -> None:
    partial = columns(500, seed=11)
    del partial["margin"]
    with pytest.raises(DriftError, match="no margin column"):
        check(columns(300, seed=12), profile_columns(partial))


def test_a_window_without_a_feature_is_a_problem_not_a_verdict_on_it(reference) -> None:
    partial = columns(300, seed=13)
    del partial["tokens"]
    report = check(partial, reference)
    assert report.feature("tokens") is None and any(
        "tokens: the window has no such column" in p for p in report.problems
    )
    assert report.gauges()["tokens"] == (None, False)


def test_classes_the_reference_never_saw_are_a_problem_and_a_disjoint_set_an_error(reference) -> None:
    mixed = columns(300, seed=14, classes=np.concatenate([CLASSES, np.array(["brand_new"], dtype=object)]))
    report = check(mixed, reference)
    assert any("never occur in the reference" in p and "brand_new" in p for p in report.problems)
    other_model = columns(300, seed=15, classes=np.array(["spam", "ham"], dtype=object))
    with pytest.raises(DriftError, match="another model"):
        check(other_model, reference)


def test_no_testable_feature_is_no_verdict(reference) -> None:
    report = check({"chars": np.full(200, np.nan), "predicted": np.full(200, None, dtype=object)}, reference)
    assert report.verdict == NO_VERDICT and not report.drifted and report.problems


def test_holm_adjusts_step_down() -> None:
    adjusted = _holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    assert adjusted == pytest.approx({"a": 0.04, "c": 0.09, "b": 0.09, "d": 0.5})


def test_bad_alpha_or_min_texts_are_errors(reference) -> None:
    view = profile_columns(columns(10, seed=16))
    for alpha, min_texts in ((0.0, 10), (1.0, 10), (0.01, 0)):
        with pytest.raises(DriftError):
            check_drift(view, reference, alpha=alpha, min_texts=min_texts)


def test_report_is_json_and_gauges_cover_every_feature(reference) -> None:
    report = check(columns(400, seed=17, confidence=(2, 2)), reference)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["verdict"] == "drift" and len(data["features"]) == len(FEATURES)
    assert data["model_outputs"]["name"] == MODEL_OUTPUTS_GROUP
    gauges = report.gauges()
    assert set(gauges) == {*FEATURES, MODEL_OUTPUTS_GROUP, OVERALL}
    assert gauges[OVERALL] == (report.p_value, True) and gauges[MODEL_OUTPUTS_GROUP][1] is True
